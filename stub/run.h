// Running a command for the user: building the request from the image
// config and the options, pumping a session, mapping the outcome to an
// exit status. Used by one-shot runs and by `exec` against a daemon.
#pragma once

#include "agent/protocol.h"
#include "base/fd.h"
#include "base/result.h"
#include "stub/app.h"
#include "stub/cli.h"

namespace spore::stub {

// docker semantics: Entrypoint + (args or Cmd), image Env + -e, -w/-u over
// the image's WorkingDir/User.
Result<proto::ExecRequest> build_request(const App& app, const Options& o);

// Blocks the signals that are forwarded to the command; a signalfd for them.
UniqueFd forwarded_signals();

// Runs req over conn (a stream to the agent) with this process's stdio and
// returns the exit status to use; launcher failures are printed.
// broken (if given): set when the session ended without an exit status.
int run_session(const std::string& app, int conn, const proto::ExecRequest& req, const Options& o, int sig_fd,
                int cancel_fd, bool* broken = nullptr);

int cmd_run(App& app, const Options& o);

}  // namespace spore::stub
