// spore-vm: the developer's and tests' low-level front end to the VMM.
//
//   spore-vm run [options] -- CMD [ARGS...]   cold-boot a guest and run CMD
//
// Exit status: CMD's own, or one of the codes in base/exit_codes.h.
#include <limits.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "agent/client.h"
#include "base/exit_codes.h"
#include "base/log.h"
#include "base/strings.h"
#include "vmm/guest.h"
#include "vmm/machine.h"

#ifndef SPORE_VERSION
#define SPORE_VERSION "dev"
#endif

namespace spore {
namespace {

int64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000ll + ts.tv_nsec;
}

const int64_t g_start_ns = mono_ns();

int fail(const Error& e) {
  std::fprintf(stderr, "spore-vm: %s\n", e.message.c_str());
  return exit_code_for(e);
}

// Directory with the default kernel, initramfs and demo rootfs: the share/
// folder next to this binary's bin/ ($SPORE_ASSETS overrides).
std::string default_assets_dir() {
  if (const char* env = std::getenv("SPORE_ASSETS"); env && *env) return env;
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "share/spore";
  std::string exe(buf, static_cast<size_t>(n));
  std::string dir = exe.substr(0, exe.rfind('/'));
  return dir + "/../share/spore";
}

struct RunOptions {
  std::string kernel, initrd, rootfs;
  bool no_rootfs = false;
  uint64_t mem_mib = 256;
  uint32_t cpus = 1;
  std::vector<std::string> env;
  std::string workdir, user, timeout, boot_timeout = "120s", cmdline_extra;
  bool interactive = false, tty = false, read_only = false, console = false, timings = false;
  std::vector<std::string> command;
};

int run(const RunOptions& o) {
  if (o.command.empty()) return fail(make_error(ErrorKind::kUsage, "no command given (spore-vm run -- CMD [ARGS...])"));
  uint64_t timeout_ms = 0, boot_timeout_ms = 0;
  if (!o.timeout.empty()) {
    auto t = parse_duration_ms(o.timeout);
    if (!t || *t == 0 || *t > UINT32_MAX)
      return fail(make_error(ErrorKind::kUsage, "--timeout: expected a duration like 30s, 500ms or 2m"));
    timeout_ms = *t;
  }
  auto bt = parse_duration_ms(o.boot_timeout);
  if (!bt || *bt == 0 || *bt > INT32_MAX)
    return fail(make_error(ErrorKind::kUsage, "--boot-timeout: expected a duration like 120s"));
  boot_timeout_ms = *bt;
  for (const auto& e : o.env)
    if (e.find('=') == std::string::npos || e[0] == '=')
      return fail(make_error(ErrorKind::kUsage, "-e " + e + ": expected KEY=VALUE"));

  // Signals are handled synchronously: block them before any thread starts
  // (threads inherit the mask) and read them from a signalfd.
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH}) sigaddset(&sigs, s);
  sigprocmask(SIG_BLOCK, &sigs, nullptr);
  UniqueFd sigfd(::signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK));

  std::string assets = default_assets_dir();
  vmm::ConsoleLog console(o.console);
  vmm::MachineConfig mc;
  mc.kernel = o.kernel.empty() ? assets + "/Image" : o.kernel;
  mc.initrd = o.initrd.empty() ? assets + "/initramfs.cpio" : o.initrd;
  if (!o.no_rootfs) mc.rootfs = o.rootfs.empty() ? assets + "/demo-rootfs.img" : o.rootfs;
  mc.vcpus = o.cpus;
  mc.mem_mib = o.mem_mib;
  mc.cmdline = std::string(o.console ? "console=ttyAMA0 loglevel=6" : "console=ttyAMA0 quiet") +
               " panic=-1 random.trust_bootloader=on" +
               (o.read_only ? " spore.rootmode=ro" : o.no_rootfs ? " spore.rootmode=none" : "");
  if (!o.cmdline_extra.empty()) mc.cmdline += " " + o.cmdline_extra;
  mc.console = [&console](const char* d, size_t n) { console.write(d, n); };

  auto machine = vmm::Machine::create(mc);
  if (!machine.ok()) return fail(machine.error());
  vmm::Machine& m = **machine;
  auto ready = vmm::AgentReady::listen(m);
  if (!ready.ok()) return fail(ready.error());
  int64_t t_created = mono_ns();
  if (auto s = m.start(); !s.ok()) return fail(s.error());

  auto hello = (*ready)->wait(static_cast<int>(boot_timeout_ms), sigfd.get());
  int64_t t_ready = mono_ns();
  if (!hello.ok()) {
    std::string tail = console.tail(20);
    m.stop();
    std::fprintf(stderr, "spore-vm: %s\n", hello.error().message.c_str());
    if (!tail.empty() && !o.console) std::fprintf(stderr, "spore-vm: last guest console output:\n%s\n", tail.c_str());
    return hello.error().message.find("interrupted") != std::string::npos ? 130 : exit_code_for(hello.error());
  }

  proto::ExecRequest req;
  req.argv = o.command;
  req.env = o.env;
  req.cwd = o.workdir;
  req.user = o.user;
  req.timeout_ms = static_cast<uint32_t>(timeout_ms);
  agent::ExecIo io;
  io.signal_fd = sigfd.get();
  if (o.interactive) io.stdin_fd = STDIN_FILENO;
  std::unique_ptr<agent::RawTerminal> raw;
  if (o.tty) {
    req.flags |= proto::kExecTty;
    io.tty_fd = STDIN_FILENO;
    if (auto sz = agent::terminal_size(STDIN_FILENO)) {
      req.rows = sz->first;
      req.cols = sz->second;
    }
    if (o.interactive && ::isatty(STDIN_FILENO)) raw = std::make_unique<agent::RawTerminal>(STDIN_FILENO);
  }
  auto outcome = vmm::exec_in_guest(m, req, io);
  raw.reset();
  int64_t t_exit = mono_ns();
  std::string tail = console.tail(20);
  m.stop();

  if (o.timings) {
    auto ms = [](int64_t a, int64_t b) { return (b - a) / 1e6; };
    std::fprintf(stderr,
                 "spore-vm: timings: vm_created_ms=%.1f agent_ready_ms=%.1f first_output_ms=%.1f exit_ms=%.1f\n",
                 ms(g_start_ns, t_created), ms(g_start_ns, t_ready),
                 outcome.ok() && outcome->first_output_ns ? ms(g_start_ns, outcome->first_output_ns) : -1.0,
                 ms(g_start_ns, t_exit));
  }
  if (!outcome.ok()) {
    std::fprintf(stderr, "spore-vm: %s\n", outcome.error().message.c_str());
    if (!tail.empty() && !o.console) std::fprintf(stderr, "spore-vm: last guest console output:\n%s\n", tail.c_str());
    return exit_code_for(outcome.error());
  }
  if (outcome->refused) {
    const auto& r = *outcome->refused;
    std::fprintf(stderr, "spore-vm: %s\n", r.message.c_str());
    switch (r.code) {
      case proto::ErrorCode::kNotFound: return kExitNotFound;
      case proto::ErrorCode::kNotExecutable:
      case proto::ErrorCode::kStartFailed: return kExitCannotRun;
      default: return kExitProtocol;
    }
  }
  const auto& e = *outcome->exit;
  if (e.reason == proto::ExitReason::kTimedOut) {
    std::fprintf(stderr, "spore-vm: command timed out after %s\n", o.timeout.c_str());
    return kExitTimeout;
  }
  return e.status;
}

}  // namespace
}  // namespace spore

