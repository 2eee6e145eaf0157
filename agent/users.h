// Resolving the "user" of an exec request against the guest's /etc/passwd
// and /etc/group, with docker's rules. The agent is static, so no NSS.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace spore::agent {

struct UserSpec {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary
  std::string name;           // empty when only numeric ids were given
  std::string home = "/";
};

// user: "", "name", "uid", "name:group", "uid:gid", "name:gid", "uid:group".
// passwd and group are the files' contents. A numeric uid need not exist in
// passwd (then home is "/", gid defaults to the uid's passwd entry or 0).
Result<UserSpec> resolve_user(std::string_view user, std::string_view passwd, std::string_view group);

}  // namespace spore::agent
