// spore-pack as a user runs it (host side): deterministic output, atomic
// writes, clear errors. The apps it makes are run by the [app] tests in the
// testbed.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/sha256.h"
#include "bundle/app_config.h"
#include "bundle/bundle.h"

namespace fs = std::filesystem;
using namespace spore;

namespace {

std::string root() {
  const char* r = std::getenv("SPORE_ROOT");
  REQUIRE(r);
  return r;
}
std::string pack_bin() { return root() + "/out/bin/spore-pack"; }
std::string demo_oci() { return root() + "/out/demo/oci"; }

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/spore-pack-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string path;
};

struct Ran {
  int status;
  std::string err;
};

// Runs spore-pack; kill_after_ms > 0 sends SIGINT after that long.
Ran pack(std::vector<std::string> args, int kill_after_ms = 0) {
  args.insert(args.begin(), pack_bin());
  std::string errfile = "/tmp/spore-pack-test-err-" + std::to_string(::getpid());
  pid_t pid = ::fork();
  if (pid == 0) {
    std::freopen(errfile.c_str(), "w", stderr);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  if (kill_after_ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(kill_after_ms));
    ::kill(pid, SIGINT);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  std::ifstream f(errfile);
  std::string err((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  ::unlink(errfile.c_str());
  return {WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), err};
}

std::string sha_of(const std::string& path) { return digest_hex(*sha256_file(path)); }

}  // namespace

TEST_CASE("spore-pack: same image in, same bytes out", "[pack][cli]") {
  TempDir a, b;
  REQUIRE(pack({"oci:" + demo_oci(), "-o", a.path + "/app", "-q"}).status == 0);
  REQUIRE(pack({"oci:" + demo_oci(), "-o", b.path + "/app", "-q"}).status == 0);
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
  REQUIRE(pack({"dir:" + root() + "/out/demo/rootfs", "-o", t.path + "/app", "-q", "--cpus", "2", "--mem", "512",
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

TEST_CASE("spore-pack: errors leave no output and say what is wrong", "[pack][cli]") {
  TempDir t;
  auto bad = pack({"oci:/nonexistent/layout", "-o", t.path + "/app"});
  CHECK(bad.status != 0);
  CHECK_THAT(bad.err, Catch::Contains("/nonexistent/layout"));
  auto noreg = pack({"127.0.0.1:1/nothing:here", "--insecure", "-o", t.path + "/app"});
  CHECK(noreg.status != 0);
  CHECK_THAT(noreg.err, Catch::Contains("127.0.0.1:1"));
  auto plat = pack({"oci:" + demo_oci(), "--platform", "linux/s390x", "-o", t.path + "/app"});
  CHECK(plat.status == 64);
  auto usage = pack({"-o", t.path + "/app"});
  CHECK(usage.status == 64);
  auto outdir = pack({"oci:" + demo_oci(), "-o", t.path});
  CHECK(outdir.status == 64);
  CHECK(fs::is_empty(t.path));
}

TEST_CASE("spore-pack: an interrupted pack leaves nothing behind", "[pack][cli]") {
  TempDir t;
  // A bigger tree takes long enough to interrupt mid-way; whenever SIGINT
  // lands, the outcome is all or nothing.
  for (int ms : {50, 200, 600}) {
    auto r = pack({"dir:" + root() + "/out/demo/rootfs", "-o", t.path + "/app", "-q"}, ms);
    bool complete = fs::exists(t.path + "/app") && fs::exists(t.path + "/app.spore");
    for (auto& e : fs::directory_iterator(t.path)) {
      std::string n = e.path().filename();
      INFO(n);
      CHECK((n == "app" || n == "app.spore"));
    }
    if (r.status == 0) CHECK(complete);
    fs::remove_all(t.path);
    fs::create_directories(t.path);
  }
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
  auto r = pack({"oci:" + oci, "-o", out + "/app", "-q"});
  CHECK(r.status == 65);
  CHECK_THAT(r.err, Catch::Contains("does not match the config's diff_id sha256:eeee"));
  CHECK(fs::is_empty(out));
}

TEST_CASE("spore-pack: --compression trades pack time for size", "[pack][cli]") {
  TempDir t;
  REQUIRE(pack({"oci:" + demo_oci(), "-o", t.path + "/fast", "-q", "--compression", "1"}).status == 0);
  REQUIRE(pack({"oci:" + demo_oci(), "-o", t.path + "/small", "-q", "--compression", "19"}).status == 0);
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
  CHECK(pack({"oci:" + demo_oci(), "-o", t.path + "/bad", "--compression", "0"}).status == 64);
  CHECK(pack({"oci:" + demo_oci(), "-o", t.path + "/bad", "--compression", "20"}).status == 64);
  CHECK_FALSE(fs::exists(t.path + "/bad"));
}