int main(int argc, char** argv) {
  using namespace spore;
  CLI::App app{"spore-vm: boot a microVM on KVM and run a command in it (developer tool)", "spore-vm"};
  app.set_version_flag("--version", std::string("spore-vm ") + SPORE_VERSION);
  app.require_subcommand(1);

  RunOptions ro;
  auto* run_cmd = app.add_subcommand("run", "Cold-boot a guest and run CMD in it; exits with CMD's status");
  run_cmd->add_option("--kernel", ro.kernel, "arm64 kernel Image (default: the project's build)");
  run_cmd->add_option("--initrd", ro.initrd, "agent initramfs (default: the project's build)");
  run_cmd->add_option("--rootfs", ro.rootfs, "root filesystem image, mounted read-only (default: the demo rootfs)");
  run_cmd->add_flag("--no-rootfs", ro.no_rootfs, "run from the initramfs only");
  run_cmd->add_option("--mem", ro.mem_mib, "guest RAM in MiB")->default_val(256)->check(CLI::Range(1ull, 1ull << 40));
  run_cmd->add_option("--cpus", ro.cpus, "vCPUs")->default_val(1)->check(CLI::Range(1u, 1024u));
  run_cmd->add_option("-e,--env", ro.env, "set KEY=VALUE in the command's environment");
  run_cmd->add_option("-w,--workdir", ro.workdir, "working directory in the guest (default /)");
  run_cmd->add_option("-u,--user", ro.user, "user[:group] to run as (default root)");
  run_cmd->add_flag("-i,--interactive", ro.interactive, "forward stdin to the command");
  run_cmd->add_flag("-t,--tty", ro.tty, "run the command on a pseudo-terminal");
  run_cmd->add_option("--timeout", ro.timeout, "kill the command after DURATION (exit 124), e.g. 30s");
  run_cmd->add_option("--boot-timeout", ro.boot_timeout, "give up if the guest is not ready after DURATION");
  run_cmd->add_flag("--read-only", ro.read_only, "read-only root (writable tmpfs on /tmp, /run, /dev/shm only)");
  run_cmd->add_flag("--console", ro.console, "show the guest's kernel console on stderr");
  run_cmd->add_flag("--timings", ro.timings, "print boot and exec timings on stderr");
  run_cmd->add_option("--append", ro.cmdline_extra, "extra kernel command-line parameters");
  run_cmd->add_option("command", ro.command, "command and arguments (after --)")->take_all();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }
  if (*run_cmd) return run(ro);
  return kExitUsage;
}
