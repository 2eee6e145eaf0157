#include "agent/users.h"

#include "base/strings.h"

namespace spore::agent {
namespace {

struct PasswdEntry {
  std::string name;
  uid_t uid;
  gid_t gid;
  std::string home;
};

struct GroupEntry {
  std::string name;
  gid_t gid;
  std::vector<std::string> members;
};

std::vector<PasswdEntry> parse_passwd(std::string_view text) {
  std::vector<PasswdEntry> out;
  for (const auto& line : split(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    auto f = split(line, ':');
    if (f.size() < 7) continue;
    auto uid = parse_u64(f[2]);
    auto gid = parse_u64(f[3]);
    if (!uid || !gid || *uid > 0xfffffffe || *gid > 0xfffffffe) continue;
    out.push_back({f[0], static_cast<uid_t>(*uid), static_cast<gid_t>(*gid), f[5].empty() ? "/" : f[5]});
  }
  return out;
}

std::vector<GroupEntry> parse_group(std::string_view text) {
  std::vector<GroupEntry> out;
  for (const auto& line : split(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    auto f = split(line, ':');
    if (f.size() < 4) continue;
    auto gid = parse_u64(f[2]);
    if (!gid || *gid > 0xfffffffe) continue;
    GroupEntry g{f[0], static_cast<gid_t>(*gid), {}};
    if (!f[3].empty()) g.members = split(f[3], ',');
    out.push_back(std::move(g));
  }
  return out;
}

}  // namespace

Result<UserSpec> resolve_user(std::string_view user, std::string_view passwd_text, std::string_view group_text) {
  auto passwd = parse_passwd(passwd_text);
  auto groups = parse_group(group_text);
  std::string_view u = user, g;
  bool explicit_group = false;
  if (auto colon = user.find(':'); colon != std::string_view::npos) {
    u = user.substr(0, colon);
    g = user.substr(colon + 1);
    explicit_group = true;
    if (g.empty()) return make_error(ErrorKind::kUsage, "empty group in user spec '" + std::string(user) + "'");
  }
  // No user means uid 0, found by number: images without /etc/passwd
  // (scratch, distroless) still run as root.
  if (u.empty() && !explicit_group) u = "0";
  if (u.empty()) return make_error(ErrorKind::kUsage, "empty user in user spec '" + std::string(user) + "'");

  UserSpec spec;
  const PasswdEntry* pw = nullptr;
  if (auto num = parse_u64(u)) {
    if (*num > 0xfffffffe) return make_error(ErrorKind::kUsage, "uid out of range: " + std::string(u));
    spec.uid = static_cast<uid_t>(*num);
    for (const auto& p : passwd)
      if (p.uid == spec.uid) {
        pw = &p;
        break;
      }
  } else {
    for (const auto& p : passwd)
      if (p.name == u) {
        pw = &p;
        break;
      }
    if (!pw) return make_error(ErrorKind::kNotFound, "unable to find user " + std::string(u) + ": no matching entries in passwd file");
    spec.uid = pw->uid;
  }
  if (pw) {
    spec.name = pw->name;
    spec.gid = pw->gid;
    spec.home = pw->home;
  }
  if (explicit_group) {
    if (auto num = parse_u64(g)) {
      if (*num > 0xfffffffe) return make_error(ErrorKind::kUsage, "gid out of range: " + std::string(g));
      spec.gid = static_cast<gid_t>(*num);
    } else {
      const GroupEntry* ge = nullptr;
      for (const auto& e : groups)
        if (e.name == g) {
          ge = &e;
          break;
        }
      if (!ge) return make_error(ErrorKind::kNotFound, "unable to find group " + std::string(g) + ": no matching entries in group file");
      spec.gid = ge->gid;
    }
  }
  // Supplementary groups: every group listing the user by name (docker
  // does this only when no group was given explicitly).
  if (!explicit_group && !spec.name.empty()) {
    for (const auto& e : groups)
      for (const auto& m : e.members)
        if (m == spec.name && e.gid != spec.gid) spec.groups.push_back(e.gid);
  }
  return spec;
}

}  // namespace spore::agent
