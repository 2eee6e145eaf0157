// Pulling from registries: Debian's docker-registry started on 127.0.0.1
// (images pushed with skopeo), and a small in-process fake for what a
// local registry does not do (token auth, CDN redirects, bad bytes).
#include "packer/source/registry.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "base/strings.h"
#include "packer/source/test_images.h"

using namespace spore;
using namespace spore::pack;
using namespace spore::pack::testing;

namespace {

int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

bool port_open(int port) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(s);
  return ok;
}

// A child process that dies with the test: SIGKILL if the test process
// dies first (PDEATHSIG), SIGTERM then a wait when this object goes.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::string& log) {
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }
  ~Child() { stop(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // Exit status, waiting for it.
  int wait() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 50; i++) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

constexpr const char* kRegistryBin = "/usr/bin/docker-registry";
constexpr const char* kSkopeoBin = "/usr/bin/skopeo";

class LocalRegistry {
 public:
  explicit LocalRegistry(const TempDir& tmp) : port_(free_port()) {
    std::string config = tmp / "registry.yml";
    spit(config, strfmt("version: 0.1\n"
                        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
                        "storage:\n  filesystem:\n    rootdirectory: %s\n"
                        "http:\n  addr: 127.0.0.1:%d\n",
                        (tmp / "registry-storage").c_str(), port_));
    child_ = std::make_unique<Child>(std::vector<std::string>{kRegistryBin, "serve", config}, tmp / "registry.log");
    for (int i = 0; i < 100 && !port_open(port_); i++) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    INFO(slurp(tmp / "registry.log"));
    REQUIRE(port_open(port_));
  }
  int port() const { return port_; }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  void stop() { child_->stop(); }

 private:
  int port_;
  std::unique_ptr<Child> child_;
};

void skopeo_copy(const TempDir& tmp, const std::vector<std::string>& args) {
  spit(tmp / "policy.json", R"({"default":[{"type":"insecureAcceptAnything"}]})");
  std::vector<std::string> argv = {kSkopeoBin, "--policy", tmp / "policy.json", "copy", "--dest-tls-verify=false"};
  argv.insert(argv.end(), args.begin(), args.end());
  Child c(argv, tmp / "skopeo.log");
  int rc = c.wait();
  INFO(slurp(tmp / "skopeo.log"));
  REQUIRE(rc == 0);
}

SourceOptions pull_options(const std::string& cache, const std::string& platform = "linux/arm64") {
  SourceOptions o;
  o.platform = platform;
  o.insecure = true;
  o.blob_cache = cache;
  return o;
}


void check_demo(const Image& image, const std::string& marker = "arm64") {
  CHECK(image.config.entrypoint == std::vector<std::string>{"/bin/app"});
  CHECK(image.config.cmd == std::vector<std::string>{"--serve"});
  CHECK(image.config.env == std::vector<std::string>{"PATH=/bin", "MODE=test"});
  CHECK(image.config.workdir == "/srv");
  CHECK(image.config.user == "1000:1000");
  REQUIRE(image.layers.size() == 2);
  for (const auto& l : image.layers) {
    // Every blob in the cache is what its digest says.
    CHECK(l.path.substr(l.path.rfind('/') + 1) == l.digest.substr(7));
    CHECK(digest_of(slurp(l.path)) == l.digest);
    CHECK(std::filesystem::file_size(l.path) == l.size);
  }
  Tree t = unpack(image);
  CHECK(read_tree_file(t, "bin/app") == "#!/bin/sh\necho " + marker + "\n");
  CHECK(read_tree_file(t, "srv/data") == "data");
  CHECK_FALSE(t.lookup("tmp/junk"));
}

bool tools_present() {
  bool ok = ::access(kRegistryBin, X_OK) == 0 && ::access(kSkopeoBin, X_OK) == 0;
  if (!ok) FAIL("docker-registry and skopeo are needed: run scripts/setup.sh");
  return ok;
}

}  // namespace

