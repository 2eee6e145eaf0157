#include "packer/source/reference.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "packer/source/manifest.h"
#include "packer/source/registry.h"

using namespace spore;
using namespace spore::pack;

namespace {
const std::string kDigest = "sha256:" + std::string(64, 'a');

Reference ok(const std::string& s) {
  auto r = parse_reference(s);
  INFO(s);
  REQUIRE(r.ok());
  return *r;
}
}  // namespace

TEST_CASE("docker hub names get the default registry, library/ and latest", "[pack][reference]") {
  auto r = ok("alpine");
  CHECK(r.domain == "docker.io");
  CHECK(r.registry_host() == "registry-1.docker.io");
  CHECK(r.repository == "library/alpine");
  CHECK(r.tag == "latest");
  CHECK(r.digest.empty());
  CHECK(r.str() == "docker.io/library/alpine:latest");

  r = ok("bitnami/redis:7.2");
  CHECK(r.domain == "docker.io");
  CHECK(r.repository == "bitnami/redis");
  CHECK(r.tag == "7.2");

  CHECK(ok("docker.io/alpine:3").str() == "docker.io/library/alpine:3");
  CHECK(ok("index.docker.io/library/alpine").str() == "docker.io/library/alpine:latest");
  CHECK(ok("docker://alpine").repository == "library/alpine");
}

TEST_CASE("the first component is a registry when it looks like a host", "[pack][reference]") {
  auto r = ok("ghcr.io/owner/app:v1");
  CHECK(r.domain == "ghcr.io");
  CHECK(r.registry_host() == "ghcr.io");
  CHECK(r.repository == "owner/app");  // no library/ outside docker.io

  r = ok("127.0.0.1:5000/demo:tag");
  CHECK(r.domain == "127.0.0.1:5000");
  CHECK(r.repository == "demo");
  CHECK(r.tag == "tag");

  r = ok("localhost/demo");
  CHECK(r.domain == "localhost");
  CHECK(r.tag == "latest");

  r = ok("localhost:5000/a/b/c");
  CHECK(r.domain == "localhost:5000");
  CHECK(r.repository == "a/b/c");

  // Not a host: no dot, no colon, not localhost -> a docker.io user name.
  r = ok("myuser/app");
  CHECK(r.domain == "docker.io");
  CHECK(r.repository == "myuser/app");

  // Upper case cannot be a repository, so docker takes it as a host.
  CHECK(ok("MyHost/app").domain == "MyHost");
}

TEST_CASE("digests pin the image and win over tags", "[pack][reference]") {
  auto r = ok("alpine@" + kDigest);
  CHECK(r.digest == kDigest);
  CHECK(r.tag.empty());
  CHECK(r.manifest_ref() == kDigest);

  r = ok("localhost:5000/demo:1.0@" + kDigest);
  CHECK(r.tag == "1.0");
  CHECK(r.manifest_ref() == kDigest);
  CHECK(r.str() == "localhost:5000/demo:1.0@" + kDigest);
}

TEST_CASE("malformed references are usage errors", "[pack][reference]") {
  for (const char* bad : {"", "Alpine", "alpine:", "alpine:bad tag", "a//b", "/alpine", "alpine@sha256:abc",
                          "alpine@md5:0123", "-alpine", "alpine..x", "ghcr.io/", "alpine:-x"}) {
    INFO(bad);
    auto r = parse_reference(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::kUsage);
  }
  CHECK(parse_reference("a__b/c-d--e.f_g").ok());
  // The registry host follows docker's grammar too (fuzz/regressions/image_reference/).
  for (const char* bad : {"[::1];5000/img", "ev il.com/x", "a..b/x", "-a.b/x", "a.b-/x", "host:/x", "host:50a0/x",
                          "host:5000:1/x", "[::1/x", "[]:5000/x", "[::g]/x", "[::1]x/y", "a.b_c/x", "h\xc3\xa9.io/x"}) {
    INFO(bad);
    CHECK_FALSE(parse_reference(bad).ok());
  }
  for (const char* good : {"[::1]:5000/img", "[fe80::1]/img", "a-b.example.com/x", "A.B/x", "localhost:1/x"}) {
    INFO(good);
    CHECK(parse_reference(good).ok());
  }
  CHECK(is_sha256_digest(kDigest));
  CHECK_FALSE(is_sha256_digest("sha256:" + std::string(64, 'A')));
}

