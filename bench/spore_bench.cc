// spore-bench: the cold-boot benchmark behind doc/benchmarks.md, usually run
// by scripts/bench-boot.sh inside the testbed.
//
//   spore-bench floor [--runs N]          bare KVM: /dev/kvm open -> first guest exit
//   spore-bench cold  [--runs N] [-- CMD] spore-vm run --timings -- CMD, from fork
//   spore-bench qemu  [--runs N] [-- CMD] the peer: QEMU + KVM, same kernel, agent, rootfs
//   spore-bench boot  [--runs N] [-- CMD] all three, interleaved round by round
//
// Each sample becomes one raw line (`KIND round=R field_ms=V ...`, on stdout
// or appended to --raw FILE); the end is a table of medians, spread and
// ratios. All times are CLOCK_MONOTONIC milliseconds. This is a benchmark,
// not a test: it fails only when a run cannot be measured at all.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
// After sys/socket.h: it needs sockaddr.
#include <linux/vm_sockets.h>

#include <CLI/CLI.hpp>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/client.h"
#include "agent/protocol.h"
#include "base/fd.h"
#include "base/result.h"
#include "base/strings.h"
#include "bench/stats.h"
#include "vmm/arch/aarch64/cpu.h"
#include "vmm/arch/aarch64/gic.h"
#include "vmm/arch/aarch64/layout.h"
#include "vmm/kvm/kvm.h"

extern char** environ;

namespace spore::bench {
namespace {

int64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000ll + ts.tv_nsec;
}

double ms_between(int64_t from_ns, int64_t to_ns) { return static_cast<double>(to_ns - from_ns) / 1e6; }

// Milliseconds left until deadline_ns, for poll(); at least 0.
int remaining_ms(int64_t deadline_ns) {
  int64_t left = (deadline_ns - mono_ns()) / 1'000'000;
  return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : static_cast<int>(left);
}

std::string exe_dir() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string exe(buf, static_cast<size_t>(n));
  return exe.substr(0, exe.rfind('/'));
}

struct Options {
  uint32_t runs = 10;
  uint32_t warmup = 1;      // discarded rounds first: the first VM of a host run is atypical
  uint32_t floor_reps = 3;  // floor samples per variant and round
  int timeout_s = 180;      // per boot
  std::string spore_vm;     // default: next to this binary
  std::string qemu_peer;    // scripts/fetch-qemu-peer.sh's directory; empty: qemu-system-aarch64 on PATH
  std::string qemu_console; // file for the peer's guest console (debugging); default: discarded
  std::string qemu_cmdline; // the peer's kernel command line; default: the one spore-vm gives its guest
  std::string assets;       // Image, initramfs.cpio, demo-rootfs.img
  std::string raw;          // raw samples go here (appended) instead of stdout
  std::vector<std::string> command{"echo", "x"};
};

// ---------------------------------------------------------------- reporting

// "..." with C escapes for anything but printable ASCII, so a raw line stays one line.
std::string quote(const std::string& s) {
  std::string q = "\"";
  for (unsigned char c : s) {
    if (c == '\n') q += "\\n";
    else if (c == '"' || c == '\\') q += std::string("\\") + static_cast<char>(c);
    else if (c < 0x20 || c >= 0x7f) q += strfmt("\\x%02x", c);
    else q += static_cast<char>(c);
  }
  return q + "\"";
}

class Report {
 public:
  explicit Report(FILE* raw) : raw_(raw) {}

  // One raw line; round 0 is a warm-up round: printed, not summarised.
  // output: what the guest command printed (kept short, for checking it and
  // for commands like `cat /proc/uptime` whose output is itself a figure).
  void record(const std::string& kind, uint32_t round, const std::vector<std::pair<std::string, double>>& fields,
              const std::string& output = {}) {
    std::string line = kind + strfmt(" round=%u", round);
    for (const auto& [name, value] : fields) {
      line += strfmt(" %s=%.3f", name.c_str(), value);
      if (round > 0) series_[kind + "." + name].add(round, value);
    }
    if (!output.empty()) line += " output=" + quote(output.substr(0, 80));
    std::fprintf(raw_, "%s\n", line.c_str());
    std::fflush(raw_);
  }
  void failure(const std::string& kind, uint32_t round, const std::string& why) {
    std::fprintf(raw_, "%s round=%u failed=%s\n", kind.c_str(), round, quote(why).c_str());
    std::fflush(raw_);
    failures_++;
  }
  int failures() const { return failures_; }

