// End-to-end faults and load (issue: hardening): processes killed at bad
// moments, a full disk, many runs at once. Whatever happens, the cache
// stays usable and the next run works.
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <catch2/catch.hpp>
#include <filesystem>
#include <thread>

#include "bundle/bundle.h"
#include "tests/integration/apps.h"

using namespace spore::itest;
namespace fs = std::filesystem;

namespace {

// Files under dir whose names say they were being written.
std::vector<std::string> temp_files(const std::string& dir) {
  std::vector<std::string> out;
  if (!fs::exists(dir)) return out;
  for (auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().filename().string().find(".tmp") != std::string::npos) out.push_back(e.path());
  return out;
}

std::vector<std::string> ram_files(const std::string& cache) {
  std::vector<std::string> out;
  if (!fs::exists(cache + "/ram")) return out;
  for (auto& e : fs::directory_iterator(cache + "/ram"))
    if (e.path().extension() == ".ram") out.push_back(e.path());
  return out;
}

// A tmpfs of a given size at a fresh directory, unmounted when done.
struct SmallDisk {
  explicit SmallDisk(uint64_t bytes) : dir(temp_dir() + "/disk") {
    fs::create_directories(dir);
    std::string opts = "size=" + std::to_string(bytes) + ",mode=0700";
    // Needs root (the testbed runs tests as root; so would CI on arm64).
    REQUIRE(::mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) == 0);
  }
  void grow(uint64_t bytes) {
    std::string opts = "size=" + std::to_string(bytes);
    REQUIRE(::mount("tmpfs", dir.c_str(), "tmpfs", MS_REMOUNT, opts.c_str()) == 0);
  }
  ~SmallDisk() { ::umount2(dir.c_str(), MNT_DETACH); }
  std::string dir;
};

}  // namespace

TEST_CASE("a stub killed during its first run and seal leaves a cache the next run can use", "[app][fault]") {
  // How long a whole first run (boot, warm-up, seal, command) takes here,
  // so the kills below land inside it whatever the machine's speed.
  int whole_ms = 0;
  {
    AppCopy probe("demo");
    auto t0 = std::chrono::steady_clock::now();
    auto r = probe({"true"});
    REQUIRE(r.status == 0);
    whole_ms = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count());
  }
  AppCopy app("demo");
  int killed = 0;
  for (int tenth = 1; tenth <= 9; tenth += 2) {
    RunOptions o;
    o.kill_after_stderr = "first run on this host";
    o.kill_delay_ms = whole_ms * tenth / 10;
    o.kill_signal = SIGKILL;
    auto r = app({"echo", "done"}, o);
    INFO("killed " << o.kill_delay_ms << " ms into a " << whole_ms << " ms first run: status " << r.status
                   << ", err " << r.err);
    // Killed, or finished first (the kill came late, or the run resumed the
    // local spore an earlier attempt completed).
    CHECK((r.status == 128 + SIGKILL || (r.status == 0 && r.out == "done\n")));
    if (r.status == 128 + SIGKILL) killed++;
    CHECK(nothing_left_running(app.dir));
  }
  CHECK(killed >= 1);
  auto next = app({"echo", "after"});
  INFO(next.err);
  CHECK(next.status == 0);
  CHECK(next.out == "after\n");
  auto resumed = app({"echo", "resumed"});
  CHECK(resumed.status == 0);
  CHECK(resumed.out == "resumed\n");
  CHECK(resumed.err.empty());  // a complete local spore, resumed
}

TEST_CASE("a stub killed while it materialises RAM leaves a cache the next run can use", "[app][fault]") {
  AppCopy app = sealed_bundle_copy();
  for (int delay_ms : {20, 100, 300, 800}) {
    fs::remove_all(app.cache);
    RunOptions o;
    o.kill_delay_ms = delay_ms;
    o.kill_signal = SIGKILL;
    auto killed = app({"echo", "x"}, o);
    INFO("killed " << delay_ms << " ms after start: status " << killed.status);
    CHECK(nothing_left_running(app.dir));
    auto next = app({"echo", "next"});
    INFO(next.err);
    CHECK(next.status == 0);
    CHECK(next.out == "next\n");
    CHECK(ram_files(app.cache).size() == 1);
  }
}

TEST_CASE("a full disk while the first run materialises RAM: a clear error, nothing partial, then it works", "[app][fault]") {
  AppCopy app = sealed_bundle_copy();
  // Room for the extracted kernel, initramfs and rootfs, not for the RAM.
  uint64_t sections = 0;
  {
    auto r = spore::bundle::Reader::open(app.path + ".spore");
    REQUIRE(r.ok());
    using spore::bundle::SectionType;
    for (auto t : {SectionType::kKernel, SectionType::kInitramfs, SectionType::kRootfs})
      sections += (*r)->find(t)->size;
  }
  SmallDisk disk(sections + (2 << 20));
  RunOptions o;
  o.env = {"SPORE_CACHE_DIR=" + disk.dir + "/cache"};
  auto full = app({"echo", "no"}, o);
  CHECK(full.status != 0);
  CHECK(full.out.empty());
  CHECK_THAT(full.err, Catch::StartsWith("demo: ") && Catch::Contains("No space left on device"));
  CHECK(full.err.find('\n') == full.err.size() - 1);  // one line
  CHECK(ram_files(disk.dir + "/cache").empty());
  CHECK(temp_files(disk.dir + "/cache").empty());
  CHECK(nothing_left_running(app.dir));

  disk.grow(1ull << 30);
  auto ok = app({"echo", "yes"}, o);
  INFO(ok.err);
  CHECK(ok.status == 0);
  CHECK(ok.out == "yes\n");
  CHECK(ram_files(disk.dir + "/cache").size() == 1);
}

TEST_CASE("100 concurrent one-shot runs from an empty cache: one RAM file, all succeed", "[app][fault]") {
  AppCopy app = sealed_bundle_copy();
  constexpr int kRuns = 100;
  std::vector<RunResult> results(kRuns);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRuns; i++)
    threads.emplace_back([&, i] { results[i] = app({"sh", "-c", "echo run-" + std::to_string(i) + "; exit " + std::to_string(i % 5)}); });
  for (auto& t : threads) t.join();
  int good = 0;
  for (int i = 0; i < kRuns; i++) {
    if (results[i].status == i % 5 && results[i].out == "run-" + std::to_string(i) + "\n") good++;
    else WARN("run " << i << ": status " << results[i].status << " out " << results[i].out << " err " << results[i].err);
  }
  CHECK(good == kRuns);
  CHECK(ram_files(app.cache).size() == 1);
  CHECK(temp_files(app.cache).empty());
  CHECK(nothing_left_running(app.dir));
}
