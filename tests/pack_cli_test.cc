// spore-pack as a user runs it (host side): deterministic output, atomic
// writes, clear errors. The apps it makes are run by the [app] tests in the
// testbed.
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/sha256.h"
#include "bundle/app_config.h"
#include "bundle/bundle.h"
#include "packer/source/test_images.h"

namespace fs = std::filesystem;
using namespace spore;

namespace {

// The build under test: SPORE_OUT (set by ctest to the configured output
// directory), never a fixed path that could hold another build.
std::string spore_out() {
  const char* o = std::getenv("SPORE_OUT");
  if (!o || !*o) FAIL("SPORE_OUT is not set: run through ctest, or set it to the build's out/ directory");
  return o;
}
std::string pack_bin() { return spore_out() + "/bin/spore-pack"; }
std::string demo_oci() { return spore_out() + "/demo/oci"; }
std::string demo_rootfs() { return spore_out() + "/demo/rootfs"; }

using spore::pack::testing::TempDir;

struct Ran {
  int status;
  std::string err, out;
  bool interrupted = false;  // the signal was sent while spore-pack still ran
};

struct PackOpts {
  std::string tmpdir;                      // TMPDIR for spore-pack; empty: inherited
  std::function<void(pid_t)> before_exec;  // in the child, with spore-pack's pid-to-be
  std::function<bool(pid_t)> signal_when;  // polled with spore-pack's pid; the signal goes once it says so
  int signal = SIGINT;
};

// Runs spore-pack as a user would, capturing stderr.
Ran run_pack(std::vector<std::string> args, const PackOpts& po = {}) {
  args.insert(args.begin(), pack_bin());
  std::string errfile = "/tmp/spore-pack-test-err-" + std::to_string(::getpid());
  std::string outfile = "/tmp/spore-pack-test-out-" + std::to_string(::getpid());
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::freopen(errfile.c_str(), "w", stderr);
    std::freopen(outfile.c_str(), "w", stdout);
    if (!po.tmpdir.empty()) ::setenv("TMPDIR", po.tmpdir.c_str(), 1);
    if (po.before_exec) po.before_exec(::getpid());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  Ran ran{};
  int st = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &st, po.signal_when && !ran.interrupted ? WNOHANG : 0);
    if (r == pid) break;
    if (po.signal_when(pid)) {
      ran.interrupted = ::waitpid(pid, &st, WNOHANG) == 0;  // still running: the signal lands mid-pack
      if (!ran.interrupted) break;
      ::kill(pid, po.signal);
      continue;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::ifstream f(errfile), fo(outfile);
  ran.err.assign((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  ran.out.assign((std::istreambuf_iterator<char>(fo)), std::istreambuf_iterator<char>());
  ::unlink(errfile.c_str());
  ::unlink(outfile.c_str());
  ran.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return ran;
}

std::string sha_of(const std::string& path) { return digest_hex(*sha256_file(path)); }

std::vector<std::string> listing(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename());
  std::sort(out.begin(), out.end());
  return out;
}

// The pair is there and reads back: the sidecar opens, its config decodes.
void check_complete(const std::string& app) {
  REQUIRE(fs::is_regular_file(app));
  REQUIRE(fs::is_regular_file(app + ".spore"));
  auto r = bundle::Reader::open(app + ".spore");
  INFO((r.ok() ? "" : r.error().message));
  REQUIRE(r.ok());
  const bundle::Section* c = (*r)->find(bundle::SectionType::kConfig);
  REQUIRE(c);
  auto cfg = bundle::decode_app_config(*(*r)->read(*c, 1 << 20));
  CHECK(cfg.ok());
  for (auto t : {bundle::SectionType::kKernel, bundle::SectionType::kInitramfs, bundle::SectionType::kRootfs})
    CHECK((*r)->find(t));
  CHECK(fs::file_size(app) == fs::file_size(spore_out() + "/aarch64/bin/spore-stub"));
}

bool one_line(const std::string& err) { return !err.empty() && err.find('\n') == err.size() - 1; }

}  // namespace

TEST_CASE("spore-pack: same image in, same bytes out", "[pack][cli]") {
  TempDir a, b;
  REQUIRE(run_pack({"oci:" + demo_oci(), "-o", a.path + "/app", "-q"}).status == 0);
  REQUIRE(run_pack({"oci:" + demo_oci(), "-o", b.path + "/app", "-q"}).status == 0);
  CHECK(sha_of(a.path + "/app.spore") == sha_of(b.path + "/app.spore"));
  CHECK(sha_of(a.path + "/app") == sha_of(b.path + "/app"));
  auto r = bundle::Reader::open(a.path + "/app.spore");
  REQUIRE(r.ok());
  CHECK_FALSE((*r)->has_spore());  // packed on x86_64: the first run on arm64 seals
  auto cfg = bundle::decode_app_config(*(*r)->read(*(*r)->find(bundle::SectionType::kConfig), 1 << 20));
  REQUIRE(cfg.ok());
  CHECK(cfg->platform == "linux/arm64");
  CHECK(cfg->cmd.size() == 3);
  struct stat st;
  REQUIRE(::stat((a.path + "/app").c_str(), &st) == 0);
  CHECK((st.st_mode & 0111) != 0);
  CHECK(st.st_size <= 2 << 20);  // the stub's size goal: 2 MiB
}

TEST_CASE("spore-pack: flags are recorded in the app config", "[pack][cli]") {
  TempDir t;
  REQUIRE(run_pack({"dir:" + demo_rootfs(), "-o", t.path + "/app", "-q", "--cpus", "2", "--mem", "512",
                "-e", "A=1", "-w", "/tmp", "-u", "nobody", "--entrypoint", "/bin/sh", "--warm", "true"})
              .status == 0);
  auto r = bundle::Reader::open(t.path + "/app.spore");
  REQUIRE(r.ok());
  auto cfg = bundle::decode_app_config(*(*r)->read(*(*r)->find(bundle::SectionType::kConfig), 1 << 20));
  REQUIRE(cfg.ok());
  CHECK(cfg->cpus == 2);
  CHECK(cfg->mem_mib == 512);
  CHECK(cfg->env == std::vector<std::string>{"A=1"});
  CHECK(cfg->workdir == "/tmp");
  CHECK(cfg->user == "nobody");
  CHECK(cfg->entrypoint == std::vector<std::string>{"/bin/sh"});
  CHECK(cfg->warm == std::vector<std::string>{"/bin/sh", "-c", "true"});
}

TEST_CASE("spore-pack: --name is the app's name, --no-seal skips sealing and its note", "[pack][cli]") {
  TempDir t;
  auto named = run_pack({"dir:" + demo_rootfs(), "-o", t.path + "/app", "--name", "my-tool"});
  REQUIRE(named.status == 0);
  auto r = bundle::Reader::open(t.path + "/app.spore");
  REQUIRE(r.ok());
  auto cfg = bundle::decode_app_config(*(*r)->read(*(*r)->find(bundle::SectionType::kConfig), 1 << 20));
  REQUIRE(cfg.ok());
  CHECK(cfg->name == "my-tool");
  auto dflt = run_pack({"dir:" + demo_rootfs(), "-o", t.path + "/other", "-q"});
  REQUIRE(dflt.status == 0);
  auto r2 = bundle::Reader::open(t.path + "/other.spore");
  REQUIRE(r2.ok());
  CHECK(bundle::decode_app_config(*(*r2)->read(*(*r2)->find(bundle::SectionType::kConfig), 1 << 20))->name ==
        "other");

  // This host cannot seal (x86_64, or no usable /dev/kvm): without
  // --no-seal one line says the first run will; with it, nothing does.
  CHECK_THAT(named.err, Catch::Contains("will seal the warm spore"));
  CHECK_FALSE((*r)->has_spore());
  auto no_seal = run_pack({"dir:" + demo_rootfs(), "-o", t.path + "/third", "--no-seal"});
  REQUIRE(no_seal.status == 0);
  CHECK(no_seal.err.find("seal") == std::string::npos);
  auto r3 = bundle::Reader::open(t.path + "/third.spore");
  REQUIRE(r3.ok());
  CHECK_FALSE((*r3)->has_spore());
}

TEST_CASE("spore-pack: errors leave no output and say what is wrong", "[pack][cli]") {
  TempDir t;
  // (TMPDIR is this test's own: nothing may stay there either.)
  const std::string tmp = t.path + "/.tmp";
  fs::create_directories(tmp);
  auto pack_here = [&](std::vector<std::string> args) { return run_pack(std::move(args), {.tmpdir = tmp}); };
  auto bad = pack_here({"oci:/nonexistent/layout", "-o", t.path + "/app"});
  CHECK(bad.status != 0);
  CHECK_THAT(bad.err, Catch::Contains("/nonexistent/layout"));
  auto noreg = pack_here({"127.0.0.1:1/nothing:here", "--insecure", "-o", t.path + "/app"});
  CHECK(noreg.status != 0);
  CHECK_THAT(noreg.err, Catch::Contains("127.0.0.1:1"));
  auto plat = pack_here({"oci:" + demo_oci(), "--platform", "linux/s390x", "-o", t.path + "/app"});
  CHECK(plat.status == 64);
  auto usage = pack_here({"-o", t.path + "/app"});
  CHECK(usage.status == 64);
  auto outdir = pack_here({"oci:" + demo_oci(), "-o", t.path});
  CHECK(outdir.status == 64);
  for (const Ran* r : {&bad, &noreg, &plat, &outdir}) CHECK(one_line(r->err));
  CHECK(listing(t.path) == std::vector<std::string>{".tmp"});
  CHECK(fs::is_empty(tmp));
}

TEST_CASE("spore-pack: an interrupted pack leaves nothing behind", "[pack][cli]") {
  // Interrupted: exit 128+N, and neither the output directory nor TMPDIR
  // holds anything. Not interrupted (the signal came too late): a complete,
  // readable pair. Nothing in between, wherever the signal lands.
  TempDir t;
  const std::string out = t.path + "/out", tmp = t.path + "/tmp";
  auto reset = [&] {
    fs::remove_all(out);
    fs::remove_all(tmp);
    fs::create_directories(out);
    fs::create_directories(tmp);
  };
  auto check = [&](const Ran& r, int sig) {
    INFO(r.err);
    if (r.status == 0) {
      check_complete(out + "/app");
      CHECK(listing(out) == std::vector<std::string>{"app", "app.spore"});
    } else {
      CHECK(r.status == 128 + sig);
      CHECK(fs::is_empty(out));
    }
    CHECK(fs::is_empty(tmp));
  };
  auto has = [](const std::string& dir, const std::string& part) {
    for (auto& e : fs::directory_iterator(dir))
      if (e.path().filename().string().find(part) != std::string::npos) return true;
    return false;
  };
  // Level 19 makes the compression long enough that the signal lands inside it.
  const std::vector<std::string> args = {"dir:" + demo_rootfs(), "-o", out + "/app", "-q", "--compression", "19"};

  SECTION("at the points that matter, the interruption proven") {
    struct Point {
      const char* what;
      std::function<bool(pid_t)> reached;
    };
    std::vector<Point> points = {
        {"the work directory exists", [&](pid_t) { return has(tmp, "spore-pack-"); }},
        {"the sidecar is being written", [&](pid_t) { return has(out, ".spore.tmp-"); }},
    };
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
      for (const auto& p : points) {
        INFO(p.what << ", signal " << sig);
        reset();
        Ran r = run_pack(args, {.tmpdir = tmp, .signal_when = p.reached, .signal = sig});
        REQUIRE(r.interrupted);
        REQUIRE(r.status == 128 + sig);  // spore-pack was mid-way: it must not claim success
        CHECK_THAT(r.err, Catch::Contains("interrupted"));
        check(r, sig);
      }
    }
  }

