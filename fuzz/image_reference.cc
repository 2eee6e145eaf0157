// Image references (packer/source/reference.cc): typed by users, and also
// read from untrusted OCI annotations and docker-archive RepoTags. Checked
// beyond "no crash" (and, through libFuzzer's timeouts, beyond linear
// time): what parses obeys docker's grammar (written out again here, from
// the distribution/reference grammar, as a second opinion), and prints
// back to a string that parses to the same reference.
#include "fuzz/support/fuzz.h"
#include "packer/source/reference.h"

using namespace spore;
using namespace spore::fuzz;

namespace {

bool alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
bool digit(char c) { return c >= '0' && c <= '9'; }

// domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
bool domain_component(std::string_view c) {
  if (c.empty() || !alnum(c.front()) || !alnum(c.back())) return false;
  for (char ch : c)
    if (!alnum(ch) && ch != '-') return false;
  return true;
}

// domain := (domain-name | "[" ipv6 "]") (":" port)?; domain-name :=
// domain-component ("." domain-component)*
bool docker_domain(std::string_view d) {
  std::string_view host = d;
  if (!d.empty() && d.front() == '[') {
    size_t close = d.find(']');
    if (close == std::string_view::npos || close < 3) return false;
    for (char c : d.substr(1, close - 1))
      if (!(digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':')) return false;
    host = {};
    d = d.substr(close + 1);
    if (d.empty()) return true;
    if (d.front() != ':') return false;
  } else {
    size_t colon = d.find(':');
    host = d.substr(0, colon);
    d = colon == std::string_view::npos ? std::string_view() : d.substr(colon);
    for (size_t at = 0;;) {
      size_t dot = host.find('.', at);
      if (!domain_component(host.substr(at, dot == std::string_view::npos ? dot : dot - at))) return false;
      if (dot == std::string_view::npos) break;
      at = dot + 1;
    }
  }
  if (d.empty()) return true;
  d.remove_prefix(1);  // ':'
  if (d.empty()) return false;
  for (char c : d)
    if (!digit(c)) return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string s(reinterpret_cast<const char*>(data), size);
  auto r = pack::parse_reference(s);
  if (!r.ok()) return 0;
  check(docker_domain(r->domain), "a reference with a domain docker's grammar refuses", r->domain);
  check(!r->repository.empty() && r->repository.size() <= 255, "a repository name out of range", r->repository);
  check(!r->tag.empty() || !r->digest.empty(), "a reference with neither tag nor digest");
  check(r->digest.empty() || pack::is_sha256_digest(r->digest), "a bad digest accepted", r->digest);
  auto again = pack::parse_reference(r->str());
  check(again.ok(), "a reference does not parse after printing it", r->str());
  check(again->domain == r->domain && again->repository == r->repository && again->tag == r->tag &&
            again->digest == r->digest,
        "a reference changes when printed and parsed again", r->str());
  (void)r->registry_host();
  (void)r->manifest_ref();
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  int i = 0;
  for (const char* ref : {"alpine", "python:3.12-slim", "ghcr.io/o/app:1.2", "docker://busybox",
                          "localhost:5000/demo@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                          "127.0.0.1:5000/a/b/c:latest", "[::1]:5000/img", "Registry.Example/x_y__z-w",
                          "index.docker.io/library/ubuntu:22.04", "aaaaaaaaaaaaaaaaaaaaaaaaaaaa!"})
    seeds.add("ref" + std::to_string(i++), ref);
}