TEST_CASE("images are pulled from a local registry, per platform", "[pack][registry]") {
  if (!tools_present()) return;
  TempDir tmp;
  OciLayoutWriter w(tmp / "layout");
  ImageSpec arm, amd;
  arm.layers = demo_layers(tmp / "arm");
  amd.arch = "amd64";
  amd.layers = demo_layers(tmp / "amd", Compression::kGzip, Compression::kGzip, "amd64");
  json arm_m = w.image(arm), amd_m = w.image(amd);
  w.finish({{arm_m, "v1"}, {w.index({amd_m, arm_m}), "multi"}});

  LocalRegistry reg(tmp);
  skopeo_copy(tmp, {"oci:" + tmp / "layout:v1", "docker://" + reg.host() + "/demo:v1"});
  skopeo_copy(tmp, {"--all", "oci:" + tmp / "layout:multi", "docker://" + reg.host() + "/demo:multi"});

  std::string cache = tmp / "cache";
  Image image = open_ok(reg.host() + "/demo:v1", pull_options(cache));
  CHECK(image.reference == reg.host() + "/demo:v1");
  CHECK(image.digest == arm_m["digest"]);  // skopeo keeps the manifest bytes
  CHECK(image.config.architecture == "arm64");
  check_demo(image);

  SECTION("a second pull reuses the verified cache, a damaged blob is fetched again") {
    auto before = std::filesystem::last_write_time(image.layers[0].path);
    Image again = open_ok(reg.host() + "/demo:v1", pull_options(cache));
    CHECK(again.layers[0].path == image.layers[0].path);
    CHECK(std::filesystem::last_write_time(again.layers[0].path) == before);
    std::filesystem::resize_file(image.layers[1].path, 10);
    check_demo(open_ok(reg.host() + "/demo:v1", pull_options(cache)));
    // Nothing half-written is left behind.
    for (const auto& e : std::filesystem::directory_iterator(cache + "/sha256"))
      CHECK(e.path().filename().string().find(".tmp") == std::string::npos);
  }

  SECTION("by digest") {
    Image pinned = open_ok(reg.host() + "/demo@" + image.digest, pull_options(cache));
    CHECK(pinned.digest == image.digest);
    check_demo(pinned);
  }

  SECTION("a manifest list is resolved to the platform asked for") {
    check_demo(open_ok(reg.host() + "/demo:multi", pull_options(cache)));
    check_demo(open_ok(reg.host() + "/demo:multi", pull_options(cache, "linux/amd64")), "amd64");
    Error e = open_err(reg.host() + "/demo:multi", pull_options(cache, "linux/s390x"));
    CHECK(e.kind == ErrorKind::kNotFound);
    CHECK(e.message.find("no image for linux/s390x") != std::string::npos);
    CHECK(e.message.find("available: linux/amd64, linux/arm64") != std::string::npos);
    // A single-platform image for another architecture is refused too.
    e = open_err(reg.host() + "/demo:v1", pull_options(cache, "linux/amd64"));
    CHECK(e.message.find("image for linux/arm64, not linux/amd64") != std::string::npos);
  }

  SECTION("unknown tags and repositories are clear errors") {
    Error e = open_err(reg.host() + "/demo:nope", pull_options(cache));
    CHECK(e.kind == ErrorKind::kNotFound);
    CHECK(e.message.find("no such image") != std::string::npos);
    CHECK(e.message.find("nope") != std::string::npos);
    CHECK(e.message.find("MANIFEST_UNKNOWN") != std::string::npos);
    e = open_err(reg.host() + "/other:v1", pull_options(cache));
    CHECK(e.kind == ErrorKind::kNotFound);
  }

  SECTION("plain HTTP needs --insecure; a dead registry names the URL") {
    auto o = pull_options(cache);
    o.insecure = false;
    Error e = open_err(reg.host() + "/demo:v1", o);
    CHECK(e.kind == ErrorKind::kUnavailable);
    CHECK(e.message.find("https://" + reg.host() + "/v2/demo/manifests/v1") != std::string::npos);
    CHECK(e.message.find("--insecure") != std::string::npos);
    reg.stop();
    e = open_err(reg.host() + "/demo:v1", pull_options(cache));
    CHECK(e.kind == ErrorKind::kUnavailable);
    CHECK(e.message.find("http://" + reg.host() + "/v2/demo/manifests/v1") != std::string::npos);
  }
}

