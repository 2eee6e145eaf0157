// End-to-end: capture a real guest into a spore, resume and fork it.
#include <signal.h>
#include <time.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "tests/integration/confined.h"
#include "tests/integration/harness.h"

using namespace spore::itest;
namespace fs = std::filesystem;

namespace {

// One spore for the whole run: captured once, after writing a marker into
// the guest's /tmp (RAM) and its overlay root.
const std::string& base_spore() {
  static std::string dir;
  if (dir.empty()) {
    std::string d = temp_dir() + "/base";
    auto r = vm_run({"sh", "-c", "echo marker-42 > /tmp/marker && echo root-note > /etc/note"}, {"--capture", d});
    INFO(r.err);
    REQUIRE(r.status == 0);
    REQUIRE(fs::exists(d + "/manifest.json"));
    dir = d;
  }
  return dir;
}

RunResult resume(const std::string& dir, const std::vector<std::string>& cmd, const RunOptions& o = {}) {
  std::vector<std::string> argv = {"spore-vm", "resume", dir, "--"};
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  return run(argv, o);
}

std::string copy_spore(const std::string& from) {
  std::string to = temp_dir() + "/copy";
  fs::copy(from, to, fs::copy_options::recursive);
  for (auto& e : fs::recursive_directory_iterator(to)) fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  return to;
}

void flip_byte(const std::string& path, long offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(offset);
  char c;
  f.get(c);
  f.seekp(offset);
  f.put(static_cast<char>(c ^ 0x01));
}

// A cache of its own, so RAM is materialised (and chunks read) again.
RunOptions fresh_cache() {
  RunOptions o;
  o.env = {"SPORE_CACHE_DIR=" + temp_dir()};
  return o;
}

}  // namespace

TEST_CASE("a value written in the guest before capture is seen after resume", "[spore]") {
  auto r = resume(base_spore(), {"sh", "-c", "cat /tmp/marker /etc/note"});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out == "marker-42\nroot-note\n");
}

TEST_CASE("inspect describes the spore", "[spore]") {
  auto r = run({"spore-vm", "inspect", base_spore()});
  CHECK(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains("256 MiB RAM") && Catch::Contains("chunks stored"));
  auto j = run({"spore-vm", "inspect", "--json", base_spore()});
  CHECK(j.status == 0);
  CHECK_THAT(j.out, Catch::Contains("\"format\": \"spore/1\"") && Catch::Contains("\"digest\""));
  CHECK(run({"spore-vm", "inspect", "/nonexistent"}).status == 66);
}

TEST_CASE("forks are metadata only and each has its own identity", "[spore]") {
  std::string out = temp_dir() + "/forks";
  auto f = run({"spore-vm", "fork", base_spore(), "--count", "2", "--out", out});
  REQUIRE(f.status == 0);
  CHECK_FALSE(fs::exists(out + "/0/chunks"));
  uintmax_t bytes = 0;
  for (auto& e : fs::recursive_directory_iterator(out))
    if (e.is_regular_file()) bytes += e.file_size();
  CHECK(bytes < (1u << 20));  // manifests and small state, no RAM

  // Both children at once: each writes its own data and never sees the other's.
  RunResult a, b;
  std::string script = "echo $SPORE_ID > /tmp/mine; sleep 2; cat /tmp/mine; cat /tmp/marker";
  std::thread ta([&] { a = resume(out + "/0", {"sh", "-c", script}); });
  std::thread tb([&] { b = resume(out + "/1", {"sh", "-c", script}); });
  ta.join();
  tb.join();
  INFO(a.err << b.err);
  REQUIRE(a.status == 0);
  REQUIRE(b.status == 0);
  CHECK(a.out != b.out);
  CHECK_THAT(a.out, Catch::EndsWith("marker-42\n"));
  CHECK_THAT(b.out, Catch::EndsWith("marker-42\n"));
}

TEST_CASE("/dev/urandom differs between forks and between resumes of one spore", "[spore]") {
  std::string cmd = "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'";
  std::set<std::string> seen;
  for (int i = 0; i < 3; i++) {
    auto r = resume(base_spore(), {"sh", "-c", cmd});
    REQUIRE(r.status == 0);
    REQUIRE(r.out.size() == 64);
    seen.insert(r.out);
  }
  std::string out = temp_dir() + "/rng";
  REQUIRE(run({"spore-vm", "fork", base_spore(), "--count", "2", "--out", out}).status == 0);
  for (int i = 0; i < 2; i++) {
    auto r = resume(out + "/" + std::to_string(i), {"sh", "-c", cmd});
    REQUIRE(r.status == 0);
    seen.insert(r.out);
  }
  CHECK(seen.size() == 5);
}

TEST_CASE("the guest clock after resume is the host's time, not capture time", "[spore]") {
  const auto& dir = base_spore();
  // A guest clock left at capture time would read at least this much
  // behind the host's reading taken before the resume.
  std::this_thread::sleep_for(std::chrono::seconds(5));
  long before = static_cast<long>(::time(nullptr));
  auto r = resume(dir, {"date", "+%s"});
  long after = static_cast<long>(::time(nullptr));
  REQUIRE(r.status == 0);
  long guest = std::stol(r.out);
  CHECK(guest >= before);
  CHECK(guest <= after);
}

TEST_CASE("a flipped byte in a chunk, the state or the index is refused", "[spore]") {
  std::string dir = copy_spore(base_spore());
  std::string victim;
  SECTION("a RAM chunk") {
    for (auto& e : fs::recursive_directory_iterator(dir + "/chunks"))
      if (e.is_regular_file()) victim = e.path().string();
  }
  SECTION("the state file") { victim = dir + "/state.bin"; }
  SECTION("the memory index") { victim = dir + "/memory.idx"; }
  REQUIRE_FALSE(victim.empty());
  flip_byte(victim, 20);
  auto r = resume(dir, {"true"}, fresh_cache());
  CHECK(r.status == 65);
  CHECK_THAT(r.err, Catch::Contains("corrupt"));
}