  SECTION("the packing process killed (the OOM killer, kill -9): nothing left either") {
    reset();
    bool killed = false;
    Ran r = run_pack(args, {.tmpdir = tmp, .signal_when = [&](pid_t pack) {
                              // Mid-way (the sidecar being written), its builder, the only child, dies.
                              if (killed || !has(out, ".spore.tmp-")) return false;
                              std::string p = std::to_string(pack);
                              std::ifstream children("/proc/" + p + "/task/" + p + "/children");
                              pid_t builder = 0;
                              children >> builder;
                              killed = builder > 0 && ::kill(builder, SIGKILL) == 0;
                              return false;
                            }});
    INFO(r.err);
    REQUIRE(killed);
    CHECK(r.status == 128 + SIGKILL);
    CHECK_THAT(r.err, Catch::Contains("killed by signal 9; nothing written"));
    CHECK(fs::is_empty(out));
    CHECK(fs::is_empty(tmp));
  }

  SECTION("at arbitrary times: all or nothing") {
    for (int ms : {20, 100, 300, 900, 2500}) {
      INFO("SIGINT after " << ms << " ms");
      reset();
      auto start = std::chrono::steady_clock::now();
      Ran r = run_pack(args, {.tmpdir = tmp, .signal_when = [&](pid_t) {
                            return std::chrono::steady_clock::now() - start > std::chrono::milliseconds(ms);
                          }});
      check(r, SIGINT);
    }
  }
}

