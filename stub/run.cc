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
#include "vmm/seccomp_policy.h"
#include "vmm/spore/capture.h"

namespace spore::stub {
namespace {
// After a broken session, how long the VM may take to report its exit.
constexpr int kGuestExitGraceMs = 2000;
}  // namespace

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
  req.env = merge_env(c.env, env);
  req.cwd = o.workdir.empty() ? c.workdir : o.workdir;
  req.user = o.user.empty() ? c.user : o.user;
  if (!o.timeout.empty()) req.timeout_ms = static_cast<uint32_t>(*parse_duration_ms(o.timeout));
  return req;
}

UniqueFd forwarded_signals() { return agent::block_forwarded_signals(); }

int run_session(const std::string& app, int conn, const proto::ExecRequest& req, const Options& o, int sig_fd,
                int cancel_fd, bool* broken) {
  agent::ExecIo io;
  io.signal_fd = sig_fd;
  io.cancel_fd = cancel_fd;
  auto outcome = agent::run_exec_attached(conn, req, io, o.interactive, o.tty);
  if (broken) *broken = !outcome.ok();
  return agent::session_exit_status(outcome, app, o.timeout);
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
  mr.signal_fd = sigfd.get();
  // Kept (bounded) to show when the guest dies under the command.
  auto console = std::make_shared<vmm::ConsoleLog>(false);
  mr.console = [console](const char* d, size_t n) { console->write(d, n); };
  auto got = app.obtain(mr);
  if (!got.ok()) {
    std::fprintf(stderr, "%s: %s\n", app.name().c_str(), got.error().message.c_str());
    return exit_code_for(got.error());
  }
  vmm::Machine& m = *got->machine;
  vmm::WorkingSetRecorder ws = app.working_set_recorder(*got);
  // Nothing left to open or write by path: from here the main thread only
  // streams stdio (vmm/seccomp_policy.h).
  if (auto s = vmm::confine_this_thread(vmm::ThreadRole::kSession); !s.ok()) {
    std::fprintf(stderr, "%s: %s\n", app.name().c_str(), s.error().message.c_str());
    return exit_code_for(s.error());
  }
  auto conn = m.vsock().connect_wait(proto::kAgentPort, vmm::kAgentConnectTimeoutMs);
  if (!conn.ok()) {
    std::fprintf(stderr, "%s: connecting to the guest agent: %s\n", app.name().c_str(), conn.error().message.c_str());
    return exit_code_for(conn.error());
  }
  bool broken = false;
  int status = run_session(app.name(), conn->get(), *req, o, sigfd.get(), m.exit_fd(), &broken);
  // The session broke: if the guest went away under the command (its
  // vsock connections may close just before the VM's exit is seen), what
  // its console said last follows the line above (doc/exit-codes.md).
  if (broken && m.wait_for(kGuestExitGraceMs)) std::fputs(console->report_tail(20).c_str(), stderr);
  m.stop();
  ws.record(m);
  return status;
}

}  // namespace spore::stub
