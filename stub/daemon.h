// Daemon mode (doc/daemon.md): one monitor process per app and user keeps a
// warm VM and serves `exec`, `status` and `stop` over a unix socket.
#pragma once

#include <string>

#include "base/result.h"
#include "stub/app.h"
#include "stub/cli.h"

namespace spore::stub {

struct DaemonPaths {
  std::string dir;   // $XDG_RUNTIME_DIR/spore, else /tmp/spore-<uid>
  std::string sock;  // <dir>/<app>-<digest>.sock
  std::string pid;   // <dir>/<app>-<digest>.pid
  std::string log;   // <dir>/<app>-<digest>.log: the monitor's messages
  std::string lock;  // <dir>/<app>-<digest>.lock: write-locked by the monitor for its whole life
};

// Creates the runtime directory (0700) and refuses one that another user
// owns or others can write.
Result<DaemonPaths> daemon_paths(const App& app);

int cmd_start(App& app, const Options& o);
int cmd_exec(App& app, const Options& o);
int cmd_status(App& app, const Options& o);
int cmd_stop(App& app, const Options& o);

}  // namespace spore::stub