TEST_CASE("spore-pack: a work directory or temporary name planted by another user is not used", "[pack][cli]") {
  // Another local user knows spore-pack's pid as soon as it starts. The
  // work directory and the temporary names beside -o must be fresh and
  // unpredictable (mkdtemp, O_EXCL|O_NOFOLLOW), so what such a user plants
  // under a predictable name is neither written through nor removed.
  TempDir t;
  const std::string out = t.path + "/out", tmp = t.path + "/tmp", attacker = t.path + "/attacker";
  for (const auto& d : {out, tmp, attacker}) fs::create_directories(d);
  std::ofstream(attacker + "/victim") << "precious";
  Ran r = run_pack({"dir:" + demo_rootfs(), "-o", out + "/app", "-q"},
               {.tmpdir = tmp, .before_exec = [&](pid_t pid) {
                  const std::string p = std::to_string(pid);
                  // The old names: $TMPDIR/spore-pack-<pid>, APP.tmp.<pid>, APP.spore.tmp.<pid>.
                  ::symlink(attacker.c_str(), (tmp + "/spore-pack-" + p).c_str());
                  ::symlink((attacker + "/victim").c_str(), (out + "/app.tmp." + p).c_str());
                  ::symlink((attacker + "/victim").c_str(), (out + "/app.spore.tmp." + p).c_str());
                }});
  INFO(r.err);
  REQUIRE(r.status == 0);
  check_complete(out + "/app");
  CHECK(fs::is_symlink(out + "/app.spore") == false);
  CHECK(fs::is_symlink(out + "/app") == false);
  // Nothing written into, or removed from, what the attacker planted.
  CHECK(listing(attacker) == std::vector<std::string>{"victim"});
  std::ifstream v(attacker + "/victim");
  std::string victim((std::istreambuf_iterator<char>(v)), std::istreambuf_iterator<char>());
  CHECK(victim == "precious");
  CHECK(listing(tmp).size() == 1);  // the planted link, left alone; our own directory is gone
  CHECK(listing(out).size() == 4);  // app, app.spore and the two planted links
}

