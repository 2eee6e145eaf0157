#include "packer/source/reference.h"

#include "base/strings.h"

namespace spore::pack {
namespace {

constexpr std::string_view kDockerHub = "docker.io";

bool is_alnum_lower(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// docker's grammar for one repository path component,
//   [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
// checked in one pass: references also come from untrusted annotations and
// archive tags, and a backtracking matcher takes exponential time on them.
bool valid_component(std::string_view c) {
  size_t i = 0;
  for (;;) {
    size_t run = i;
    while (i < c.size() && is_alnum_lower(c[i])) i++;
    if (i == run) return false;  // empty, or a separator where a letter or digit must be
    if (i == c.size()) return true;
    size_t sep = i;
    while (i < c.size() && !is_alnum_lower(c[i])) i++;
    std::string_view s = c.substr(sep, i - sep);
    bool dashes = s.find_first_not_of('-') == std::string_view::npos;
    if (!(s == "." || s == "_" || s == "__" || dashes)) return false;
  }
}

// [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
bool valid_tag(std::string_view t) {
  auto word = [](char c) { return is_alnum_lower(c) || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (t.empty() || t.size() > 128 || !word(t[0])) return false;
  for (char c : t.substr(1))
    if (!word(c) && c != '.' && c != '-') return false;
  return true;
}

bool is_alnum(char c) { return is_alnum_lower(c) || (c >= 'A' && c <= 'Z'); }
bool all_digits(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
}

// docker's grammar for the registry host, in one pass:
//   host [":" port]   host: labels of [A-Za-z0-9-] separated by ".", each
//                     starting and ending with a letter or digit
//   "[" ipv6 "]" [":" port]   ipv6: hex digits and ':'
bool valid_domain(std::string_view d) {
  std::string_view port;
  if (!d.empty() && d.front() == '[') {
    size_t close = d.find(']');
    if (close == std::string_view::npos || close < 3) return false;
    if (d.substr(1, close - 1).find_first_not_of("0123456789abcdefABCDEF:") != std::string_view::npos) return false;
    std::string_view rest = d.substr(close + 1);
    if (rest.empty()) return true;
    if (rest.front() != ':') return false;
    port = rest.substr(1);
  } else {
    size_t colon = d.find(':');
    if (colon != std::string_view::npos) {
      port = d.substr(colon + 1);
      d = d.substr(0, colon);
      if (port.empty()) return false;
    }
    for (const auto& label : split(d, '.')) {
      if (label.empty() || !is_alnum(label.front()) || !is_alnum(label.back())) return false;
      for (char c : label)
        if (!is_alnum(c) && c != '-') return false;
    }
    if (colon == std::string_view::npos) return true;
  }
  return all_digits(port);
}

bool looks_like_domain(std::string_view first) {
  if (first == "localhost") return true;
  for (char c : first)
    if (c == '.' || c == ':' || (c >= 'A' && c <= 'Z')) return true;
  return false;
}

Error bad(std::string_view ref, const std::string& why) {
  return make_error(ErrorKind::kUsage, "invalid image reference \"" + std::string(ref) + "\": " + why);
}

}  // namespace

bool is_sha256_digest(std::string_view d) {
  if (!starts_with(d, "sha256:") || d.size() != 7 + 64) return false;
  for (char c : d.substr(7))
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::string Reference::registry_host() const { return domain == kDockerHub ? "registry-1.docker.io" : domain; }

std::string Reference::str() const {
  std::string s = domain + "/" + repository;
  if (!tag.empty()) s += ":" + tag;
  if (!digest.empty()) s += "@" + digest;
  return s;
}

Result<Reference> parse_reference(std::string_view ref) {
  std::string_view s = ref;
  if (starts_with(s, "docker://")) s.remove_prefix(9);
  if (s.empty()) return bad(ref, "empty");

  Reference r;
  if (size_t at = s.find('@'); at != std::string_view::npos) {
    r.digest = std::string(s.substr(at + 1));
    s = s.substr(0, at);
    if (!starts_with(r.digest, "sha256:")) return bad(ref, "only sha256 digests are supported");
    if (!is_sha256_digest(r.digest)) return bad(ref, "a digest is \"sha256:\" and 64 lower-case hex digits");
  }

  // The tag follows the last ':' that comes after the last '/' (a ':'
  // before it belongs to host:port).
  size_t slash = s.rfind('/');
  size_t colon = s.rfind(':');
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
    r.tag = std::string(s.substr(colon + 1));
    s = s.substr(0, colon);
    if (!valid_tag(r.tag)) return bad(ref, "invalid tag \"" + r.tag + "\"");
  }

  size_t first = s.find('/');
  if (first != std::string_view::npos && looks_like_domain(s.substr(0, first))) {
    r.domain = std::string(s.substr(0, first));
    s = s.substr(first + 1);
  } else {
    r.domain = std::string(kDockerHub);
  }
  if (r.domain == "index.docker.io") r.domain = std::string(kDockerHub);
  if (r.domain.empty()) return bad(ref, "empty registry host");
  if (!valid_domain(r.domain))
    return bad(ref, "invalid registry host \"" + r.domain + "\" (host names, IPv4 or [IPv6] addresses, and an optional :port)");

  if (s.empty()) return bad(ref, "no repository name");
  for (const auto& c : split(s, '/')) {
    if (!valid_component(c))
      return bad(
          ref, "repository names are lower-case letters, digits and separators (.-_), got \"" + std::string(s) + "\"");
  }
  r.repository = std::string(s);
  if (r.domain == kDockerHub && r.repository.find('/') == std::string::npos) r.repository = "library/" + r.repository;
  if (r.repository.size() > 255) return bad(ref, "repository name longer than 255 characters");
  if (r.tag.empty() && r.digest.empty()) r.tag = "latest";
  return r;
}

}  // namespace spore::pack
