#include "bench/stats.h"

#include <catch2/catch.hpp>

using namespace spore::bench;

TEST_CASE("summarize: median, nearest-rank p90 and p95, min, max", "[bench]") {
  CHECK_FALSE(summarize({}));
  auto one = summarize({7});
  REQUIRE(one);
  CHECK(one->median == 7);
  CHECK(one->p90 == 7);
  auto odd = summarize({5, 1, 3});
  REQUIRE(odd);
  CHECK(odd->median == 3);
  CHECK(odd->p90 == 5);
  CHECK(odd->min == 1);
  auto ten = summarize({10, 9, 8, 7, 6, 5, 4, 3, 2, 1});
  REQUIRE(ten);
  CHECK(ten->n == 10);
  CHECK(ten->median == 5.5);
  CHECK(ten->p90 == 9);  // the 9th of 10
  CHECK(ten->p95 == 10);  // the 10th of 10
  CHECK(ten->max == 10);
  std::vector<double> twenty;
  for (int i = 1; i <= 20; i++) twenty.push_back(i);
  auto t = summarize(twenty);
  REQUIRE(t);
  CHECK(t->p90 == 18);
  CHECK(t->p95 == 19);  // the 19th of 20
}

TEST_CASE("paired_ratio compares the same rounds only", "[bench]") {
  Series a, b;
  a.add(1, 10);
  a.add(2, 40);
  a.add(3, 90);  // no partner
  b.add(1, 5);
  b.add(2, 10);
  b.add(4, 1);   // no partner
  auto r = a.paired_ratio(b);
  REQUIRE(r);
  CHECK(*r == 3.0);  // median of 2 and 4
  Series empty;
  CHECK_FALSE(a.paired_ratio(empty));
}
