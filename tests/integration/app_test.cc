// End-to-end: packed apps (tests/integration/pack-apps.sh made them with the
// real spore-pack) run with the real stub, as a user would.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "bundle/app_config.h"
#include "bundle/bundle.h"
#include "tests/integration/apps.h"
#include "tests/integration/confined.h"

using namespace spore::itest;
namespace fs = std::filesystem;

TEST_CASE("the first run boots and seals, later runs resume", "[app]") {
  AppCopy app("demo");
  auto first = app({"echo", "hi"});
  INFO(first.err);
  CHECK(first.status == 0);
  CHECK(first.out == "hi\n");
  CHECK_THAT(first.err, Catch::Contains("first run on this host"));
  auto second = app({"echo", "again"});
  CHECK(second.status == 0);
  CHECK(second.out == "again\n");
  CHECK(second.err.empty());
  bool sealed = false;
  for (auto& e : fs::recursive_directory_iterator(app.cache))
    if (e.path().filename() == "local-spore") sealed = true;
  CHECK(sealed);
  CHECK(nothing_left_running(app.dir));
}

TEST_CASE("exit codes, stdout/stderr and stdin pass through", "[app]") {
  const AppCopy& app = sealed_demo();
  CHECK(app({"sh", "-c", "exit 3"}).status == 3);
  CHECK(app({"sh", "-c", "kill -TERM $$"}).status == 143);
  auto nf = app({"/nonexistent"});
  CHECK(nf.status == 127);
  CHECK_THAT(nf.err, Catch::Contains("no such file or directory"));
  auto split = app({"sh", "-c", "echo out; echo err >&2"});
  CHECK(split.status == 0);
  CHECK(split.out == "out\n");
  CHECK(split.err == "err\n");
  RunOptions in;
  in.stdin_open = true;
  in.stdin_data = "piped input\n";
  auto cat = app({"-i", "cat"}, in);
  CHECK(cat.status == 0);
  CHECK(cat.out == "piped input\n");
  auto tty = app({"-t", "sh", "-c", "test -t 1 && echo on-a-tty"});
  CHECK(tty.status == 0);
  CHECK(tty.out == "on-a-tty\r\n");  // a terminal's line ending
}

TEST_CASE("the image's default command runs without arguments", "[app]") {
  auto r = sealed_demo()({});
  CHECK(r.status == 0);
  CHECK_THAT(r.out, Catch::StartsWith("hello from a spore app: Linux aarch64"));
}

TEST_CASE("env, workdir, user and entrypoint follow the image config, and flags override them", "[app]") {
  AppCopy app("cfgapp");
  auto dflt = app({});
  INFO(dflt.err);
  CHECK(dflt.status == 0);
  CHECK(dflt.out == "default-cmd\n65534\n/tmp\nfrom-image image\n");
  // Arguments replace Cmd and keep the entrypoint (sh -c).
  auto args = app({"echo args; id -u; pwd; echo $GREETING $OVERRIDE"});
  CHECK(args.status == 0);
  CHECK(args.out == "args\n65534\n/tmp\nfrom-image image\n");
  auto flags = app({"-e", "OVERRIDE=flag", "-w", "/home", "-u", "root", "echo $OVERRIDE; pwd; id -u"});
  CHECK(flags.status == 0);
  CHECK(flags.out == "flag\n/home\n0\n");
  auto dir = AppCopy("dirapp")({"--", "-c", "echo $FROM_FLAG; pwd"});
  CHECK(dir.status == 0);
  CHECK(dir.out == "yes\n/home\n");
}

TEST_CASE("apps packed from every source run", "[app]") {
  for (const char* name : {"dockerapp", "regapp", "dirapp"}) {
    AppCopy app(name);
    auto r = std::string(name) == "dirapp" ? app({"--", "-c", "cat /etc/os-release | head -1"})
                                           : app({"sh", "-c", "cat /etc/os-release | head -1"});
    INFO(name << ": " << r.err);
    CHECK(r.status == 0);
    CHECK(r.out == "NAME=\"spore demo\"\n");
  }
}

TEST_CASE("--warm runs before sealing and its effects are in the spore", "[app]") {
  AppCopy app("dirapp");
  auto first = app({"--", "-c", "cat /tmp/warm-marker"});
  CHECK(first.status == 0);
  CHECK(first.out == "warmed\n");
  auto later = app({"--", "-c", "cat /tmp/warm-marker"});
  CHECK(later.status == 0);
  CHECK(later.out == "warmed\n");
  CHECK(later.err.empty());
}