  const Series* find(const std::string& id) const {
    auto it = series_.find(id);
    return it == series_.end() ? nullptr : &it->second;
  }
  std::optional<double> median(const std::string& id) const {
    const Series* s = find(id);
    if (!s) return std::nullopt;
    auto sum = s->summary();
    if (!sum) return std::nullopt;
    return sum->median;
  }

  void print_table(FILE* out) const;

 private:
  FILE* raw_;
  std::map<std::string, Series> series_;
  int failures_ = 0;
};

std::string fmt_ms(double v) { return v < 100 ? strfmt("%.2f", v) : strfmt("%.0f", v); }

void Report::print_table(FILE* out) const {
  struct Row {
    const char* id;
    const char* label;
  };
  static const Row kRows[] = {
      {"floor.exit_ms", "floor: open /dev/kvm -> first exit"},
      {"floor_gic.exit_ms", "floor + vGICv3: open -> first exit"},
      {"floor.teardown_ms", "floor: teardown"},
      {"spore.ready_ms", "spore: fork -> agent ready *"},
      {"spore.first_output_ms", "spore: fork -> first output"},
      {"spore.exit_ms", "spore: fork -> exited"},
      {"spore.self_vm_created_ms", "spore --timings: start -> VM built"},
      {"spore.self_ready_ms", "spore --timings: start -> agent ready"},
      {"spore.self_first_output_ms", "spore --timings: start -> first output"},
      {"spore.vcpu_to_ready_ms", "spore: vCPU start -> agent ready"},
      {"spore.exec_offset_ms", "spore: fork -> process start *"},
      {"qemu.ready_ms", "qemu: fork -> agent ready (HELLO)"},
      {"qemu.first_output_ms", "qemu: fork -> first output"},
      {"qemu.guest_uptime_ms", "qemu: guest uptime at HELLO"},
      {"qemu.teardown_ms", "qemu: SIGKILL -> reaped"},
  };
  bool any = false;
  for (const auto& row : kRows) {
    const Series* s = find(row.id);
    if (!s) continue;
    auto sum = s->summary();
    if (!sum) continue;
    if (!any) std::fprintf(out, "%-42s %4s %9s %9s %9s\n", "figure (ms)", "n", "median", "p90", "min");
    any = true;
    std::fprintf(out, "%-42s %4zu %9s %9s %9s\n", row.label, sum->n, fmt_ms(sum->median).c_str(),
                 fmt_ms(sum->p90).c_str(), fmt_ms(sum->min).c_str());
  }
  if (!any) std::fprintf(out, "no samples\n");
  if (find("spore.ready_ms"))
    std::fprintf(out, "* derived: spore-vm's own times plus (fork -> first output) - (its start -> first output)\n");

  struct Ratio {
    const char* label;
    const char* num;
    const char* den;
    bool paired;
  };
  static const Ratio kRatios[] = {
      {"agent ready:  spore / qemu", "spore.ready_ms", "qemu.ready_ms", true},
      {"first output: spore / qemu", "spore.first_output_ms", "qemu.first_output_ms", true},
      {"agent ready:  spore / floor", "spore.ready_ms", "floor.exit_ms", false},
      {"first output: spore / floor", "spore.first_output_ms", "floor.exit_ms", false},
      {"agent ready:  qemu / floor", "qemu.ready_ms", "floor.exit_ms", false},
      {"first output: qemu / floor", "qemu.first_output_ms", "floor.exit_ms", false},
  };
  bool header = false;
  for (const auto& r : kRatios) {
    auto num = median(r.num), den = median(r.den);
    if (!num || !den || *den <= 0) continue;
    if (!header) {
      std::fprintf(out, "\nratios of medians (paired: median of the per-round ratios)\n");
      header = true;
    }
    std::string line = strfmt("  %-30s %9.3f", r.label, *num / *den);
    if (r.paired) {
      if (auto p = find(r.num)->paired_ratio(*find(r.den))) line += strfmt("   paired %.3f", *p);
    }
    std::fprintf(out, "%s\n", line.c_str());
  }
}

// ------------------------------------------------------------ floor (KVM)

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

// ---------------------------------------------------------- child processes

