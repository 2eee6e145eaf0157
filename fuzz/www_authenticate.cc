// WWW-Authenticate challenges from registries (packer/source/registry.cc):
// `Bearer realm="...",service="...",scope="..."`, quoted or not, with
// escapes. Checked: the scheme comes out lower case, and what was parsed,
// written back as a challenge with every value quoted and escaped, parses
// to the same thing.
#include <cctype>

#include "fuzz/support/fuzz.h"
#include "packer/source/registry.h"

using namespace spore;
using namespace spore::fuzz;

namespace {

std::string quoted(const std::string& v) {
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string h(reinterpret_cast<const char*>(data), size);
  auto c = pack::parse_www_authenticate(h);
  if (!c) return 0;
  for (char ch : c->scheme) check(!std::isupper(static_cast<unsigned char>(ch)), "scheme not lower case", c->scheme);
  // Only a scheme without spaces (and a value list after one space) writes back unambiguously.
  if (c->scheme.find_first_of(" ,=\"") != std::string::npos) return 0;
  std::string again = c->scheme + " realm=" + quoted(c->realm) + ",service=" + quoted(c->service) +
                      ",scope=" + quoted(c->scope);
  auto c2 = pack::parse_www_authenticate(again);
  check(c2 && c2->scheme == c->scheme && c2->realm == c->realm && c2->service == c->service && c2->scope == c->scope,
        "a challenge does not survive writing it back", again);
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  seeds.add("docker_hub", "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
                          "scope=\"repository:library/alpine:pull\"");
  seeds.add("ghcr", "Bearer realm=\"https://ghcr.io/token\",service=\"ghcr.io\",scope=\"repository:o/app:pull\"");
  seeds.add("unquoted", "bearer realm=https://r.example/token , service=r.example,scope=repository:a:pull");
  seeds.add("escapes", "Bearer realm=\"a\\\"b\\\\c\",scope=\"x,y\"");
  seeds.add("basic", "Basic realm=\"Registry Realm\"");
  seeds.add("scheme_only", "  Negotiate");
}