TEST_CASE("--timeout kills the command with status 124", "[app]") {
  auto r = sealed_demo()({"--timeout", "2s", "sleep", "100"});
  CHECK(r.status == 124);
}

TEST_CASE("Ctrl-C reaches the guest command, and killing the stub leaves nothing behind", "[app]") {
  const AppCopy& app = sealed_demo();
  RunOptions o;
  o.kill_after_output = "ready";
  o.kill_signal = SIGINT;
  auto r = app({"sh", "-c", "trap 'echo got-int; exit 42' INT; echo ready; while :; do sleep 0.1; done"}, o);
  CHECK(r.status == 42);
  CHECK_THAT(r.out, Catch::Contains("got-int"));
  RunOptions k;
  k.kill_after_output = "ready";
  k.kill_signal = SIGKILL;
  auto killed = app({"sh", "-c", "echo ready; sleep 100"}, k);
  CHECK(killed.status == 128 + SIGKILL);
  CHECK(nothing_left_running(app.dir));
}

TEST_CASE("Ctrl-C while a first run boots ends it with 130 and seals nothing", "[app]") {
  AppCopy app("demo");
  RunOptions o;
  o.kill_after_stderr = "first run on this host";
  o.kill_signal = SIGINT;
  auto r = app({"echo", "ran"}, o);
  CHECK(r.status == 130);
  CHECK(r.out.empty());
  CHECK_THAT(r.err, Catch::Contains("demo: interrupted by SIGINT while the guest was booting"));
  for (auto& e : fs::recursive_directory_iterator(app.cache)) CHECK(e.path().filename() != "local-spore");
}

TEST_CASE("a renamed pair still works, SPORE_BUNDLE overrides, a missing sidecar is a clear error", "[app]") {
  AppCopy app("demo", "renamed-tool");
  auto ok = app({"echo", "ok"});
  CHECK(ok.status == 0);
  CHECK(ok.out == "ok\n");
  fs::rename(app.path + ".spore", app.dir + "/elsewhere.spore");
  auto missing = app({"true"});
  CHECK(missing.status == 66);
  CHECK_THAT(missing.err, Catch::Contains("no sidecar bundle") && Catch::Contains("renamed-tool.spore"));
  RunOptions o;
  o.env = {"SPORE_BUNDLE=" + app.dir + "/elsewhere.spore"};
  auto found = app({"echo", "found"}, o);
  CHECK(found.status == 0);
  CHECK(found.out == "found\n");
}

TEST_CASE("a machine size other than the sealed one cold-boots, saying so", "[app]") {
  auto r = sealed_demo()({"--cpus", "2", "grep", "-c", "^processor", "/proc/cpuinfo"});
  CHECK(r.status == 0);
  CHECK(r.out == "2\n");
  CHECK_THAT(r.err, Catch::Contains("cold booting"));
}

TEST_CASE("sealing into the bundle (what spore-pack does on an arm64 KVM host)", "[app]") {
  AppCopy app("demo");
  auto seal = app({"--spore-seal"});
  INFO(seal.err);
  REQUIRE(seal.status == 0);
  auto r = spore::bundle::Reader::open(app.path + ".spore");
  REQUIRE(r.ok());
  CHECK((*r)->has_spore());
  uintmax_t size = fs::file_size(app.path + ".spore");
  WARN("sealed demo sidecar: " << size / 1024 << " KiB");
  CHECK(size <= 8u << 20);  // the goal for the demo image
  // The bundle's own spore is resumed: nothing is sealed locally.
  auto after = app({"echo", "from-the-bundle"});
  CHECK(after.status == 0);
  CHECK(after.out == "from-the-bundle\n");
  CHECK(after.err.empty());
  for (auto& e : fs::recursive_directory_iterator(app.cache)) CHECK(e.path().filename() != "local-spore");
  // The seal's cold boot extracted the kernel, initramfs and rootfs, named
  // by content; the sealed bundle (another digest) found them there.
  std::vector<std::string> sections;
  for (auto& e : fs::directory_iterator(app.cache + "/sections")) sections.push_back(e.path().filename());
  INFO(sections.size() << " files in the cache's sections/");
  CHECK(sections.size() == 3);
}

