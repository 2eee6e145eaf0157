#include "bench/vms.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>
// After sys/socket.h: it needs sockaddr.
#include <linux/vm_sockets.h>

#include <cctype>
#include <cstring>
#include <memory>
#include <optional>

#include "agent/client.h"
#include "base/strings.h"
#include "vmm/arch/aarch64/cpu.h"
#include "vmm/arch/aarch64/gic.h"
#include "vmm/arch/aarch64/layout.h"
#include "vmm/kvm/kvm.h"

namespace spore::bench {

// ------------------------------------------------------------ floor (KVM)

namespace {

// The least any VMM pays to get guest code running: a VM with one 256 MiB
// memslot and one initialised vCPU that runs three instructions to an MMIO
// exit; optionally with the in-kernel vGICv3 every real guest needs. Built
// with the same wrappers and board constants as the VMM itself.
struct FloorVm {
  std::optional<vmm::kvm::Kvm> kvm;
  std::optional<vmm::kvm::Vm> vm;
  Mapping ram;
  vmm::kvm::Vcpu vcpu;
  std::optional<vmm::aarch64::Gic> gic;
};

Status floor_build_and_run(FloorVm& f, bool with_gic) {
  using namespace vmm;
  SPORE_ASSIGN_OR_RETURN(f.kvm, kvm::Kvm::open());
  // The VM type Machine uses, so the stage-2 page tables are the same depth.
  int ipa = f.kvm->check_extension(KVM_CAP_ARM_VM_IPA_SIZE);
  unsigned long type = ipa >= static_cast<int>(aarch64::kIpaBits) ? KVM_VM_TYPE_ARM_IPA_SIZE(aarch64::kIpaBits) : 0;
  SPORE_ASSIGN_OR_RETURN(f.vm, kvm::Vm::create(*f.kvm, type));
  SPORE_ASSIGN_OR_RETURN(f.ram, Mapping::anonymous(256ull << 20));
  // mov x1, #0x09000000 (the UART's page: no memslot, so an MMIO exit);
  // str w1, [x1]; b .
  const uint32_t code[] = {0xd2a12001, 0xb9000021, 0x14000000};
  std::memcpy(f.ram.data(), code, sizeof code);
  SPORE_TRY(f.vm->set_memory_region(0, aarch64::kRamBase, f.ram.size(), f.ram.data()));
  SPORE_ASSIGN_OR_RETURN(size_t run_size, f.kvm->vcpu_mmap_size());
  SPORE_ASSIGN_OR_RETURN(aarch64::CpuTemplate tmpl, aarch64::preferred_cpu(*f.vm));
  SPORE_ASSIGN_OR_RETURN(f.vcpu, kvm::Vcpu::create(*f.vm, 0, run_size));
  SPORE_TRY(aarch64::init_vcpu(f.vcpu, tmpl, true));
  if (with_gic) {
    SPORE_ASSIGN_OR_RETURN(f.gic, aarch64::Gic::create(*f.vm, 1));
  }
  uint64_t pc = aarch64::kRamBase;
  SPORE_TRY(f.vcpu.set_one_reg(aarch64::pc_reg_id(), &pc));
  SPORE_TRY(f.vcpu.run());
  const kvm_run* run = f.vcpu.run_state();
  if (run->exit_reason != KVM_EXIT_MMIO || !run->mmio.is_write || run->mmio.phys_addr != aarch64::kUartBase)
    return make_error(ErrorKind::kInternal,
                      strfmt("floor guest: expected an MMIO write to 0x%llx, got exit reason %u",
                             static_cast<unsigned long long>(aarch64::kUartBase), run->exit_reason));
  return ok_status();
}

}  // namespace

void run_floor(uint32_t round, bool with_gic, Report& report) {
  const char* kind = with_gic ? "floor_gic" : "floor";
  int64_t t0 = mono_ns();
  auto f = std::make_unique<FloorVm>();
  Status s = floor_build_and_run(*f, with_gic);
  int64_t t1 = mono_ns();
  f.reset();
  int64_t t2 = mono_ns();
  if (!s.ok()) return report.failure(kind, round, s.error().message);
  report.record(kind, round, {{"exit_ms", ms_between(t0, t1)}, {"teardown_ms", ms_between(t1, t2)}});
}

// ----------------------------------------------------------------- spore-vm

std::map<std::string, double> parse_timings(const std::string& err) {
  std::map<std::string, double> t;
  const std::string marker = "spore-vm: timings:";
  for (size_t at = err.find(marker); at != std::string::npos; at = err.find(marker, at + marker.size())) {
    std::string line = err.substr(at, err.find('\n', at) - at);
    for (const auto& tok : split(line, ' ')) {
      auto eq = tok.find('=');
      if (eq == std::string::npos) continue;
      t[tok.substr(0, eq)] = std::strtod(tok.c_str() + eq + 1, nullptr);
    }
  }
  return t;
}

std::map<std::string, double> parse_exec_log(const std::string& err) {
  std::map<std::string, double> t;
  auto number_after = [&err](const std::string& text) -> std::optional<double> {
    size_t at = err.find(text);
    if (at == std::string::npos) return std::nullopt;
    return std::strtod(err.c_str() + at + text.size(), nullptr);
  };
  if (auto v = number_after("vsock connect to the agent took ")) t["connect_ms"] = *v;
  if (auto v = number_after("agent started the command at ")) t["agent_started_ms"] = *v;
  return t;
}

Result<SporeVmRun> run_spore_vm_args(const Options& o, const std::vector<std::string>& args, bool need_output) {
  std::vector<std::string> argv{o.spore_vm};
  argv.insert(argv.end(), args.begin(), args.end());
  SPORE_ASSIGN_OR_RETURN(Timed t, run_timed(argv, o.spore_vm_env, o.timeout_s));
  if (t.status != 0 || (need_output && !t.t_first))
    return make_error(ErrorKind::kGuest,
                      strfmt("spore-vm %s exited %d%s; %s%s", args.empty() ? "" : args[0].c_str(), t.status,
                             t.t_first || !need_output ? "" : " without output",
                             t.err.empty() ? "it printed nothing on stderr" : "its stderr ends:\n",
                             last_lines(t.err, 15).c_str()));
  SporeVmRun run;
  run.t_fork = t.t_fork;
  run.t_first_stdout = t.t_first;
  run.t_exit = t.t_exit;
  run.out = std::move(t.out);
  run.err = std::move(t.err);
  run.usage = t.usage;
  return run;
}

Result<SporeVmRun> run_spore_vm(const Options& o, const std::vector<std::string>& extra,
                                const std::vector<std::string>& command) {
  std::vector<std::string> args{"run"};
  args.insert(args.end(), extra.begin(), extra.end());
  args.insert(args.end(), {"--kernel", o.assets + "/Image", "--initrd", o.assets + "/initramfs.cpio", "--rootfs",
                           o.assets + "/demo-rootfs.img", "--"});
  args.insert(args.end(), command.begin(), command.end());
  return run_spore_vm_args(o, args, true);
}

// The kernel command line spore-vm gives a cold-booted guest, read back from
// the guest's /proc/cmdline (the kernel adds nothing: CONFIG_CMDLINE is
// empty). The peer boots with exactly this, so both guests do the same work
// without this file having to track spore-vm's defaults.
Result<std::string> spore_vm_cmdline(const Options& o) {
  auto run = run_spore_vm(o, {}, {"cat", "/proc/cmdline"});
  if (!run.ok()) return std::move(run).error().wrap("reading spore-vm's guest command line");
  std::string c = run->out;
  while (!c.empty() && (c.back() == '\n' || c.back() == ' ')) c.pop_back();
  if (c.empty()) return make_error(ErrorKind::kGuest, "spore-vm's guest has an empty /proc/cmdline");
  return c;
}

// One `spore-vm run --timings -- CMD`. Besides what spore-vm reports about
// itself (from its own start), times from the fork to the first byte on its
// stdout and to its exit, as a user would see them.
Status spore_once(const Options& o, uint32_t round, Report& report) {
  SPORE_ASSIGN_OR_RETURN(SporeVmRun run, run_spore_vm(o, {"--timings"}, o.command));
  auto t = parse_timings(run.err);
  for (const char* key : {"vm_created_ms", "agent_ready_ms", "first_output_ms"})
    if (!t.count(key) || t[key] < 0)
      return make_error(ErrorKind::kProtocol, std::string("spore-vm --timings printed no ") + key);

  // spore-vm counts from its own start; the fork and exec before that (and
  // the pipe hop after) show as the difference between its first output and
  // the first byte seen here.
  const double first = ms_between(run.t_fork, run.t_first_stdout);
  const double offset = first - t["first_output_ms"];
  std::vector<std::pair<std::string, double>> fields = {
      {"ready_ms", offset + t["agent_ready_ms"]},
      {"first_output_ms", first},
      {"exit_ms", ms_between(run.t_fork, run.t_exit)},
      {"self_vm_created_ms", t["vm_created_ms"]},
      {"self_ready_ms", t["agent_ready_ms"]},
      {"self_first_output_ms", t["first_output_ms"]},
      {"vcpu_to_ready_ms", t["agent_ready_ms"] - t["vm_created_ms"]},
      {"exec_offset_ms", offset}};
  // With SPORE_LOG=info (o.spore_vm_env), the exec session's own phases.
  auto log = parse_exec_log(run.err);
  for (const auto& [name, value] : log) fields.push_back({name, value});
  if (!log.empty()) fields.push_back({"ready_to_output_ms", t["first_output_ms"] - t["agent_ready_ms"]});
  fields.push_back({"minflt", static_cast<double>(run.usage.ru_minflt)});
  report.record("spore", round, fields, run.out);
  return ok_status();
}

// ------------------------------------------------------------ the QEMU peer

Result<UniqueFd> vsock_listen(uint32_t port) {
  UniqueFd fd(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd)
    return errno_error("socket(AF_VSOCK) (the peer needs the vsock and vhost_vsock modules loaded)");
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = port;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
    return errno_error(strfmt("bind vsock port %u", port));
  if (::listen(fd.get(), 4) < 0) return errno_error("listen(AF_VSOCK)");
  return fd;
}

Result<UniqueFd> vsock_connect(uint32_t cid, uint32_t port) {
  UniqueFd fd(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("socket(AF_VSOCK)");
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = cid;
  addr.svm_port = port;
  int r;
  do {
    r = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return errno_error(strfmt("connect to vsock %u:%u", cid, port));
  return fd;
}

namespace {

// An fd that turns readable when the child exits or the deadline passes: the
// one cancel_fd agent::run_exec watches.
Result<UniqueFd> exit_or_deadline(int pidfd, int64_t deadline_ns) {
  UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep) return errno_error("epoll_create1");
  UniqueFd timer(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC));
  if (!timer) return errno_error("timerfd_create");
  itimerspec its{};
  its.it_value.tv_sec = deadline_ns / 1'000'000'000;
  its.it_value.tv_nsec = deadline_ns % 1'000'000'000;
  if (::timerfd_settime(timer.get(), TFD_TIMER_ABSTIME, &its, nullptr) < 0) return errno_error("timerfd_settime");
  for (int fd : {pidfd, timer.get()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return errno_error("epoll_ctl");
  }
  // The epoll set keeps its own reference to the timer's file.
  return ep;
}

}  // namespace

std::vector<std::string> qemu_argv(const Options& o, uint64_t mem_mib) {
  std::vector<std::string> argv;
  if (o.qemu_peer.empty()) {
    argv.push_back("qemu-system-aarch64");
  } else {
    // Debian's dynamic binary, run through its own loader and libraries:
    // the testbed has no libc.
    argv = {o.qemu_peer + "/lib/ld-linux-aarch64.so.1", "--library-path", o.qemu_peer + "/lib",
            o.qemu_peer + "/bin/qemu-system-aarch64"};
  }
  // The guest spore-vm builds: 1 vCPU, 256 MiB, GICv3, the same kernel,
  // initramfs and command line (see spore_vm_cmdline), the rootfs read-only on virtio-blk, vsock at
  // CID 3, an entropy device; its console discarded.
  const std::vector<std::string> args = {
      "-M", "virt,gic-version=3", "-accel", "kvm", "-cpu", "host", "-m", std::to_string(mem_mib), "-smp", "1",
      "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
      "-kernel", o.assets + "/Image", "-initrd", o.assets + "/initramfs.cpio", "-append", o.qemu_cmdline,
      "-drive", "file=" + o.assets + "/demo-rootfs.img,format=raw,if=none,id=d0,readonly=on",
      "-device", "virtio-blk-device,drive=d0",
      "-device", strfmt("vhost-vsock-device,guest-cid=%llu", static_cast<unsigned long long>(vmm::aarch64::kGuestCid)),
      "-device", "virtio-rng-device",
      "-serial", o.qemu_console.empty() ? "null" : "file:" + o.qemu_console};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

Result<proto::Hello> wait_for_hello(int listener, const Child& child, int64_t deadline) {
  // Agent ready: the guest connects to the host's port 1025 and says HELLO.
  UniqueFd conn;
  while (!conn) {
    pollfd fds[2] = {{listener, POLLIN, 0}, {child.pidfd(), POLLIN, 0}};
    int r = ::poll(fds, 2, remaining_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno_error("poll");
    if (r == 0) return make_error(ErrorKind::kTimeout, "the agent did not say HELLO in time");
    if (fds[1].revents) return make_error(ErrorKind::kGuest, "exited before the agent was ready");
    sockaddr_vm peer{};
    socklen_t len = sizeof peer;
    UniqueFd c(::accept4(listener, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC));
    if (c && peer.svm_cid == vmm::aarch64::kGuestCid) conn = std::move(c);
  }
  return agent::read_hello(conn.get(), remaining_ms(deadline));
}

Result<AgentExec> exec_via_vsock(const Options& o, int pidfd, int64_t deadline, bool restored) {
  constexpr int kMaxSessions = 10;
  AgentExec ex;
  auto exited = [pidfd](int wait_ms) {
    pollfd p{pidfd, POLLIN, 0};
    return ::poll(&p, 1, wait_ms) > 0;
  };
  for (;;) {
    ex.connect_attempts++;
    auto sock = vsock_connect(static_cast<uint32_t>(vmm::aarch64::kGuestCid), proto::kAgentPort);
    if (!sock.ok()) {
      if (!restored || remaining_ms(deadline) == 0) return std::move(sock).error();
      if (exited(1)) return make_error(ErrorKind::kGuest, "exited before the agent answered");
      continue;
    }
    ex.t_connected = mono_ns();
    ex.sessions++;

    SPORE_ASSIGN_OR_RETURN(UniqueFd cancel, exit_or_deadline(pidfd, deadline));
    SPORE_ASSIGN_OR_RETURN(UniqueFd out, memfd("cmd-stdout"));
    SPORE_ASSIGN_OR_RETURN(UniqueFd err, memfd("cmd-stderr"));
    proto::ExecRequest req;
    req.argv = o.command;
    agent::ExecIo io;
    io.stdout_fd = out.get();
    io.stderr_fd = err.get();
    io.cancel_fd = cancel.get();
    auto outcome = agent::run_exec(sock->get(), req, io);
    if (!outcome.ok()) {
      if (!restored || ex.sessions >= kMaxSessions || remaining_ms(deadline) == 0 || exited(0))
        return std::move(outcome).error().wrap(strfmt("session %d", ex.sessions));
      continue;
    }
    if (outcome->refused) return make_error(ErrorKind::kGuest, "agent refused: " + outcome->refused->message);
    if (outcome->exit->status != 0 || !outcome->first_output_ns)
      return make_error(ErrorKind::kGuest, strfmt("the command exited %u%s: %s", outcome->exit->status,
                                                  outcome->first_output_ns ? "" : " without output",
                                                  read_back(err.get()).c_str()));
    ex.first_output_ns = outcome->first_output_ns;
    ex.out = read_back(out.get(), 256);
    return ex;
  }
}

// ------------------------------------------------------------------- HMP

Result<Hmp> Hmp::connect(const std::string& path, const Child& qemu, int64_t deadline) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return make_error(ErrorKind::kUsage, "monitor socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  for (;;) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return errno_error("socket(AF_UNIX)");
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      Hmp h;
      h.fd_ = std::move(fd);
      SPORE_TRY(h.read_prompt(deadline));  // the banner
      return h;
    }
    if (errno != ENOENT && errno != ECONNREFUSED) return errno_error("connect to the monitor at " + path);
    if (remaining_ms(deadline) == 0) return make_error(ErrorKind::kTimeout, "the monitor did not come up in time");
    pollfd p{qemu.pidfd(), POLLIN, 0};
    if (::poll(&p, 1, 1) > 0) return make_error(ErrorKind::kGuest, "exited before its monitor came up");
  }
}

Result<std::string> Hmp::read_prompt(int64_t deadline) {
  static const std::string kPrompt = "(qemu) ";
  std::string raw;
  char buf[4096];
  while (raw.size() < kPrompt.size() || raw.compare(raw.size() - kPrompt.size(), kPrompt.size(), kPrompt) != 0) {
    pollfd p{fd_.get(), POLLIN, 0};
    int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno_error("poll on the monitor");
    if (r == 0) return make_error(ErrorKind::kTimeout, "the monitor did not answer in time");
    ssize_t n = ::read(fd_.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return make_error(ErrorKind::kGuest, "the monitor closed its connection");
    raw.append(buf, static_cast<size_t>(n));
  }
  raw.resize(raw.size() - kPrompt.size());
  // The monitor echoes the command through its line editor: drop ESC [ ...
  // sequences and carriage returns.
  std::string text;
  for (size_t i = 0; i < raw.size(); i++) {
    if (raw[i] == '\x1b' && i + 1 < raw.size() && raw[i + 1] == '[') {
      i += 2;
      while (i < raw.size() && !std::isalpha(static_cast<unsigned char>(raw[i]))) i++;
      continue;
    }
    if (raw[i] != '\r') text.push_back(raw[i]);
  }
  return text;
}

Result<std::string> Hmp::command(const std::string& cmd, int64_t deadline) {
  std::string line = cmd + "\n";
  SPORE_TRY(write_all(fd_.get(), line.data(), line.size()));
  SPORE_ASSIGN_OR_RETURN(std::string answer, read_prompt(deadline));
  // The first line is the echoed command.
  size_t nl = answer.find('\n');
  return nl == std::string::npos ? std::string() : answer.substr(nl + 1);
}

}  // namespace spore::bench
