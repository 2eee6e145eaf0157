// End-to-end: what doc/apps.md and doc/exit-codes.md promise about a packed
// app's command line, its errors, its signals, its terminal and its cache.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bundle/bundle.h"
#include "tests/integration/apps.h"

using namespace spore::itest;
namespace fs = std::filesystem;

namespace {

// The one-line error rule: exactly one line, "prefix: message".
bool one_line(const std::string& err, const std::string& prefix) {
  return err.rfind(prefix + ": ", 0) == 0 && !err.empty() && err.back() == '\n' &&
         err.find('\n') == err.size() - 1;
}

uint64_t mem_total_kib(const std::string& meminfo) {
  auto pos = meminfo.find("MemTotal:");
  return pos == std::string::npos ? 0 : std::stoull(meminfo.substr(pos + 9));
}

}  // namespace

TEST_CASE("a command that cannot start exits 126 with one line: bad -u, not executable", "[app]") {
  const AppCopy& app = sealed_demo();
  auto user = app({"-u", "no-such-user", "true"});
  CHECK(user.status == 126);
  CHECK(one_line(user.err, "demo"));
  CHECK_THAT(user.err, Catch::Contains("no-such-user"));
  auto group = app({"-u", "root:no-such-group", "true"});
  CHECK(group.status == 126);
  CHECK(one_line(group.err, "demo"));
  auto file = app({"/etc/os-release"});
  CHECK(file.status == 126);
  CHECK(one_line(file.err, "demo"));
  CHECK(file.out.empty());
  auto missing = app({"no-such-command"});
  CHECK(missing.status == 127);
  CHECK(one_line(missing.err, "demo"));
}

TEST_CASE("-u USER:GROUP runs the command as that user and group", "[app]") {
  const AppCopy& app = sealed_demo();
  auto names = app({"-u", "daemon:users", "sh", "-c", "id -u; id -g; id -G"});
  CHECK(names.status == 0);
  CHECK(names.out == "1\n100\n100\n");
  auto numbers = app({"-u", "65534:1", "sh", "-c", "id -u; id -g"});
  CHECK(numbers.status == 0);
  CHECK(numbers.out == "65534\n1\n");
}

TEST_CASE("-e KEY copies the caller's value, an unset KEY is left out", "[app]") {
  const AppCopy& app = sealed_demo();
  RunOptions o;
  o.env = {"FROM_CALLER=caller value", "NOT_SET_ANYWHERE"};
  auto r = app({"-e", "FROM_CALLER", "-e", "NOT_SET_ANYWHERE", "sh", "-c",
                "echo \"$FROM_CALLER\"; echo ${NOT_SET_ANYWHERE-unset}"},
               o);
  CHECK(r.status == 0);
  CHECK(r.out == "caller value\nunset\n");
}

TEST_CASE("--mem other than the sealed size cold-boots, says so once, and gets that memory", "[app]") {
  const AppCopy& app = sealed_demo();
  auto sealed = app({"cat", "/proc/meminfo"});
  REQUIRE(sealed.status == 0);
  auto bigger = app({"--mem", "512", "cat", "/proc/meminfo"});
  INFO(bigger.err);
  CHECK(bigger.status == 0);
  CHECK_THAT(bigger.err, Catch::Contains("cold booting"));
  CHECK(one_line(bigger.err, "demo"));
  // The kernel keeps some for itself; what is left tells the sizes apart.
  uint64_t small = mem_total_kib(sealed.out), big = mem_total_kib(bigger.out);
  CHECK(big > small + 128 * 1024);
  CHECK(big <= 512 * 1024);
}

TEST_CASE("the packed name prefixes the app's messages, however the stub is renamed", "[app]") {
  AppCopy app("namedapp", "renamed");
  auto first = app({"true"});
  CHECK(first.status == 0);
  CHECK_THAT(first.err, Catch::StartsWith("my-tool: first run on this host"));
  auto r = app({"no-such-command"});
  CHECK(r.status == 127);
  CHECK(one_line(r.err, "my-tool"));
}

TEST_CASE("a guest that dies under the command: exit 70, one line, then its console", "[app]") {
  const AppCopy& app = sealed_demo();
  auto r = app({"sh", "-c", "echo going; poweroff -f; sleep 100"});
  CHECK(r.status == 70);
  CHECK(r.out == "going\n");
  // One message line, then only console lines, each marked.
  REQUIRE(r.err.rfind("demo: ", 0) == 0);
  std::string rest = r.err.substr(r.err.find('\n') + 1);
  CHECK_FALSE(rest.empty());
  for (size_t at = 0; at < rest.size(); at = rest.find('\n', at) + 1) CHECK(rest.compare(at, 4, "  | ") == 0);
  CHECK_THAT(rest, Catch::Contains("Power down"));
  CHECK(nothing_left_running(app.dir));
}

TEST_CASE("SIGTERM, SIGHUP and SIGQUIT reach the guest command", "[app]") {
  const AppCopy& app = sealed_demo();
  for (auto [sig, name, code] : {std::tuple{SIGTERM, "TERM", 43}, {SIGHUP, "HUP", 44}, {SIGQUIT, "QUIT", 45}}) {
    RunOptions o;
    o.kill_after_output = "ready";
    o.kill_signal = sig;
    auto r = app({"sh", "-c",
                  std::string("trap 'echo got-") + name + "; exit " + std::to_string(code) + "' " + name +
                      "; echo ready; while :; do sleep 0.1; done"},
                 o);
    INFO(name << ": " << r.err);
    CHECK(r.status == code);
    CHECK(r.out == std::string("ready\ngot-") + name + "\n");
  }
}