// A spawned process, killed and reaped on destruction unless already reaped.
// Its pidfd turns readable when it exits, so it can sit in a poll set.
class Child {
 public:
  // stdio: the fds the child gets as 0, 1 and 2.
  static Result<Child> spawn(const std::vector<std::string>& argv, int in, int out, int err) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in, 0);
    posix_spawn_file_actions_adddup2(&fa, out, 1);
    posix_spawn_file_actions_adddup2(&fa, err, 2);
    Child c;
    int rc = ::posix_spawnp(&c.pid_, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return errno_error("cannot run " + argv[0], rc);
    c.pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, c.pid_, 0)));
    if (!c.pidfd_) return errno_error("pidfd_open");
    return c;
  }

  Child() = default;
  Child(Child&& o) noexcept : pid_(std::exchange(o.pid_, -1)), pidfd_(std::move(o.pidfd_)) {}
  Child& operator=(Child&&) = delete;
  ~Child() { kill_and_reap(); }

  int pidfd() const { return pidfd_.get(); }

  // Exit status (128+signal for a signal death), or an error after timeout_ms.
  Result<int> wait(int timeout_ms) {
    pollfd p{pidfd_.get(), POLLIN, 0};
    int r;
    do {
      r = ::poll(&p, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r == 0) return make_error(ErrorKind::kTimeout, "timed out");
    return reap();
  }
  void kill_and_reap() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    (void)reap();
  }

 private:
  Result<int> reap() {
    int st = 0;
    pid_t r;
    do {
      r = ::waitpid(pid_, &st, 0);
    } while (r < 0 && errno == EINTR);
    pid_ = -1;
    if (r < 0) return errno_error("waitpid");
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }

  pid_t pid_ = -1;
  UniqueFd pidfd_;
};

struct Pipe {
  UniqueFd r, w;
  static Result<Pipe> create() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) < 0) return errno_error("pipe");
    return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
  }
};

// An in-memory file for a child's output: it never blocks the writer (a pipe
// nobody drains would), and it can be read back after the fact.
Result<UniqueFd> memfd(const char* name) {
  UniqueFd fd(::memfd_create(name, MFD_CLOEXEC));
  if (!fd) return errno_error("memfd_create");
  return fd;
}

std::string read_back(int fd, size_t max_bytes = 64 << 10) {
  auto size = file_size(fd);
  if (!size.ok()) return {};
  uint64_t from = *size > max_bytes ? *size - max_bytes : 0;
  std::string s(*size - from, '\0');
  if (!s.empty() && !pread_exact(fd, s.data(), s.size(), from).ok()) return {};
  return s;
}

std::string last_lines(const std::string& s, size_t n) {
  size_t pos = s.size();
  while (n-- > 0 && pos > 0) {
    size_t nl = s.rfind('\n', pos - 1);
    if (nl == std::string::npos) return s;
    if (nl + 1 == s.size()) n++;  // a trailing newline does not end a line of its own
    pos = nl;
  }
  return s.substr(pos == s.size() ? pos : pos + 1);
}

// ------------------------------------------------------------ spore cold boot

// "spore-vm: timings: vm_created_ms=1.0 agent_ready_ms=2.0 ..." -> {key: value}
std::map<std::string, double> parse_timings(const std::string& err) {
  std::map<std::string, double> t;
  size_t at = err.find("spore-vm: timings:");
  if (at == std::string::npos) return t;
  std::string line = err.substr(at, err.find('\n', at) - at);
  for (const auto& tok : split(line, ' ')) {
    auto eq = tok.find('=');
    if (eq == std::string::npos) continue;
    t[tok.substr(0, eq)] = std::strtod(tok.c_str() + eq + 1, nullptr);
  }
  return t;
}

// A finished `spore-vm run`: what it printed, and when, from the fork.
struct SporeVmRun {
  int64_t t_fork = 0, t_first_stdout = 0, t_exit = 0;
  std::string out, err;
};

