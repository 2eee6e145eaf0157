#include "vmm/cli/common.h"

#include <limits.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>

#include "base/exit_codes.h"
#include "base/log.h"
#include "base/strings.h"
#include "vmm/guest_cmdline.h"

namespace spore::cli {

int64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000ll + ts.tv_nsec;
}

const int64_t g_start_ns = mono_ns();

double ms_since_start(int64_t t_ns) { return t_ns ? (t_ns - g_start_ns) / 1e6 : -1.0; }

int fail(const Error& e) {
  std::fprintf(stderr, "spore-vm: %s\n", e.message.c_str());
  return exit_code_for(e);
}

std::string default_assets_dir() {
  if (const char* env = std::getenv("SPORE_ASSETS"); env && *env) return env;
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "share/spore";
  std::string exe(buf, static_cast<size_t>(n));
  return exe.substr(0, exe.rfind('/')) + "/../share/spore";
}

std::string default_cmdline(bool console, bool read_only, bool no_rootfs) {
  return vmm::guest_cmdline(vmm::native_guest_arch(), console,
                            read_only    ? vmm::RootMode::kReadOnly
                            : no_rootfs ? vmm::RootMode::kNone
                                        : vmm::RootMode::kOverlay);
}

void add_exec_options(CLI::App* app, ExecOptions& o) {
  app->add_option("-e,--env", o.env, "set KEY=VALUE in the command's environment");
  app->add_option("-w,--workdir", o.workdir, "working directory in the guest (default /)");
  app->add_option("-u,--user", o.user, "user[:group] to run as (default root)");
  app->add_flag("-i,--interactive", o.interactive, "forward stdin to the command");
  app->add_flag("-t,--tty", o.tty, "run the command on a pseudo-terminal");
  app->add_option("--timeout", o.timeout, "kill the command after DURATION (exit 124), e.g. 30s");
  app->add_flag("--console", o.console, "show the guest's kernel console on stderr");
  app->add_flag("--timings", o.timings, "print timings on stderr");
  app->add_option("command", o.command, "command and arguments (after --)")->take_all();
}

Result<proto::ExecRequest> make_request(const ExecOptions& o) {
  proto::ExecRequest req;
  if (!o.timeout.empty()) {
    auto t = parse_duration_ms(o.timeout);
    if (!t || *t == 0 || *t > UINT32_MAX)
      return make_error(ErrorKind::kUsage, "--timeout: expected a duration like 30s, 500ms or 2m");
    req.timeout_ms = static_cast<uint32_t>(*t);
  }
  for (const auto& e : o.env)
    if (e.find('=') == std::string::npos || e[0] == '=')
      return make_error(ErrorKind::kUsage, "-e " + e + ": expected KEY=VALUE");
  req.argv = o.command;
  req.env = o.env;
  req.cwd = o.workdir;
  req.user = o.user;
  return req;
}

UniqueFd forwarded_signals() { return agent::block_forwarded_signals(); }

int run_command(vmm::Machine& m, const proto::ExecRequest& req, const ExecOptions& o, int sig_fd,
                const vmm::ConsoleLog& console, int64_t* first_output_ns, int interrupt_fd, bool* cut_off) {
  agent::ExecIo io;
  io.signal_fd = sig_fd;
  io.interrupt_fd = interrupt_fd;
  io.cancel_fd = m.exit_fd();
  int64_t t0 = mono_ns();
  auto conn = m.vsock().connect_wait(proto::kAgentPort, vmm::kAgentConnectTimeoutMs);
  LOG_INFO("vsock connect to the agent took %.1f ms", (mono_ns() - t0) / 1e6);
  Result<agent::ExecOutcome> outcome =
      conn.ok() ? agent::run_exec_attached(conn->get(), req, io, o.interactive, o.tty)
                : Result<agent::ExecOutcome>(std::move(conn).error().wrap("connecting to the guest agent"));
  if (first_output_ns) *first_output_ns = outcome.ok() ? outcome->first_output_ns : 0;
  if (cut_off) *cut_off = outcome.ok() && outcome->cut_off;
  if (outcome.ok() && outcome->interrupted) return kStatusInterrupted;
  int status = agent::session_exit_status(outcome, "spore-vm", o.timeout);
  if (!outcome.ok() && !o.console) std::fputs(console.report_tail(20).c_str(), stderr);
  return status;
}

}  // namespace spore::cli