TEST_CASE("-t on a real terminal: its size, resizes and ^C reach the guest, its modes come back", "[app]") {
  const AppCopy& app = sealed_demo();
  std::vector<std::string> argv = {app.path, "-i", "-t", "sh", "-c",
                                   "trap 'stty size' WINCH; trap 'echo got-int; exit 7' INT; stty size; echo ready; "
                                   "while :; do sleep 0.1; done"};
  PtyRun t(argv, app.env(), 33, 101);
  REQUIRE(t.read_until("ready", 120));
  CHECK_THAT(t.output(), Catch::Contains("33 101"));
  t.resize(40, 120);
  CHECK(t.read_until("40 120", 60));
  t.write("\x03");  // ^C as typed: the guest's terminal turns it into SIGINT
  CHECK(t.read_until("got-int", 60));
  CHECK(t.wait(60) == 7);
  CHECK(t.modes_restored());
}

TEST_CASE("a sealed spore that fails the platform contract cold-boots and reseals locally", "[app]") {
  AppCopy app = sealed_bundle_copy();
  // Record a platform fact this host does not have.
  {
    using namespace spore::bundle;
    auto r = Reader::open(app.path + ".spore");
    REQUIRE(r.ok());
    auto text = (*r)->read(*(*r)->find(SectionType::kSporeManifest), 1 << 20);
    REQUIRE(text.ok());
    auto j = nlohmann::json::parse(*text);
    REQUIRE(j.contains("platform"));
    REQUIRE(j["platform"]["gic_iidr"] != "0x0badcafe");
    j["platform"]["gic_iidr"] = "0x0badcafe";
    auto w = Writer::create(app.path + ".spore");
    REQUIRE(w.ok());
    for (const auto& s : (*r)->sections()) {
      if (s.type == SectionType::kSporeManifest) REQUIRE((*w)->add(s.type, j.dump(), false).ok());
      else REQUIRE((*w)->copy_from(**r, s).ok());
    }
    REQUIRE((*w)->finish().ok());
  }
  auto first = app({"echo", "still-runs"});
  INFO(first.err);
  CHECK(first.status == 0);
  CHECK(first.out == "still-runs\n");
  CHECK_THAT(first.err, Catch::Contains("cannot resume the sealed spore") && Catch::Contains("GICD_IIDR"));
  auto second = app({"echo", "resumed"});
  CHECK(second.status == 0);
  CHECK(second.out == "resumed\n");
  CHECK(second.err.empty());  // the local spore, silently
  bool local = false;
  for (auto& e : fs::recursive_directory_iterator(app.cache))
    if (e.path().filename() == "local-spore") local = true;
  CHECK(local);
}

TEST_CASE("the cache: SPORE_CACHE_DIR, else XDG_CACHE_HOME, else HOME; deleted, it is rebuilt", "[app]") {
  AppCopy app = sealed_bundle_copy();
  auto runs_with = [&](std::vector<std::string> env) {
    RunOptions o;
    o.env = std::move(env);
    auto r = app({"echo", "ok"}, o);
    INFO(r.err);
    return r.status == 0 && r.out == "ok\n";
  };
  CHECK(runs_with({}));
  CHECK(fs::exists(app.cache + "/ram"));
  CHECK(runs_with({"SPORE_CACHE_DIR", "XDG_CACHE_HOME=" + app.dir + "/xdg"}));
  CHECK(fs::exists(app.dir + "/xdg/spore/ram"));
  CHECK(runs_with({"SPORE_CACHE_DIR", "XDG_CACHE_HOME", "HOME=" + app.dir + "/home"}));
  CHECK(fs::exists(app.dir + "/home/.cache/spore/ram"));
  RunOptions none;
  none.env = {"SPORE_CACHE_DIR", "XDG_CACHE_HOME", "HOME"};
  auto nowhere = app({"true"}, none);
  CHECK(nowhere.status == 69);
  CHECK(one_line(nowhere.err, "demo"));
  CHECK_THAT(nowhere.err, Catch::Contains("SPORE_CACHE_DIR"));

  fs::remove_all(app.cache);
  CHECK(runs_with({}));
  CHECK(fs::exists(app.cache + "/ram"));
}

TEST_CASE("the cache refuses a directory other users can write, and redoes an edited entry", "[app]") {
  AppCopy app = sealed_bundle_copy();
  REQUIRE(app({"true"}).status == 0);
  fs::permissions(app.cache, fs::perms::group_write, fs::perm_options::add);
  auto shared = app({"true"});
  CHECK(shared.status == 69);
  CHECK(one_line(shared.err, "demo"));
  CHECK_THAT(shared.err, Catch::Contains("writable by other users"));
  fs::permissions(app.cache, fs::perms::group_write, fs::perm_options::remove);

  // An extracted rootfs edited in place (same size): hashed again, replaced.
  std::string rootfs;
  for (auto& e : fs::directory_iterator(app.cache + "/sections"))
    if (e.path().extension() == ".rootfs") rootfs = e.path();
  REQUIRE_FALSE(rootfs.empty());
  fs::permissions(rootfs, fs::perms::owner_write, fs::perm_options::add);
  std::string before = sha256_file(rootfs);
  {
    std::fstream f(rootfs, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(1024);
    f.write("\xde\xad\xbe\xef", 4);
  }
  timespec apart[2] = {{1'000'000'000, 0}, {1'000'000'000, 0}};  // the edit may share the write's clock tick
  REQUIRE(::utimensat(AT_FDCWD, rootfs.c_str(), apart, 0) == 0);
  auto r = app({"cat", "/etc/os-release"});
  CHECK(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains("spore demo"));
  CHECK(sha256_file(rootfs) == before);
}
