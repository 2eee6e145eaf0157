#include "agent/users.h"

#include <catch2/catch.hpp>

using namespace spore;
using namespace spore::agent;

namespace {
const char* kPasswd =
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "app:x:1000:1000::/home/app:/bin/sh\n"
    "# comment\n"
    "broken:line\n";
const char* kGroup =
    "root:x:0:\n"
    "wheel:x:10:app,daemon\n"
    "app:x:1000:\n"
    "audio:x:29:app\n";
}  // namespace

TEST_CASE("empty user means root with its home", "[agent][users]") {
  auto u = resolve_user("", kPasswd, kGroup);
  REQUIRE(u.ok());
  CHECK(u->uid == 0);
  CHECK(u->gid == 0);
  CHECK(u->home == "/root");
}

TEST_CASE("without a passwd file the default user is still root", "[agent][users]") {
  auto u = resolve_user("", "", "");
  REQUIRE(u.ok());
  CHECK(u->uid == 0);
  CHECK(u->gid == 0);
  CHECK(u->home == "/");
}

TEST_CASE("a user name picks uid, gid, home and supplementary groups", "[agent][users]") {
  auto u = resolve_user("app", kPasswd, kGroup);
  REQUIRE(u.ok());
  CHECK(u->uid == 1000);
  CHECK(u->gid == 1000);
  CHECK(u->home == "/home/app");
  CHECK(u->groups == std::vector<gid_t>{10, 29});
}

TEST_CASE("numeric ids work with or without a passwd entry", "[agent][users]") {
  auto known = resolve_user("1", kPasswd, kGroup);
  REQUIRE(known.ok());
  CHECK(known->gid == 1);
  CHECK(known->home == "/usr/sbin");
  auto unknown = resolve_user("4242", kPasswd, kGroup);
  REQUIRE(unknown.ok());
  CHECK(unknown->uid == 4242);
  CHECK(unknown->gid == 0);
  CHECK(unknown->home == "/");
  auto pair = resolve_user("4242:77", kPasswd, kGroup);
  REQUIRE(pair.ok());
  CHECK(pair->gid == 77);
}

TEST_CASE("an explicit group replaces the primary and drops supplementary ones", "[agent][users]") {
  auto u = resolve_user("app:wheel", kPasswd, kGroup);
  REQUIRE(u.ok());
  CHECK(u->gid == 10);
  CHECK(u->groups.empty());
}

TEST_CASE("unknown names and malformed specs are errors", "[agent][users]") {
  CHECK_FALSE(resolve_user("nobody", kPasswd, kGroup).ok());
  CHECK_FALSE(resolve_user("app:nogroup", kPasswd, kGroup).ok());
  CHECK_FALSE(resolve_user("app:", kPasswd, kGroup).ok());
  CHECK_FALSE(resolve_user(":0", kPasswd, kGroup).ok());
  CHECK_FALSE(resolve_user("99999999999", kPasswd, kGroup).ok());
}