// ---- the fake registry ----

namespace {

// One request per connection, GET only: enough for libcurl and for us.
class FakeRegistry {
 public:
  explicit FakeRegistry(const std::string& layout) {
    for (const auto& e : std::filesystem::directory_iterator(layout + "/blobs/sha256"))
      blobs_["sha256:" + e.path().filename().string()] = slurp(e.path());
    auto index = json::parse(slurp(layout + "/index.json"));
    for (const auto& d : index["manifests"])
      tags_[d["annotations"]["org.opencontainers.image.ref.name"].get<std::string>()] = d["digest"].get<std::string>();
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    REQUIRE(::listen(fd_, 16) == 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeRegistry() {
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }

  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }

  std::atomic<int> token_requests{0}, denied{0}, cdn_requests{0}, stalls{0};
  std::atomic<bool> tamper_blobs{false}, refuse_tokens{false};
  // Requests whose path starts with this get no answer (or, for /cdn/, half
  // the blob) and the connection is held open until the client gives up.
  std::string stall_prefix;  // set before pulling
  std::map<std::string, std::string> extra_manifests;  // ref -> body served as a manifest (set before pulling)
  std::string scope_seen;

 private:
  void serve() {
    for (;;) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        if (errno == EINTR) continue;
        return;  // shut down
      }
      std::string req;
      char buf[4096];
      while (req.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      std::string resp = handle(req);
      std::string path = req.size() > 4 ? req.substr(4, req.find(' ', 4) - 4) : "";
      bool stall = !stall_prefix.empty() && starts_with(path, stall_prefix);
      if (stall) {
        size_t body = resp.find("\r\n\r\n") + 4;
        resp = starts_with(path, "/cdn/") ? resp.substr(0, body + (resp.size() - body) / 2) : "";
      }
      size_t done = 0;
      while (done < resp.size()) {
        ssize_t n = ::write(c, resp.data() + done, resp.size() - done);
        if (n <= 0) break;
        done += static_cast<size_t>(n);
      }
      if (stall) {
        stalls++;
        // Hold the connection, sending nothing, until the client hangs up.
        while (::read(c, buf, sizeof buf) > 0) {
        }
      }
      ::close(c);
    }
  }

  static std::string reply(int status, const std::string& body, const std::vector<std::string>& headers = {}) {
    std::string r = strfmt("HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n", status, body.size());
    for (const auto& h : headers) r += h + "\r\n";
    return r + "\r\n" + body;
  }

  std::string handle(const std::string& req) {
    std::string path = req.substr(4, req.find(' ', 4) - 4);
    bool authed = req.find("Authorization: Bearer good-token\r\n") != std::string::npos;
    if (starts_with(path, "/token?")) {
      token_requests++;
      scope_seen = path;
      if (refuse_tokens) return reply(401, R"({"errors":[{"code":"DENIED","message":"no anonymous access"}]})");
      return reply(200, R"({"token":"good-token","expires_in":300})", {"Content-Type: application/json"});
    }
    if (starts_with(path, "/cdn/")) {
      // A CDN checks a signed URL, not the registry's token.
      cdn_requests++;
      std::string blob = blobs_.at(path.substr(5));
      if (tamper_blobs) blob[blob.size() / 2] ^= 1;
      return reply(200, blob);
    }
    if (!authed || starts_with(path, "/v2/private/")) {
      denied++;
      return reply(401, R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})",
                   {"WWW-Authenticate: Bearer realm=\"http://" + host() +
                    "/token\",service=\"fake.registry\",scope=\"repository:demo:pull\""});
    }
    const std::string manifests = "/v2/demo/manifests/", blobs = "/v2/demo/blobs/";
    if (starts_with(path, manifests)) {
      std::string ref = path.substr(manifests.size());
      std::string body;
      if (extra_manifests.count(ref)) {
        body = extra_manifests.at(ref);
      } else {
        std::string digest = tags_.count(ref) ? tags_.at(ref) : ref;
        if (!blobs_.count(digest))
          return reply(404, R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]})");
        body = blobs_.at(digest);
      }
      return reply(200, body, {"Content-Type: " + json::parse(body)["mediaType"].get<std::string>()});
    }
    if (starts_with(path, blobs)) {
      std::string digest = path.substr(blobs.size());
      if (!blobs_.count(digest)) return reply(404, R"({"errors":[{"code":"BLOB_UNKNOWN"}]})");
      return reply(307, "", {"Location: /cdn/" + digest});
    }
    return reply(404, "");
  }

  int fd_ = -1, port_ = 0;
  std::thread thread_;
  std::map<std::string, std::string> blobs_, tags_;
};

}  // namespace

