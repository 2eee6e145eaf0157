#include "stub/run.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "agent/client.h"
#include "base/exit_codes.h"
#include "base/strings.h"
#include "vmm/guest.h"

namespace spore::stub {

Result<proto::ExecRequest> build_request(const App& app, const Options& o) {
  const auto& c = app.config();
  proto::ExecRequest req;
  req.argv = bundle::resolve_command(c, o.command);
  if (req.argv.empty())
    return make_error(ErrorKind::kUsage, "the image defines no command to run: give one (" + app.name() + " -- CMD)");
  std::vector<std::string> env;
  for (const auto& e : o.env) {
    if (e.find('=') != std::string::npos) {
      env.push_back(e);
    } else if (const char* v = std::getenv(e.c_str())) {
      env.push_back(e + "=" + v);  // -e KEY copies the caller's value, as docker does
    }
  }
  req.env = bundle::merge_env(c.env, env);
  req.cwd = o.workdir.empty() ? c.workdir : o.workdir;
  req.user = o.user.empty() ? c.user : o.user;
  if (!o.timeout.empty()) req.timeout_ms = static_cast<uint32_t>(*parse_duration_ms(o.timeout));
  if (o.tty) {
    req.flags |= proto::kExecTty;
    if (auto sz = agent::terminal_size(STDIN_FILENO)) {
      req.rows = sz->first;
      req.cols = sz->second;
    }
  }
  return req;
}

UniqueFd forwarded_signals() {
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH}) sigaddset(&sigs, s);
  sigprocmask(SIG_BLOCK, &sigs, nullptr);
  return UniqueFd(::signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK));
}

int run_session(const std::string& app, int conn, const proto::ExecRequest& req, const Options& o, int sig_fd,
                int cancel_fd) {
  agent::ExecIo io;
  io.signal_fd = sig_fd;
  io.cancel_fd = cancel_fd;
  if (o.interactive) io.stdin_fd = STDIN_FILENO;
  std::unique_ptr<agent::RawTerminal> raw;
  if (o.tty) {
    io.tty_fd = STDIN_FILENO;
    if (o.interactive && ::isatty(STDIN_FILENO)) raw = std::make_unique<agent::RawTerminal>(STDIN_FILENO);
  }
  auto outcome = agent::run_exec(conn, req, io);
  raw.reset();
  if (!outcome.ok()) {
    std::fprintf(stderr, "%s: %s\n", app.c_str(), outcome.error().message.c_str());
    return exit_code_for(outcome.error());
  }
  if (outcome->refused) {
    const auto& r = *outcome->refused;
    std::fprintf(stderr, "%s: %s\n", app.c_str(), r.message.c_str());
    switch (r.code) {
      case proto::ErrorCode::kNotFound: return kExitNotFound;
      case proto::ErrorCode::kNotExecutable:
      case proto::ErrorCode::kStartFailed: return kExitCannotRun;
      default: return kExitProtocol;
    }
  }
  const auto& e = *outcome->exit;
  if (e.reason == proto::ExitReason::kTimedOut) {
    std::fprintf(stderr, "%s: command timed out after %s\n", app.c_str(), o.timeout.c_str());
    return kExitTimeout;
  }
  return e.status;
}

int cmd_run(App& app, const Options& o) {
  auto req = build_request(app, o);
  if (!req.ok()) {
    std::fprintf(stderr, "%s: %s\n", app.name().c_str(), req.error().message.c_str());
    return exit_code_for(req.error());
  }
  UniqueFd sigfd = forwarded_signals();
  MachineRequest mr;
  mr.cpus = o.cpus;
  mr.mem_mib = o.mem_mib;
  auto got = app.obtain(mr);
  if (!got.ok()) {
    std::fprintf(stderr, "%s: %s\n", app.name().c_str(), got.error().message.c_str());
    return exit_code_for(got.error());
  }
  vmm::Machine& m = *got->machine;
  auto conn = m.vsock().connect_wait(proto::kAgentPort, 30'000);
  if (!conn.ok()) {
    std::fprintf(stderr, "%s: connecting to the guest agent: %s\n", app.name().c_str(), conn.error().message.c_str());
    return exit_code_for(conn.error());
  }
  int status = run_session(app.name(), conn->get(), *req, o, sigfd.get(), m.exit_fd());
  m.stop();
  return status;
}

}  // namespace spore::stub
