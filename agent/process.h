// Starting a command for an exec request: stdio on pipes or a pty, its own
// session and process group, the requested user, environment and directory.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "agent/protocol.h"
#include "base/fd.h"
#include "base/result.h"

namespace spore::agent {

struct Child {
  pid_t pid = -1;
  UniqueFd stdin_w;   // -1 when stdin is /dev/null (or the pty master in tty mode)
  UniqueFd stdout_r;  // pty master in tty mode
  UniqueFd stderr_r;  // -1 in tty mode
  UniqueFd pty;       // pty master (tty mode), same file as stdout_r
};

// Why a spawn failed, in the protocol's terms.
struct SpawnError {
  proto::ErrorCode code = proto::ErrorCode::kStartFailed;
  std::string message;
};

// Default environment before the request's own entries.
std::vector<std::string> base_environment(const std::string& home, bool tty, const std::string& hostname);

// Looks up file in the PATH of env (not the agent's own): what execvp would
// pick. Returns the path, or an errno-style failure (ENOENT, EACCES).
Result<std::string> find_executable(const std::string& file, const std::vector<std::string>& env);

// What the agent adds to every command besides the request.
struct SpawnContext {
  std::string hostname;                // HOSTNAME
  std::vector<std::string> extra_env;  // e.g. the generation's identity variables
};

// Forks and execs the request. On success the child is running; on failure
// nothing is left behind.
Result<Child> spawn(const proto::ExecRequest& req, const SpawnContext& ctx, SpawnError* err);

}  // namespace spore::agent