namespace {
// Rewrites the app's sidecar with its config changed by fn.
void rewrite_config(const std::string& sidecar, void (*fn)(spore::bundle::AppConfig&)) {
  using namespace spore::bundle;
  auto r = Reader::open(sidecar);
  REQUIRE(r.ok());
  auto cfg = decode_app_config(*(*r)->read(*(*r)->find(SectionType::kConfig), 1 << 20));
  REQUIRE(cfg.ok());
  fn(*cfg);
  auto w = Writer::create(sidecar);
  REQUIRE(w.ok());
  REQUIRE((*w)->add(SectionType::kConfig, encode_app_config(*cfg), false).ok());
  for (const auto& s : (*r)->sections())
    if (s.type != SectionType::kConfig) REQUIRE((*w)->copy_from(**r, s).ok());
  REQUIRE((*w)->finish().ok());
}
}  // namespace

TEST_CASE("bad sidecars and hosts get one clear line and a documented exit code", "[app]") {
  SECTION("a flipped byte") {
    AppCopy app("demo");
    auto r = spore::bundle::Reader::open(app.path + ".spore");
    REQUIRE(r.ok());
    uint64_t off = (*r)->find(spore::bundle::SectionType::kRootfs)->offset + 4096;
    std::string d = slurp(app.path + ".spore");
    d[off] ^= 0x20;
    std::ofstream(app.path + ".spore", std::ios::binary) << d;
    auto res = app({"true"});
    CHECK(res.status == 65);
    CHECK_THAT(res.err, Catch::Contains("corrupt"));
    CHECK(nothing_left_running(app.dir));
  }
  SECTION("a truncated file") {
    AppCopy app("demo");
    fs::resize_file(app.path + ".spore", fs::file_size(app.path + ".spore") / 2);
    auto res = app({"true"});
    CHECK(res.status == 65);
  }
  SECTION("a sidecar from another format version") {
    AppCopy app("demo");
    std::string d = slurp(app.path + ".spore");
    d[d.size() - spore::bundle::kFooterSize + 8] = 7;
    std::ofstream(app.path + ".spore", std::ios::binary) << d;
    auto res = app({"true"});
    CHECK(res.status == 65);
    CHECK_THAT(res.err, Catch::Contains("format 7 is not supported"));
  }
  SECTION("a bundle for another platform") {
    AppCopy app("demo");
    rewrite_config(app.path + ".spore", [](spore::bundle::AppConfig& c) { c.platform = "linux/amd64"; });
    auto res = app({"true"});
    CHECK(res.status == 69);
    CHECK_THAT(res.err, Catch::Contains("packed for linux/amd64"));
  }
  SECTION("no /dev/kvm") {
    AppCopy app("demo");
    RunOptions o;
    o.env = {"SPORE_KVM_DEVICE=/nonexistent/kvm"};
    auto res = app({"true"}, o);
    CHECK(res.status == 69);
    CHECK_THAT(res.err, Catch::Contains("KVM"));
    CHECK(nothing_left_running(app.dir));
  }
  SECTION("bad options") {
    auto res = sealed_demo()({"--cpus", "lots", "true"});
    CHECK(res.status == 64);
    CHECK_THAT(res.err, Catch::Contains("--help"));
  }
}

TEST_CASE("the stub runs confined in one-shot runs and in the daemon monitor with its client threads", "[app]") {
  const AppCopy& app = sealed_demo();
  std::vector<ThreadConfinement> threads;
  RunOptions o;
  o.kill_after_output = "ready\n";
  o.kill_signal = SIGTERM;  // forwarded: ends the guest command
  o.on_output = [&](pid_t pid) { threads = thread_confinement(pid); };
  auto r = app({"sh", "-c", "echo ready; sleep 600"}, o);
  INFO(r.err);
  CHECK(r.status == 128 + SIGTERM);
  check_confined(threads, 3);

  AppCopy d("demo");
  REQUIRE(d({"start"}).status == 0);
  pid_t monitor = monitor_pid(d);
  REQUIRE(monitor > 0);
  threads.clear();
  RunOptions e;
  e.kill_after_output = "ready\n";
  e.kill_signal = SIGTERM;
  e.on_output = [&](pid_t) { threads = thread_confinement(monitor); };
  auto ex = d({"exec", "sh", "-c", "echo ready; sleep 600"}, e);
  INFO(ex.err);
  CHECK(ex.status == 128 + SIGTERM);
  check_confined(threads, 4);  // main, device, vCPU, the exec's client thread
  CHECK(d({"stop"}).status == 0);
  CHECK(nothing_left_running(d.dir));
}
