// The agent's exec server: one poll loop serving every session on the vsock
// listener, reaping children (the agent is PID 1, so orphans too).
#pragma once

#include <string>

#include "base/result.h"

namespace spore::agent {
class Generation;
}

namespace spore::agent {

struct ServerOptions {
  int listen_fd = -1;  // a listening stream socket (vsock in the guest)
  std::string hostname;
  // The generation device, if the board has one: checked before every
  // command starts, so a resumed guest never runs anything with its
  // parent's randomness, clock or identity.
  Generation* generation = nullptr;
};

// Runs forever (returns only on a fatal setup error).
Status serve(const ServerOptions& opts);

}  // namespace spore::agent
