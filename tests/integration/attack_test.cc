// A hostile guest: spore-attack (tests/guest/attack.cc) runs inside real
// guests, booted from a test rootfs (scripts/build-test-rootfs.sh) by
// spore-vm, or packed into an app (tests/integration/pack-apps.sh). The VMM
// must survive it with bounded fds and memory, and each run must end as
// documented.
#include <signal.h>

#include <catch2/catch.hpp>
#include <string>

#include "tests/integration/apps.h"
#include "tests/integration/harness.h"

using namespace spore::itest;

namespace {

std::string attack_rootfs() { return assets_dir() + "/../spore-test/attack-rootfs.img"; }

// The VMM's fds and memory outside guest RAM may not grow with the attack
// beyond a little slack (a session's sockets, allocator noise).
constexpr long kFdSlack = 8;
constexpr long kMemSlackKib = 16 << 10;

void check_bounded(const RunResult& r) {
  REQUIRE(r.usage.sampled);
  // The figures, for the record.
  WARN("VMM during the attack: fds " << r.usage.fds_at_start << " -> at most " << r.usage.fds_max << "; VmRSS "
                                     << r.usage.rss_kib_at_start << " -> at most " << r.usage.rss_kib_max
                                     << " KiB; outside guest RAM " << r.usage.host_kib_at_start << " -> at most "
                                     << r.usage.host_kib_max << " KiB");
  CHECK(r.usage.fds_max - r.usage.fds_at_start <= kFdSlack);
  CHECK(r.usage.host_kib_max - r.usage.host_kib_at_start <= kMemSlackKib);
}

RunOptions watched() {
  RunOptions o;
  o.watch_from = "spore-attack: start";
  return o;
}

// Byte i of spore-attack's flood.
char pattern(unsigned long i) { return static_cast<char>('a' + (i / 4096 + i) % 26); }

}  // namespace

TEST_CASE("attack: a guest connecting to the ready port 1000 times after boot is refused each time", "[attack]") {
  auto r = vm_run({"spore-attack", "ready-flood", "1000"}, {"--rootfs", attack_rootfs()}, watched());
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out == "ready-flood: 1000 attempts, 0 accepted, 1000 refused, 0 timed out, 0 other\n");
  check_bounded(r);
}

TEST_CASE("attack: a guest flooding stdout towards a slow reader keeps the VMM's memory bounded", "[attack]") {
  constexpr unsigned long kBytes = 48ul << 20;
  RunOptions o = watched();
  o.stdout_bytes_per_10ms = 16 << 10;  // ~1.6 MB/s: slower than the guest writes
  auto r = vm_run({"spore-attack", "flood-stdout", std::to_string(kBytes)}, {"--rootfs", attack_rootfs()}, o);
  INFO(r.err);
  CHECK(r.status == 0);
  REQUIRE(r.out.size() == kBytes);
  unsigned long bad = 0;
  for (unsigned long i = 0; i < kBytes; i++) bad += r.out[i] != pattern(i);
  CHECK(bad == 0);
  check_bounded(r);
}

TEST_CASE("attack: --timeout holds against a command that ignores signals and one that stops the agent", "[attack]") {
  SECTION("ignoring signals: the agent kills it") {
    auto r = vm_run({"spore-attack", "ignore-timeout"}, {"--rootfs", attack_rootfs(), "--timeout", "2s"});
    CHECK(r.status == 124);
    CHECK_THAT(r.err, Catch::Contains("command timed out after 2s"));
    CHECK_THAT(r.err, !Catch::Contains("the host ended the session"));
  }
  SECTION("stopping the agent: the host ends the run itself") {
    auto r = vm_run({"spore-attack", "freeze-agent"}, {"--rootfs", attack_rootfs(), "--timeout", "2s"}, watched());
    INFO(r.err);
    CHECK(r.status == 124);
    CHECK_THAT(r.err, Catch::Contains("spore-attack: stopping the agent"));
    CHECK_THAT(r.err, Catch::Contains("spore-vm: command timed out after 2s, and the guest did not end it within 5 s "
                                      "more: the host ended the session"));
    check_bounded(r);
  }
}

TEST_CASE("attack: children writing without end after the command exits do not hold its exit status", "[attack]") {
  // --timeout is the backstop: a run that waited for the writers would end
  // with 124 instead of the command's 3.
  auto r = vm_run({"spore-attack", "outlive-writers", "4"}, {"--rootfs", attack_rootfs(), "--cpus", "2", "--timeout", "60s"},
                  watched());
  INFO(r.err);
  CHECK_THAT(r.err, Catch::Contains("spore-attack: exiting under the writers"));
  CHECK(r.status == 3);
  CHECK(r.out.size() >= 64u << 10);
  check_bounded(r);
}

TEST_CASE("attack: an app's first run (cold boot, then seal) refuses the ready port to guest programs", "[attack]") {
  // The cold boot's ready listener is gone by the time the command runs: a
  // connection must be reset, not reach what the listener pointed at.
  AppCopy app("attackapp");
  auto r = app({"spore-attack", "ready-flood", "1000"}, watched());
  INFO(r.err);
  CHECK_THAT(r.err, Catch::Contains("first run on this host"));
  CHECK(r.status == 0);
  CHECK(r.out == "ready-flood: 1000 attempts, 0 accepted, 1000 refused, 0 timed out, 0 other\n");
  check_bounded(r);
  // The resumed guest finds nobody listening either.
  auto again = app({"spore-attack", "ready-flood", "10"});
  CHECK(again.out == "ready-flood: 10 attempts, 0 accepted, 10 refused, 0 timed out, 0 other\n");
}

TEST_CASE("attack: an app's one-shot run and exec end at --timeout when the command stops the agent", "[attack]") {
  AppCopy app("attackapp");
  REQUIRE(app({"true"}).status == 0);  // first run: boot and seal
  auto one = app({"--timeout", "2s", "spore-attack", "freeze-agent"});
  INFO(one.err);
  CHECK(one.status == 124);
  CHECK_THAT(one.err, Catch::Contains("attackapp: command timed out after 2s, and the guest did not end it"));

  REQUIRE(app({"start"}).status == 0);
  auto ex = app({"exec", "--timeout", "2s", "spore-attack", "freeze-agent"});
  INFO(ex.err);
  CHECK(ex.status == 124);
  CHECK_THAT(ex.err, Catch::Contains("attackapp: command timed out after 2s, and the guest did not end it"));
  // The daemon's VM is still up (its agent is not: doc/apps.md), and stops.
  CHECK(app({"status"}).status == 0);
  CHECK(app({"stop"}).status == 0);
  CHECK(app({"status"}).status == 3);
}

TEST_CASE("attack: an impostor agent speaking another protocol version: exit 76, one line", "[attack]") {
  auto r = vm_run({"true"}, {"--initrd", assets_dir() + "/../spore-test/impostor-initramfs.cpio", "--no-rootfs"});
  CHECK(r.status == 76);
  REQUIRE(r.err.rfind("spore-vm: ", 0) == 0);
  CHECK_THAT(r.err.substr(0, r.err.find('\n')), Catch::Contains("protocol 99"));
  std::string rest = r.err.substr(r.err.find('\n') + 1);
  for (size_t at = 0; at < rest.size(); at = rest.find('\n', at) + 1) CHECK(rest.compare(at, 4, "  | ") == 0);
  CHECK(r.out.empty());
}