TEST_CASE("anonymous tokens, CDN redirects and digest checks", "[pack][registry]") {
  TempDir tmp;
  OciLayoutWriter w(tmp / "layout");
  ImageSpec arm;
  arm.layers = demo_layers(tmp / "arm");
  json m = w.image(arm);
  w.finish({{m, "v1"}});
  FakeRegistry fake(tmp / "layout");

  SECTION("a Bearer challenge gets one anonymous token, used for everything after") {
    Image image = open_ok(fake.host() + "/demo:v1", pull_options(tmp / "cache"));
    check_demo(image);
    CHECK(image.digest == m["digest"]);
    CHECK(fake.token_requests == 1);
    CHECK(fake.scope_seen == "/token?service=fake.registry&scope=repository%3Ademo%3Apull");
    CHECK(fake.denied == 1);
    CHECK(fake.cdn_requests == 3);  // config and two layers, through the redirect
  }

  SECTION("a blob that does not match its digest never enters the cache") {
    fake.tamper_blobs = true;
    Error e = open_err(fake.host() + "/demo:v1", pull_options(tmp / "cache"));
    CHECK(e.kind == ErrorKind::kCorrupt);
    CHECK(e.message.find("does not match its digest") != std::string::npos);
    CHECK(e.message.find("http://" + fake.host() + "/v2/demo/blobs/sha256:") != std::string::npos);
    CHECK(std::filesystem::is_empty(tmp / "cache/sha256"));
  }

  SECTION("a manifest that does not match the digest asked for is refused") {
    std::string other = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":)" +
                        m.dump() + R"(,"layers":[]})";
    std::string wrong = "sha256:" + std::string(64, 'e');
    fake.extra_manifests[wrong] = other;
    Error e = open_err(fake.host() + "/demo@" + wrong, pull_options(tmp / "cache"));
    CHECK(e.kind == ErrorKind::kCorrupt);
    CHECK(e.message.find("manifest does not match its digest") != std::string::npos);
  }

  SECTION("denied access is reported as such") {
    Error e = open_err(fake.host() + "/private:v1", pull_options(tmp / "cache"));
    CHECK(e.kind == ErrorKind::kUnavailable);
    CHECK(e.message.find("access denied") != std::string::npos);
    fake.refuse_tokens = true;
    e = open_err(fake.host() + "/demo:v1", pull_options(tmp / "cache"));
    CHECK(e.message.find("refused an anonymous token") != std::string::npos);
    CHECK(e.message.find("no anonymous access") != std::string::npos);
  }
}

TEST_CASE("a registry that stops sending fails the pull, naming it", "[pack][registry]") {
  TempDir tmp;
  OciLayoutWriter w(tmp / "layout");
  ImageSpec arm;
  arm.layers = demo_layers(tmp / "arm");
  w.finish({{w.image(arm), "v1"}});
  FakeRegistry fake(tmp / "layout");
  auto o = pull_options(tmp / "cache");
  o.stall_timeout_s = 2;
  // The token, a manifest, and a blob that stops half way: each request
  // that receives nothing for the stall timeout ends the pull.
  auto prefix = GENERATE(std::string("/token"), std::string("/v2/demo/manifests/"), std::string("/cdn/"));
  INFO("stalling " << prefix);
  fake.stall_prefix = prefix;
  Error e = open_err(fake.host() + "/demo:v1", o);
  CHECK(e.kind == ErrorKind::kUnavailable);
  CHECK_THAT(e.message, Catch::Contains("registry " + fake.host()));
  CHECK_THAT(e.message, Catch::Contains("nothing received for 2 s"));
  CHECK_THAT(e.message, Catch::Contains("--stall-timeout"));
  CHECK(fake.stalls >= 1);
  // Nothing half-downloaded stays in the cache.
  if (std::filesystem::exists(tmp / "cache/sha256"))
    for (const auto& f : std::filesystem::directory_iterator(tmp / "cache/sha256"))
      CHECK(f.path().filename().string().find(".tmp") == std::string::npos);
}

