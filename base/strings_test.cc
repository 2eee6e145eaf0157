#include "base/strings.h"

#include <catch2/catch.hpp>

using namespace spore;

TEST_CASE("parse_u64 accepts plain decimals only", "[base]") {
  CHECK(*parse_u64("0") == 0);
  CHECK(*parse_u64("18446744073709551615") == UINT64_MAX);
  CHECK_FALSE(parse_u64("18446744073709551616"));
  CHECK_FALSE(parse_u64(""));
  CHECK_FALSE(parse_u64("-1"));
  CHECK_FALSE(parse_u64("12a"));
}

TEST_CASE("parse_size understands binary units", "[base]") {
  CHECK(*parse_size("256", 1 << 20) == 256ull << 20);
  CHECK(*parse_size("2G", 1) == 2ull << 30);
  CHECK(*parse_size("64k", 1) == 64ull << 10);
  CHECK_FALSE(parse_size("2T", 1));
  CHECK_FALSE(parse_size("99999999999999999999G", 1));
}

TEST_CASE("parse_duration_ms understands s, ms, m, h", "[base]") {
  CHECK(*parse_duration_ms("30") == 30000);
  CHECK(*parse_duration_ms("500ms") == 500);
  CHECK(*parse_duration_ms("2m") == 120000);
  CHECK(*parse_duration_ms("1h") == 3600000);
  CHECK_FALSE(parse_duration_ms("1d"));
  CHECK_FALSE(parse_duration_ms("s"));
}

#include "base/files.h"

TEST_CASE("path helpers normalise and relate paths", "[base][files]") {
  CHECK(absolute_path("/a/./b//c/../d") == "/a/b/d");
  CHECK(absolute_path("/..") == "/");
  CHECK(relative_path("/x/store", "/x/kids/0") == "../../store");
  CHECK(relative_path("/x/kids/0/chunks", "/x/kids/0") == "chunks");
  CHECK(relative_path("/x", "/x") == ".");
}