// Runs `spore-vm run EXTRA... -- CMD...` on the benchmark's assets, from
// fork to reaped, and requires exit status 0 and some output.
Result<SporeVmRun> run_spore_vm(const Options& o, const std::vector<std::string>& extra,
                                const std::vector<std::string>& command) {
  std::vector<std::string> argv{o.spore_vm, "run"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.insert(argv.end(), {"--kernel", o.assets + "/Image", "--initrd", o.assets + "/initramfs.cpio", "--rootfs",
                           o.assets + "/demo-rootfs.img", "--"});
  argv.insert(argv.end(), command.begin(), command.end());
  SPORE_ASSIGN_OR_RETURN(UniqueFd devnull, open_file("/dev/null", O_RDONLY));
  SPORE_ASSIGN_OR_RETURN(Pipe out, Pipe::create());
  SPORE_ASSIGN_OR_RETURN(Pipe err, Pipe::create());

  SporeVmRun run;
  run.t_fork = mono_ns();
  const int64_t deadline = run.t_fork + o.timeout_s * 1'000'000'000ll;
  SPORE_ASSIGN_OR_RETURN(Child child, Child::spawn(argv, devnull.get(), out.w.get(), err.w.get()));
  out.w.reset();
  err.w.reset();

  char buf[4096];
  while (out.r || err.r) {
    pollfd fds[2] = {{out.r ? out.r.get() : -1, POLLIN, 0}, {err.r ? err.r.get() : -1, POLLIN, 0}};
    int r = ::poll(fds, 2, remaining_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno_error("poll");
    if (r == 0) return make_error(ErrorKind::kTimeout, strfmt("spore-vm did not finish within %d s", o.timeout_s));
    for (int i = 0; i < 2; i++) {
      if (!fds[i].revents) continue;
      UniqueFd& fd = i == 0 ? out.r : err.r;
      ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        fd.reset();
        continue;
      }
      if (i == 0 && !run.t_first_stdout) run.t_first_stdout = mono_ns();
      (i == 0 ? run.out : run.err).append(buf, static_cast<size_t>(n));
    }
  }
  SPORE_ASSIGN_OR_RETURN(int status, child.wait(remaining_ms(deadline)));
  run.t_exit = mono_ns();
  if (status != 0 || !run.t_first_stdout)
    return make_error(ErrorKind::kGuest,
                      strfmt("spore-vm exited %d%s; %s%s", status, run.t_first_stdout ? "" : " without output",
                             run.err.empty() ? "it printed nothing on stderr" : "its stderr ends:\n",
                             last_lines(run.err, 15).c_str()));
  return run;
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
  report.record("spore", round,
                {{"ready_ms", offset + t["agent_ready_ms"]},
                 {"first_output_ms", first},
                 {"exit_ms", ms_between(run.t_fork, run.t_exit)},
                 {"self_vm_created_ms", t["vm_created_ms"]},
                 {"self_ready_ms", t["agent_ready_ms"]},
                 {"self_first_output_ms", t["first_output_ms"]},
                 {"vcpu_to_ready_ms", t["agent_ready_ms"] - t["vm_created_ms"]},
                 {"exec_offset_ms", offset}},
                run.out);
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

std::vector<std::string> qemu_argv(const Options& o) {
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
      "-M", "virt,gic-version=3", "-accel", "kvm", "-cpu", "host", "-m", "256", "-smp", "1",
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

// One cold boot of the peer. This process plays spore-vm's part: it listens
// for the agent's HELLO on the host side of vsock (vhost-vsock in the
// kernel), then runs CMD through the agent exactly as spore-vm does.
Status qemu_once(const Options& o, uint32_t round, Report& report) {
  SPORE_ASSIGN_OR_RETURN(UniqueFd listener, vsock_listen(proto::kReadyPort));
  SPORE_ASSIGN_OR_RETURN(UniqueFd devnull, open_file("/dev/null", O_RDONLY));
  SPORE_ASSIGN_OR_RETURN(UniqueFd log, memfd("qemu-log"));
  const auto argv = qemu_argv(o);

  const int64_t t0 = mono_ns();
  const int64_t deadline = t0 + o.timeout_s * 1'000'000'000ll;
  SPORE_ASSIGN_OR_RETURN(Child child, Child::spawn(argv, devnull.get(), log.get(), log.get()));
  auto with_log = [&](Error e) {
    child.kill_and_reap();
    std::string tail = last_lines(read_back(log.get()), 15);
    return std::move(e).wrap(tail.empty() ? "qemu" : "qemu (its output ends: " + tail + ")");
  };

  // Agent ready: the guest connects to the host's port 1025 and says HELLO.
  UniqueFd conn;
  while (!conn) {
    pollfd fds[2] = {{listener.get(), POLLIN, 0}, {child.pidfd(), POLLIN, 0}};
    int r = ::poll(fds, 2, remaining_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return with_log(errno_error("poll"));
    if (r == 0) return with_log(make_error(ErrorKind::kTimeout, "the agent did not say HELLO in time"));
    if (fds[1].revents) return with_log(make_error(ErrorKind::kGuest, "exited before the agent was ready"));
    sockaddr_vm peer{};
    socklen_t len = sizeof peer;
    UniqueFd c(::accept4(listener.get(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC));
    if (c && peer.svm_cid == vmm::aarch64::kGuestCid) conn = std::move(c);
  }
  auto hello = agent::read_hello(conn.get(), remaining_ms(deadline));
  if (!hello.ok()) return with_log(std::move(hello).error());
  const int64_t t_ready = mono_ns();

  // First output: one exec session, as spore-vm runs it.
  auto sock = vsock_connect(static_cast<uint32_t>(vmm::aarch64::kGuestCid), proto::kAgentPort);
  if (!sock.ok()) return with_log(std::move(sock).error());
  auto cancel = exit_or_deadline(child.pidfd(), deadline);
  if (!cancel.ok()) return with_log(std::move(cancel).error());
  SPORE_ASSIGN_OR_RETURN(UniqueFd out, memfd("cmd-stdout"));
  SPORE_ASSIGN_OR_RETURN(UniqueFd err, memfd("cmd-stderr"));
  proto::ExecRequest req;
  req.argv = o.command;
  agent::ExecIo io;
  io.stdout_fd = out.get();
  io.stderr_fd = err.get();
  io.cancel_fd = cancel->get();
  auto outcome = agent::run_exec(sock->get(), req, io);
  if (!outcome.ok()) return with_log(std::move(outcome).error());
  if (outcome->refused) return with_log(make_error(ErrorKind::kGuest, "agent refused: " + outcome->refused->message));
  if (outcome->exit->status != 0 || !outcome->first_output_ns)
    return with_log(make_error(ErrorKind::kGuest, strfmt("the command exited %u%s: %s", outcome->exit->status,
                                                         outcome->first_output_ns ? "" : " without output",
                                                         read_back(err.get()).c_str())));

  const int64_t t_kill = mono_ns();
  child.kill_and_reap();
  const int64_t t_gone = mono_ns();
  report.record("qemu", round,
                {{"ready_ms", ms_between(t0, t_ready)},
                 {"first_output_ms", ms_between(t0, outcome->first_output_ns)},
                 {"guest_uptime_ms", static_cast<double>(hello->uptime_ms)},
                 {"teardown_ms", ms_between(t_kill, t_gone)}},
                read_back(out.get(), 256));
  return ok_status();
}

// ------------------------------------------------------------------ modes

enum class Mode { kFloor, kCold, kQemu, kBoot };

void progress(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void progress(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fputs("spore-bench: ", stderr);
  std::vfprintf(stderr, fmt, ap);
  std::fputc('\n', stderr);
  va_end(ap);
}

void boot_run(const char* kind, Status (*once)(const Options&, uint32_t, Report&), const Options& o,
              uint32_t round, Report& report) {
  int64_t t0 = mono_ns();
  Status s = once(o, round, report);
  if (!s.ok()) {
    progress("round %u: %s failed: %s", round, kind, s.error().message.c_str());
    report.failure(kind, round, s.error().message);
    return;
  }
  progress("round %u%s: %s %.2f s", round, round ? "" : " (warm-up)", kind, ms_between(t0, mono_ns()) / 1000);
}

int run_mode(Mode mode, Options o) {
  ::signal(SIGPIPE, SIG_IGN);
  if (o.spore_vm.empty()) o.spore_vm = exe_dir() + "/spore-vm";
  if (o.assets.empty()) {
    const char* env = std::getenv("SPORE_ASSETS");
    o.assets = env && *env ? env : exe_dir() + "/../share/spore";
  }
  if (o.command.empty()) o.command = {"echo", "x"};

  FILE* raw = stdout;
  if (!o.raw.empty()) {
    raw = std::fopen(o.raw.c_str(), "ae");
    if (!raw) {
      std::fprintf(stderr, "spore-bench: %s: %s\n", o.raw.c_str(), std::strerror(errno));
      return 1;
    }
  }
  if ((mode == Mode::kQemu || mode == Mode::kBoot) && o.qemu_cmdline.empty()) {
    auto c = spore_vm_cmdline(o);
    if (!c.ok()) {
      std::fprintf(stderr, "spore-bench: %s\n(--qemu-cmdline sets the peer's command line instead)\n",
                   c.error().message.c_str());
      return 1;
    }
    o.qemu_cmdline = *c;
  }
  std::string cmd;
  for (const auto& a : o.command) cmd += (cmd.empty() ? "" : " ") + a;
  std::fprintf(raw, "# spore-bench: runs=%u warmup=%u floor_reps=%u command='%s' assets=%s qemu=%s\n", o.runs,
               o.warmup, o.floor_reps, cmd.c_str(), o.assets.c_str(),
               o.qemu_peer.empty() ? "qemu-system-aarch64" : o.qemu_peer.c_str());
  if (!o.qemu_cmdline.empty()) std::fprintf(raw, "# peer guest command line: %s\n", o.qemu_cmdline.c_str());
  Report report(raw);

  // Round 0 is the warm-up; the boots alternate which peer goes first, so
  // neither always runs right after the other (caches, the host's drift).
  const uint32_t first_round = o.warmup ? 0 : 1;
  for (uint32_t round = first_round; round <= o.runs; round++) {
    if (mode == Mode::kFloor || mode == Mode::kBoot) {
      uint32_t reps = mode == Mode::kFloor ? 1 : o.floor_reps;
      for (uint32_t i = 0; i < reps; i++) {
        run_floor(round, false, report);
        run_floor(round, true, report);
      }
    }
    bool spore_first = round % 2 == 0;
    for (int turn = 0; turn < 2; turn++) {
      bool spore_turn = (turn == 0) == spore_first;
      if (spore_turn && (mode == Mode::kCold || mode == Mode::kBoot))
        boot_run("spore", spore_once, o, round, report);
      if (!spore_turn && (mode == Mode::kQemu || mode == Mode::kBoot))
        boot_run("qemu", qemu_once, o, round, report);
    }
  }

  // The table goes to the terminal, and after the raw lines it sums up.
  std::fputc('\n', raw);
  report.print_table(raw);
  if (raw != stdout) {
    std::fclose(raw);
    report.print_table(stdout);
  }
  if (report.failures()) {
    std::fprintf(stderr, "spore-bench: %d run(s) failed (see the raw lines)\n", report.failures());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace spore::bench

int main(int argc, char** argv) {
  using namespace spore::bench;
  CLI::App app{"spore-bench: cold-boot benchmark of spore-vm against the bare KVM floor and QEMU", "spore-bench"};
  app.require_subcommand(1);
  Options o;
  auto add_common = [&o](CLI::App* c, bool boots) {
    c->add_option("--runs", o.runs, "measured rounds")->check(CLI::Range(1u, 10000u))->capture_default_str();
    c->add_option("--warmup", o.warmup, "discarded rounds first (0 or 1)")->check(CLI::Range(0u, 1u))->capture_default_str();
    c->add_option("--raw", o.raw, "append the raw samples to FILE instead of stdout");
    if (!boots) return;
    c->add_option("--spore-vm", o.spore_vm, "spore-vm binary (default: next to spore-bench)");
    c->add_option("--qemu-peer", o.qemu_peer, "staged QEMU (scripts/fetch-qemu-peer.sh); default: qemu-system-aarch64 on PATH");
    c->add_option("--qemu-console", o.qemu_console, "write the peer guest's console to FILE (debugging)");
    c->add_option("--qemu-cmdline", o.qemu_cmdline, "the peer's kernel command line (default: spore-vm's, read from its guest)");
    c->add_option("--assets", o.assets, "directory with Image, initramfs.cpio, demo-rootfs.img");
    c->add_option("--timeout", o.timeout_s, "seconds allowed per boot")->check(CLI::Range(1, 3600))->capture_default_str();
    c->add_option("command", o.command, "command to run in the guest (after --; default: echo x)")->take_all();
  };
  auto* floor = app.add_subcommand("floor", "bare KVM: /dev/kvm open -> VM, 256 MiB memslot, vCPU -> first exit");
  add_common(floor, false);
  auto* cold = app.add_subcommand("cold", "spore-vm run --timings -- CMD");
  add_common(cold, true);
  auto* qemu = app.add_subcommand("qemu", "QEMU with KVM booting the same guest to the same points");
  add_common(qemu, true);
  auto* boot = app.add_subcommand("boot", "floor, spore and qemu interleaved (scripts/bench-boot.sh)");
  add_common(boot, true);
  boot->add_option("--floor-reps", o.floor_reps, "floor samples per variant and round")
      ->check(CLI::Range(1u, 1000u))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  Mode mode = *floor ? Mode::kFloor : *cold ? Mode::kCold : *qemu ? Mode::kQemu : Mode::kBoot;
  return run_mode(mode, o);
}