TEST_CASE("cached blobs are verified before use, in a cache of the user's own", "[pack][registry]") {
  TempDir tmp;
  OciLayoutWriter w(tmp / "layout");
  ImageSpec arm;
  arm.layers = demo_layers(tmp / "arm");
  w.finish({{w.image(arm), "v1"}});
  FakeRegistry fake(tmp / "layout");
  const std::string cache = tmp / "cache";
  Image image = open_ok(fake.host() + "/demo:v1", pull_options(cache));
  for (const std::string& d : {cache, cache + "/sha256"}) {
    INFO(d);
    CHECK((std::filesystem::status(d).permissions() & std::filesystem::perms::all) == std::filesystem::perms::owner_all);
  }

  SECTION("a blob swapped for other bytes of the same size is fetched again") {
    const std::string& path = image.layers[0].path;
    std::string bytes = slurp(path);
    bytes[bytes.size() / 2] ^= 0x20;
    spit(path, bytes);
    int before = fake.cdn_requests;
    Image again = open_ok(fake.host() + "/demo:v1", pull_options(cache));
    CHECK(fake.cdn_requests == before + 1);
    check_demo(again);
  }

  SECTION("a cache directory others can write to, or someone else's, is refused") {
    auto perms = GENERATE(0777, 0775, 0757);
    INFO("mode " << std::oct << perms);
    REQUIRE(::chmod(cache.c_str(), static_cast<mode_t>(perms)) == 0);
    Error e = open_err(fake.host() + "/demo:v1", pull_options(cache));
    CHECK(e.kind == ErrorKind::kUnavailable);
    CHECK_THAT(e.message, Catch::Contains(cache + " is writable by other users"));
    REQUIRE(::chmod(cache.c_str(), 0700) == 0);
    REQUIRE(::chmod((cache + "/sha256").c_str(), static_cast<mode_t>(perms)) == 0);
    CHECK_THAT(open_err(fake.host() + "/demo:v1", pull_options(cache)).message, Catch::Contains("writable by other users"));
    REQUIRE(::chmod((cache + "/sha256").c_str(), 0700) == 0);
    REQUIRE(::chown(cache.c_str(), 12345, 12345) == 0);
    CHECK_THAT(open_err(fake.host() + "/demo:v1", pull_options(cache)).message, Catch::Contains("is owned by uid 12345"));
    REQUIRE(::chown(cache.c_str(), ::geteuid(), ::getegid()) == 0);
    spit(tmp / "file", "");
    CHECK_THAT(open_err(fake.host() + "/demo:v1", pull_options(tmp / "file")).message,
               Catch::Contains("is not a directory"));
  }

  SECTION("without XDG_CACHE_HOME and HOME there is no cache, and no shared fallback") {
    struct Env {
      std::string name;
      std::optional<std::string> old;
      explicit Env(std::string n) : name(std::move(n)) {
        if (const char* v = std::getenv(name.c_str())) old = v;
        ::unsetenv(name.c_str());
      }
      ~Env() {
        if (old) ::setenv(name.c_str(), old->c_str(), 1);
      }
    } xdg("XDG_CACHE_HOME"), home("HOME");
    Error e = open_err(fake.host() + "/demo:v1", pull_options(""));
    CHECK(e.kind == ErrorKind::kUsage);
    CHECK_THAT(e.message, Catch::Contains("set XDG_CACHE_HOME (or HOME)"));
    CHECK_FALSE(std::filesystem::exists("/var/tmp/spore/blobs/sha256/" + image.layers[0].digest.substr(7)));
  }
}
