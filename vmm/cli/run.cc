// spore-vm run: cold-boot a guest, run a command, optionally seal a spore.
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>

#include "base/exit_codes.h"
#include "base/strings.h"
#include "vmm/cli/commands.h"
#include "vmm/seccomp_policy.h"
#include "vmm/spore/capture.h"

namespace spore::cli {
namespace {

// SIGUSR1, read from its own signalfd: the "capture now" request.
UniqueFd capture_signal() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGUSR1);
  sigprocmask(SIG_BLOCK, &s, nullptr);
  return UniqueFd(::signalfd(-1, &s, SFD_CLOEXEC | SFD_NONBLOCK));
}

int do_capture(vmm::Machine& m, const RunOptions& o) {
  auto cache = vmm::Cache::open();
  if (!cache.ok()) return fail(cache.error());
  vmm::CaptureOptions co;
  co.dir = o.capture_dir;
  co.store_dir = o.store_dir;
  auto rep = vmm::capture_spore(m, co, *cache);
  if (!rep.ok()) return fail(rep.error().wrap("capture"));
  const auto& man = rep->spore.manifest;
  std::fprintf(stderr, "spore-vm: captured %s: %llu MiB RAM, %llu chunks, %.1f MiB stored, in %.0f ms\n",
               rep->spore.dir.c_str(), static_cast<unsigned long long>(man.machine.mem_mib),
               static_cast<unsigned long long>(man.memory.chunks), man.memory.stored_bytes / 1048576.0, rep->total_ms);
  if (o.exec.timings)
    std::fprintf(stderr, "spore-vm: timings: capture_pause_ms=%.1f capture_state_ms=%.1f capture_memory_ms=%.1f capture_total_ms=%.1f\n",
                 rep->pause_ms, rep->save_ms, rep->memory_ms, rep->total_ms);
  return 0;
}

}  // namespace

int cmd_run(const RunOptions& o) {
  const bool capture = !o.capture_dir.empty();
  if (o.exec.command.empty() && !capture)
    return fail(make_error(ErrorKind::kUsage, "no command given (spore-vm run -- CMD [ARGS...])"));
  if (o.capture_signal && !capture) return fail(make_error(ErrorKind::kUsage, "--capture-signal needs --capture DIR"));
  // Before booting anything: this backend may not capture at all.
  if (capture) {
    if (auto s = vmm::Machine::spores_supported(); !s.ok()) return fail(s.error());
  }
  auto req = make_request(o.exec);
  if (!req.ok()) return fail(req.error());
  auto bt = parse_duration_ms(o.boot_timeout);
  if (!bt || *bt == 0 || *bt > INT32_MAX)
    return fail(make_error(ErrorKind::kUsage, "--boot-timeout: expected a duration like 120s"));

  UniqueFd sigfd = forwarded_signals();
  UniqueFd capfd = o.capture_signal ? capture_signal() : UniqueFd();
  std::string assets = default_assets_dir();
  vmm::ConsoleLog console(o.exec.console);
  vmm::MachineConfig mc;
  mc.kernel = o.kernel.empty() ? assets + "/" + vmm::Machine::kernel_file_name() : o.kernel;
  mc.initrd = o.initrd.empty() ? assets + "/initramfs.cpio" : o.initrd;
  if (!o.no_rootfs) mc.rootfs = o.rootfs.empty() ? assets + "/demo-rootfs.img" : o.rootfs;
  mc.vcpus = o.cpus;
  mc.mem_mib = o.mem_mib;
  mc.cmdline = default_cmdline(o.exec.console, o.read_only, o.no_rootfs);
  if (!o.cmdline_extra.empty()) mc.cmdline += " " + o.cmdline_extra;
  mc.console = [&console](const char* d, size_t n) { console.write(d, n); };

  auto machine = vmm::Machine::create(mc);
  if (!machine.ok()) return fail(machine.error());
  vmm::Machine& m = **machine;
  auto ready = vmm::AgentReady::listen(m);
  if (!ready.ok()) return fail(ready.error());
  int64_t t_created = mono_ns();
  if (auto s = m.start(); !s.ok()) return fail(s.error());
  // The guest runs: from here this thread streams stdio, and with --capture
  // writes the spore afterwards (vmm/seccomp_policy.h).
  if (auto s = vmm::confine_this_thread(capture ? vmm::ThreadRole::kController : vmm::ThreadRole::kSession); !s.ok()) {
    m.stop();
    return fail(s.error());
  }

  auto hello = (*ready)->wait(static_cast<int>(*bt), sigfd.get());
  int64_t t_ready = mono_ns();
  if (!hello.ok()) {
    std::string tail = console.report_tail(20);
    m.stop();
    std::fprintf(stderr, "spore-vm: %s\n", hello.error().message.c_str());
    if (!o.exec.console) std::fputs(tail.c_str(), stderr);
    return exit_code_for(hello.error());
  }

  int status = 0;
  int64_t first_output = 0;
  bool cut_off = false;
  if (!o.exec.command.empty()) {
    ExecOptions eo = o.exec;
    status = run_command(m, *req, eo, sigfd.get(), console, &first_output, capfd.get(), &cut_off);
  }
  int64_t t_exit = mono_ns();
  if (o.exec.timings)
    std::fprintf(stderr, "spore-vm: timings: vm_created_ms=%.1f agent_ready_ms=%.1f first_output_ms=%.1f exit_ms=%.1f\n",
                 ms_since_start(t_created), ms_since_start(t_ready), ms_since_start(first_output),
                 ms_since_start(t_exit));
  if (capture && cut_off) {
    // Its agent did not end the command: a spore of it would not serve.
    std::fprintf(stderr, "spore-vm: not capturing: the guest did not end the command at its --timeout\n");
  } else if (capture && !m.exit_status()) {
    if (o.capture_signal && status != kStatusInterrupted) {
      std::fprintf(stderr, "spore-vm: waiting for SIGUSR1 to capture (pid %d)\n", ::getpid());
      pollfd p[2] = {{capfd.get(), POLLIN, 0}, {m.exit_fd(), POLLIN, 0}};
      while (::poll(p, 2, -1) < 0 && errno == EINTR) {
      }
    }
    int rc = do_capture(m, o);
    if (rc != 0) status = rc;
  }
  m.stop();
  return status == kStatusInterrupted ? 0 : status;
}

}  // namespace spore::cli