TEST_CASE("hostile references are refused in linear time", "[pack][reference]") {
  // References also come from OCI annotations and docker-archive RepoTags.
  // A backtracking matcher needs 2^n steps for these (28 letters took 18 s,
  // 40 would take hours) or overflows its stack on long ones. Parsed in a
  // child with a generous deadline: a linear parser needs milliseconds for
  // all of them together, so the deadline never decides a correct run.
  std::vector<std::string> hostile;
  for (size_t n : {28, 40, 64, 4096, 1 << 20}) {
    hostile.push_back(std::string(n, 'a') + "!");
    hostile.push_back("ghcr.io/" + std::string(n, 'a') + "!");
    hostile.push_back("x/" + std::string(n, 'a') + "-" + std::string(n, 'a') + "A");
    std::string seps;
    for (size_t i = 0; i < n / 2; i++) seps += i % 3 ? "a-" : "a_";
    hostile.push_back(seps + "!");
    hostile.push_back("alpine:" + std::string(n, 'a') + "!");
  }
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    for (const auto& h : hostile)
      if (parse_reference(h).ok()) ::_exit(1);  // every one of them is malformed
    // Long but well-formed: accepted (the 255-byte repository limit aside).
    if (!parse_reference("a" + std::string(200, '-') + "b/" + std::string(50, 'c') + ":" + std::string(128, 't')).ok())
      ::_exit(2);
    ::_exit(0);
  }
  int status = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      FAIL("parsing hostile references did not finish within 120 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  INFO("child status " << status);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("platforms match with arm64's v8 variant optional", "[pack][reference]") {
  auto want = *parse_platform("linux/arm64");
  CHECK(platform_matches(want, {"linux", "arm64", ""}));
  CHECK(platform_matches(want, {"linux", "arm64", "v8"}));
  CHECK(platform_matches(want, {"linux", "aarch64", ""}));
  CHECK_FALSE(platform_matches(want, {"linux", "amd64", ""}));
  CHECK_FALSE(platform_matches(want, {"windows", "arm64", ""}));
  CHECK(platform_matches(*parse_platform("linux/arm64/v8"), {"linux", "arm64", ""}));
  CHECK_FALSE(platform_matches(*parse_platform("linux/arm/v7"), {"linux", "arm", "v6"}));
  CHECK(parse_platform("linux/x86_64")->architecture == "amd64");
  CHECK_FALSE(parse_platform("linux").ok());
  CHECK_FALSE(parse_platform("linux/arm64/v8/x").ok());
}

TEST_CASE("an index is resolved to the platform or lists what it has", "[pack][reference]") {
  std::string index = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
    {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:)" +
                      std::string(64, '1') +
                      R"(","size":10,"platform":{"os":"linux","architecture":"amd64"}},
    {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:)" +
                      std::string(64, '2') +
                      R"(","size":10,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
    {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:)" +
                      std::string(64, '3') + R"(","size":10,"platform":{"os":"unknown","architecture":"unknown"}}]})";
  auto m = parse_manifest(index, "");
  REQUIRE(m.ok());
  CHECK(m->is_index);
  auto d = select_platform(*m, *parse_platform("linux/arm64"), "img");
  REQUIRE(d.ok());
  CHECK(d->digest == "sha256:" + std::string(64, '2'));
  auto none = select_platform(*m, *parse_platform("linux/s390x"), "img");
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().kind == ErrorKind::kNotFound);
  CHECK(none.error().message.find("linux/amd64, linux/arm64/v8") != std::string::npos);
  CHECK(none.error().message.find("unknown") == std::string::npos);
}

TEST_CASE("manifests and configs are parsed defensively", "[pack][reference]") {
  CHECK_FALSE(parse_manifest("not json", "").ok());
  CHECK_FALSE(parse_manifest(R"({"schemaVersion":1,"fsLayers":[]})", "").ok());
  // A digest that is not sha256 cannot be verified, so it is refused.
  CHECK_FALSE(parse_manifest(R"({"config":{"digest":"sha512:ab","size":1},"layers":[]})", "").ok());
  auto c = parse_image_config(R"({"architecture":"aarch64","os":"linux","config":{"Entrypoint":"/bin/sh",
      "Cmd":null,"Env":["A=1"],"WorkingDir":"/w","User":"1:2"},"rootfs":{"diff_ids":["sha256:x"]}})");
  REQUIRE(c.ok());
  CHECK(c->entrypoint == std::vector<std::string>{"/bin/sh"});
  CHECK(c->cmd.empty());
  CHECK(c->env == std::vector<std::string>{"A=1"});
  CHECK(c->workdir == "/w");
  CHECK(c->user == "1:2");
  CHECK(c->architecture == "arm64");
  CHECK_FALSE(parse_image_config(R"({"config":{"Env":[1]}})").ok());
  CHECK_FALSE(parse_image_config("[]").ok());
}

TEST_CASE("WWW-Authenticate challenges are parsed", "[pack][reference]") {
  auto c = parse_www_authenticate(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull")");
  REQUIRE(c);
  CHECK(c->scheme == "bearer");
  CHECK(c->realm == "https://auth.docker.io/token");
  CHECK(c->service == "registry.docker.io");
  CHECK(c->scope == "repository:library/alpine:pull");

  c = parse_www_authenticate(
      R"(Bearer realm="https://x/t",scope="repository:a:pull,push", error="insufficient_scope")");
  REQUIRE(c);
  CHECK(c->scope == "repository:a:pull,push");  // commas inside quotes stay
  c = parse_www_authenticate(R"(Basic realm="Registry")");
  REQUIRE(c);
  CHECK(c->scheme == "basic");
  CHECK_FALSE(parse_www_authenticate(""));
}