TEST_CASE("a spore recorded for another platform is refused, naming the difference", "[spore]") {
  std::string dir = copy_spore(base_spore());
  std::string path = dir + "/manifest.json";
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  auto pos = text.find("\"vcpu_target\": ");
  REQUIRE(pos != std::string::npos);
  auto end = text.find_first_of(",\n", pos);
  text.replace(pos, end - pos, "\"vcpu_target\": 999");
  std::ofstream(path) << text;
  auto r = resume(dir, {"true"});
  CHECK(r.status == 69);
  CHECK_THAT(r.err, Catch::Contains("platform contract") && Catch::Contains("vCPU target: the spore has 999"));
}

TEST_CASE("resume then exec works 50 times in a row from the same spore", "[spore]") {
  int ok = 0;
  for (int i = 0; i < 50; i++) {
    auto r = resume(base_spore(), {"sh", "-c", "echo run-" + std::to_string(i) + "; cat /tmp/marker"});
    if (r.status == 0 && r.out == "run-" + std::to_string(i) + "\nmarker-42\n") ok++;
    else WARN("resume " << i << " failed: " << r.status << " " << r.err);
  }
  CHECK(ok == 50);
}

TEST_CASE("20 concurrent forks all complete", "[spore]") {
  std::string out = temp_dir() + "/fan";
  REQUIRE(run({"spore-vm", "fork", base_spore(), "--count", "20", "--out", out}).status == 0);
  std::vector<std::string> argv = {"spore-vm", "fanout"};
  for (int i = 0; i < 20; i++) argv.push_back(out + "/" + std::to_string(i));
  argv.insert(argv.end(), {"--", "sh", "-c", "cat /tmp/marker"});
  auto r = run(argv);
  INFO(r.err);
  CHECK(r.status == 0);
  for (int i = 0; i < 20; i++) CHECK_THAT(r.out, Catch::Contains("[" + std::to_string(i) + "] marker-42\n"));
}

TEST_CASE("capture on a signal while a command runs", "[spore]") {
  std::string dir = temp_dir() + "/sig";
  // The command signals spore-vm itself once it is running.
  auto r = vm_run({"sh", "-c", "echo started; sleep 1000"}, {"--capture", dir, "--capture-signal"},
                  [] {
                    RunOptions o;
                    o.kill_after_output = "started";
                    o.kill_signal = 10;  // SIGUSR1
                    return o;
                  }());
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK_THAT(r.out, Catch::StartsWith("started"));
  REQUIRE(fs::exists(dir + "/manifest.json"));
  auto after = resume(dir, {"sh", "-c", "echo alive"});
  INFO(after.err);
  CHECK(after.status == 0);
  CHECK(after.out == "alive\n");
}

TEST_CASE("capture and resume run confined and a resume records its working set from under the filter", "[spore]") {
  std::string dir = temp_dir() + "/confined";
  std::vector<ThreadConfinement> threads;
  RunOptions o;
  o.kill_after_output = "ready\n";
  o.kill_signal = SIGTERM;  // ends the command; the capture follows
  o.on_output = [&](pid_t pid) { threads = thread_confinement(pid); };
  auto cap = vm_run({"sh", "-c", "echo ready; sleep 600"}, {"--capture", dir}, o);
  INFO(cap.err);
  CHECK(cap.status == 128 + SIGTERM);
  check_confined(threads, 3);
  REQUIRE(fs::exists(dir + "/manifest.json"));

  // A fresh cache: the first resume materialises RAM and records what its
  // command touched (prepared before the main thread is confined, written
  // after), the second prefetches that.
  RunOptions cache = fresh_cache();
  std::string cache_dir = cache.env[0].substr(std::string("SPORE_CACHE_DIR=").size());
  threads.clear();
  RunOptions first = cache;
  first.kill_after_output = "ready\n";
  first.kill_signal = SIGTERM;
  first.on_output = [&](pid_t pid) { threads = thread_confinement(pid); };
  auto r1 = run({"spore-vm", "resume", dir, "--timings", "--", "sh", "-c", "echo ready; sleep 600"}, first);
  INFO(r1.err);
  CHECK(r1.status == 128 + SIGTERM);
  check_confined(threads, 3);
  size_t sets = 0;
  for (auto& e : fs::recursive_directory_iterator(cache_dir))
    if (e.path().extension() == ".ws" && e.file_size() > 16) sets++;
  CHECK(sets == 1);
  auto r2 = run({"spore-vm", "resume", dir, "--timings", "--", "echo", "again"}, cache);
  INFO(r2.err);
  CHECK(r2.status == 0);
  CHECK(r2.out == "again\n");
  CHECK_THAT(r2.err, Catch::Contains("(prefetching)"));

  // A damaged set is not used, and the resume that finds it records a new one.
  std::string ws;
  for (auto& e : fs::recursive_directory_iterator(cache_dir))
    if (e.path().extension() == ".ws") ws = e.path().string();
  REQUIRE_FALSE(ws.empty());
  std::ofstream(ws, std::ios::trunc) << "garbage";
  auto r3 = run({"spore-vm", "resume", dir, "--timings", "--", "true"}, cache);
  CHECK(r3.status == 0);
  CHECK_THAT(r3.err, !Catch::Contains("(prefetching)"));
  CHECK(fs::file_size(ws) > 16);
  auto r4 = run({"spore-vm", "resume", dir, "--timings", "--", "true"}, cache);
  CHECK(r4.status == 0);
  CHECK_THAT(r4.err, Catch::Contains("(prefetching)"));
}