namespace {

// Writes data as a blob of the OCI layout at dir; returns its descriptor
// fields (digest, size) in d.
void put_blob(const std::string& dir, const std::string& data, nlohmann::json& d) {
  std::string hex = digest_hex(sha256(data));
  std::ofstream(dir + "/blobs/sha256/" + hex, std::ios::binary) << data;
  d["digest"] = "sha256:" + hex;
  d["size"] = data.size();
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("spore-pack: a layer that does not match the config's diff_id is refused", "[pack][cli]") {
  // The demo layout with its config edited (and the manifest and index
  // re-addressed): every blob digest is right, the content is not what
  // the config vouches for.
  TempDir t;
  const std::string oci = t.path + "/oci";
  fs::copy(demo_oci(), oci, fs::copy_options::recursive);
  auto index = nlohmann::json::parse(slurp(oci + "/index.json"));
  auto& mdesc = index["manifests"][0];
  auto blob = [&](const nlohmann::json& d) {
    return slurp(oci + "/blobs/sha256/" + d["digest"].get<std::string>().substr(7));
  };
  auto manifest = nlohmann::json::parse(blob(mdesc));
  auto config = nlohmann::json::parse(blob(manifest["config"]));
  REQUIRE(config["rootfs"]["diff_ids"].size() == manifest["layers"].size());
  config["rootfs"]["diff_ids"][0] = "sha256:" + std::string(64, 'e');
  put_blob(oci, config.dump(), manifest["config"]);
  put_blob(oci, manifest.dump(), mdesc);
  std::ofstream(oci + "/index.json") << index.dump();

  const std::string out = t.path + "/out";
  fs::create_directory(out);
  auto r = run_pack({"oci:" + oci, "-o", out + "/app", "-q"});
  CHECK(r.status == 65);
  CHECK_THAT(r.err, Catch::Contains("does not match the config's diff_id sha256:eeee"));
  CHECK(fs::is_empty(out));
}

TEST_CASE("spore-pack: --compression trades pack time for size", "[pack][cli]") {
  TempDir t;
  REQUIRE(run_pack({"oci:" + demo_oci(), "-o", t.path + "/fast", "-q", "--compression", "1"}).status == 0);
  REQUIRE(run_pack({"oci:" + demo_oci(), "-o", t.path + "/small", "-q", "--compression", "19"}).status == 0);
  CHECK(fs::file_size(t.path + "/small.spore") < fs::file_size(t.path + "/fast.spore"));
  for (const char* app : {"/fast.spore", "/small.spore"}) {
    auto r = bundle::Reader::open(t.path + app);
    REQUIRE(r.ok());
    // Both decompress to the same verified sections.
    auto rootfs = (*r)->find(bundle::SectionType::kRootfs);
    REQUIRE(rootfs);
    CHECK((*r)->extract(*rootfs, t.path + app + ".rootfs").ok());
  }
  CHECK(sha_of(t.path + "/fast.spore.rootfs") == sha_of(t.path + "/small.spore.rootfs"));
  CHECK(run_pack({"oci:" + demo_oci(), "-o", t.path + "/bad", "--compression", "0"}).status == 64);
  CHECK(run_pack({"oci:" + demo_oci(), "-o", t.path + "/bad", "--compression", "20"}).status == 64);
  CHECK_FALSE(fs::exists(t.path + "/bad"));
}

TEST_CASE("spore-pack: an image past the limits is refused in one line, leaving nothing", "[pack][cli]") {
  using spore::pack::testing::Compression;
  using spore::pack::testing::ImageSpec;
  using spore::pack::testing::OciLayoutWriter;
  using spore::pack::testing::TarWriter;
  TempDir t;
  const std::string out = t.path + "/out", tmp = t.path + "/tmp";
  fs::create_directories(out);
  fs::create_directories(tmp);
  // A layer with a sparse entry declaring 1 TiB: a few hundred bytes that
  // would fill the disk.
  {
    TarWriter w(t.path + "/layer.tar");
    w.file("ok", "fine");
    w.sparse_file("huge", uint64_t{1} << 40, "data");
  }
  ImageSpec spec;
  spec.layers = {{t.path + "/layer.tar", Compression::kGzip}};
  OciLayoutWriter oci(t.path + "/oci");
  oci.finish({{oci.image(spec), "v1"}});

  auto refused = [&](const std::vector<std::string>& args, const std::string& option) {
    Ran r = run_pack(args, {.tmpdir = tmp});
    INFO(r.err);
    CHECK(r.status == 65);
    CHECK(one_line(r.err));
    CHECK_THAT(r.err, Catch::StartsWith("spore-pack: ") && Catch::Contains(option));
    CHECK(fs::is_empty(out));
    CHECK(fs::is_empty(tmp));
  };
  refused({"oci:" + t.path + "/oci", "-o", out + "/app", "-q"}, "--max-image-size");
  const std::vector<std::string> demo = {"dir:" + demo_rootfs(), "-o", out + "/app", "-q"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = demo;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  refused(with({"--max-image-size", "100K"}), "--max-image-size");
  refused(with({"--max-entries", "10"}), "--max-entries");
  refused(with({"--max-path-depth", "1"}), "--max-path-depth");
  refused(with({"--max-path-length", "5"}), "--max-path-length");
  CHECK(run_pack(with({"--max-image-size", "lots"})).status == 64);
  CHECK(run_pack(with({"--max-entries", "0"})).status == 64);
  // Raised or not, limits an image stays within change nothing.
  Ran ok = run_pack(with({"--max-entries", "1000", "--max-path-depth", "8", "--max-image-size", "64M"}), {.tmpdir = tmp});
  INFO(ok.err);
  CHECK(ok.status == 0);
  check_complete(out + "/app");
}

TEST_CASE("spore-pack: --help lists the limits and their defaults", "[pack][cli]") {
  Ran r = run_pack({"--help"});
  CHECK(r.status == 0);
  for (const char* want : {"--max-image-size", "32G", "--max-entries", "2000000", "--max-path-depth", "256",
                           "--max-path-length", "4096", "--stall-timeout", "60"})
    CHECK_THAT(r.out, Catch::Contains(want));
}

TEST_CASE("spore-pack: a full disk is a clear error, leaves nothing, and a pack with room works", "[pack][cli]") {
  // A small tmpfs for the output, then for TMPDIR. These tests run as root
  // (here and in CI); a test that cannot mount must fail, not pass.
  TempDir t;
  const std::string out = t.path + "/out", tmp = t.path + "/tmp";
  fs::create_directories(out);
  fs::create_directories(tmp);
  struct Tmpfs {
    std::string dir;
    Tmpfs(std::string d, const char* size) : dir(std::move(d)) {
      std::string opts = std::string("mode=0755,size=") + size;
      if (::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) != 0)
        FAIL("cannot mount a tmpfs at " << dir << ": " << std::strerror(errno)
                                        << " (this test needs root, or CAP_SYS_ADMIN)");
    }
    void resize(const char* size) {
      std::string opts = std::string("mode=0755,size=") + size;
      REQUIRE(::mount("tmpfs", dir.c_str(), "tmpfs", MS_REMOUNT | MS_NOSUID | MS_NODEV, opts.c_str()) == 0);
    }
    ~Tmpfs() { ::umount2(dir.c_str(), MNT_DETACH); }
  };
  const std::vector<std::string> args = {"oci:" + demo_oci(), "-o", out + "/app", "-q"};
  auto full = [&](const char* where) {
    Ran r = run_pack(args, {.tmpdir = tmp});
    INFO(where << ": " << r.err);
    CHECK(r.status == 69);
    CHECK(one_line(r.err));
    CHECK_THAT(r.err, Catch::Contains("No space left on device"));
    CHECK(fs::is_empty(out));
    CHECK(fs::is_empty(tmp));
  };
  Tmpfs out_fs(out, "1m");
  full("output directory full");
  out_fs.resize("256m");
  Tmpfs tmp_fs(tmp, "1m");
  full("TMPDIR full");
  tmp_fs.resize("256m");
  Ran r = run_pack(args, {.tmpdir = tmp});
  INFO(r.err);
  CHECK(r.status == 0);
  check_complete(out + "/app");
  CHECK(fs::is_empty(tmp));
}
