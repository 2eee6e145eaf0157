#include "stub/cli.h"

#include <catch2/catch.hpp>

using namespace spore;
using namespace spore::stub;

TEST_CASE("stub: a plain command with options before it", "[stub][cli]") {
  auto o = parse_args({"-e", "A=1", "--env=B=2", "-w", "/tmp", "-it", "python3", "-c", "print(1)"});
  REQUIRE(o.ok());
  CHECK(o->mode == Mode::kRun);
  CHECK(o->env == std::vector<std::string>{"A=1", "B=2"});
  CHECK(o->workdir == "/tmp");
  CHECK(o->interactive);
  CHECK(o->tty);
  CHECK(o->command == std::vector<std::string>{"python3", "-c", "print(1)"});
}

TEST_CASE("stub: options after the command belong to the command", "[stub][cli]") {
  auto o = parse_args({"ls", "-l", "--timeout", "5s"});
  REQUIRE(o.ok());
  CHECK(o->command == std::vector<std::string>{"ls", "-l", "--timeout", "5s"});
  CHECK(o->timeout.empty());
}

TEST_CASE("stub: subcommands only in first place, -- escapes them", "[stub][cli]") {
  CHECK(parse_args({"start", "--mem", "512"})->mode == Mode::kStart);
  CHECK(*parse_args({"start", "--mem", "512"})->mem_mib == 512);
  CHECK(parse_args({"status", "--json"})->json);
  auto e = parse_args({"exec", "-u", "nobody", "--", "id", "-u"});
  REQUIRE(e.ok());
  CHECK(e->mode == Mode::kExec);
  CHECK(e->user == "nobody");
  CHECK(e->command == std::vector<std::string>{"id", "-u"});
  auto esc = parse_args({"--", "start"});
  CHECK(esc->mode == Mode::kRun);
  CHECK(esc->command == std::vector<std::string>{"start"});
  auto late = parse_args({"-e", "X=1", "stop"});
  CHECK(late->mode == Mode::kRun);
  CHECK(late->command == std::vector<std::string>{"stop"});
  CHECK(parse_args({})->command.empty());  // the image's default command
}

TEST_CASE("stub: bad input gets a usage error", "[stub][cli]") {
  CHECK(parse_args({"--bogus"}).error().kind == ErrorKind::kUsage);
  CHECK_FALSE(parse_args({"-e"}).ok());
  CHECK_FALSE(parse_args({"-e", "=x", "true"}).ok());
  CHECK_FALSE(parse_args({"--cpus", "0", "true"}).ok());
  CHECK_FALSE(parse_args({"--cpus", "many", "true"}).ok());
  CHECK_FALSE(parse_args({"--mem", "12", "true"}).ok());
  CHECK_FALSE(parse_args({"--timeout", "soon", "true"}).ok());
  CHECK_FALSE(parse_args({"-w", "relative", "true"}).ok());
  CHECK_FALSE(parse_args({"exec"}).ok());
  CHECK_FALSE(parse_args({"stop", "extra"}).ok());
  CHECK_FALSE(parse_args({"status", "-e", "A=1"}).ok());
  CHECK(parse_args({"--help"})->mode == Mode::kHelp);
  CHECK(parse_args({"--version"})->mode == Mode::kVersion);
}

TEST_CASE("stub: --mem takes MiB or units", "[stub][cli]") {
  CHECK(*parse_args({"--mem", "2G", "true"})->mem_mib == 2048);
  CHECK(*parse_args({"--mem=512M", "true"})->mem_mib == 512);
}
