#include "base/seccomp.h"

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "base/exit_codes.h"
#include "base/log.h"
#include "base/strings.h"

namespace spore::seccomp {
namespace {

#if defined(__aarch64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#elif defined(__x86_64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#else
#error "seccomp: add this architecture's AUDIT_ARCH here"
#endif
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "argument words are read little-endian");

// Classic BPF jumps reach at most 255 instructions; the kernel takes at
// most BPF_MAXINSNS (4096) per program.
constexpr size_t kMaxJump = 255;
constexpr size_t kMaxProgram = BPF_MAXINSNS;
constexpr size_t kProgramNameMax = 64;
constexpr int kSysSeccomp = 1;  // si_code of a seccomp SIGSYS (asm-generic/siginfo.h)

struct SyscallName {
  long nr;
  const char* name;
};
constexpr SyscallName kSyscalls[] = {
#include "syscall_names.inc"
};

// Read by the SIGSYS handler: fixed storage, written before any filter
// that could trap exists (names) or atomically (hook).
char g_program[kProgramNameMax] = "spore";
std::atomic<const char*> g_names[Policy::kMaxNames];
std::mutex g_names_mu;
std::atomic<void (*)()> g_hook{nullptr};

// Async-signal-safe line building: no allocation, no stdio.
struct Line {
  char buf[384];
  size_t len = 0;
  void put(const char* s) {
    while (s && *s && len < sizeof buf - 1) buf[len++] = *s++;
  }
  void num(long v) {
    char d[24];
    size_t n = 0;
    unsigned long u = v < 0 ? 0ul - static_cast<unsigned long>(v) : static_cast<unsigned long>(v);
    do {
      d[n++] = static_cast<char>('0' + u % 10);
      u /= 10;
    } while (u && n < sizeof d);
    if (v < 0) put("-");
    while (n && len < sizeof buf - 1) buf[len++] = d[--n];
  }
};

void on_sigsys(int, siginfo_t* si, void*) {
  Line l;
  l.put(g_program);
  l.put(": seccomp: ");
  if (si->si_code == kSysSeccomp) {
    int tag = si->si_errno;  // SECCOMP_RET_DATA of the rule that trapped
    const char* role = tag >= 0 && static_cast<size_t>(tag) < Policy::kMaxNames ? g_names[tag].load() : nullptr;
    const char* name = syscall_name(si->si_syscall);
    l.put("the ");
    l.put(role ? role : "unnamed");
    l.put(" thread made a system call its policy forbids: ");
    l.put(name ? name : "syscall");
    l.put(" (");
    l.num(si->si_syscall);
    l.put(")");
  } else {
    l.put("SIGSYS from outside the process");
  }
  l.put("; the VMM stops (exit ");
  l.num(kExitSeccomp);
  l.put(")\n");
  ssize_t n = ::write(STDERR_FILENO, l.buf, l.len);
  (void)n;
  if (auto hook = g_hook.load()) hook();
  _exit(kExitSeccomp);
}

// What the process does once, before any of its threads is confined: the
// SIGSYS reporter, and malloc's arena limit. glibc computes that limit
// lazily, the first time more than 8 arenas exist (many threads allocating
// at once: a daemon's clients, many vCPUs), by counting CPUs with
// sched_getaffinity or by reading /sys/devices/system/cpu/online, depending
// on the version: a confined thread may do neither. Set here to glibc's own
// default (8 per CPU this process may run on), it is never computed later.
void prepare_process() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_sigsys;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSYS, &sa, nullptr);
    cpu_set_t cpus;
    int n = ::sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 0;
    ::mallopt(M_ARENA_MAX, 8 * std::max(n, 2));
  });
}

Result<uint16_t> name_tag(const char* name) {
  std::lock_guard<std::mutex> g(g_names_mu);
  for (size_t i = 0; i < Policy::kMaxNames; i++) {
    const char* n = g_names[i].load();
    if (!n) {
      g_names[i].store(name);
      return static_cast<uint16_t>(i);
    }
    if (std::strcmp(n, name) == 0) return static_cast<uint16_t>(i);
  }
  return make_error(ErrorKind::kInternal, "seccomp: too many policy names");
}

sock_filter stmt(uint16_t code, uint32_t k) { return BPF_STMT(code, k); }
sock_filter jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { return BPF_JUMP(code, k, jt, jf); }

uint32_t arg_low_offset(uint8_t index) {
  return static_cast<uint32_t>(offsetof(seccomp_data, args) + 8u * index);  // little-endian: low word first
}

// The instructions after "nr matched": allow when an alternative holds,
// else the default. Every path ends in a return, so the accumulator may be
// reused for arguments.
Result<Program> rule_body(const Policy::Rule& r, uint32_t action, uint32_t deny) {
  Program body;
  if (r.always) {
    body.push_back(stmt(BPF_RET | BPF_K, action));
    return body;
  }
  for (const auto& alt : r.any_of) {
    for (const Arg& a : alt)
      if (a.index > 5) return make_error(ErrorKind::kInternal, strfmt("seccomp: syscall %ld: no argument %u", r.nr, a.index));
    size_t alt_len = 1;  // the final return
    for (const Arg& a : alt) alt_len += a.mask == 0xffffffffu ? 2 : 3;
    size_t pos = 0;
    for (const Arg& a : alt) {
      body.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low_offset(a.index)));
      pos++;
      if (a.mask != 0xffffffffu) {
        body.push_back(stmt(BPF_ALU | BPF_AND | BPF_K, a.mask));
        pos++;
      }
      size_t skip = alt_len - pos - 1;  // to the first instruction of the next alternative
      if (skip > kMaxJump) return make_error(ErrorKind::kInternal, "seccomp: rule too long");
      body.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, a.value & a.mask, 0, static_cast<uint8_t>(skip)));
      pos++;
    }
    body.push_back(stmt(BPF_RET | BPF_K, action));
  }
  body.push_back(stmt(BPF_RET | BPF_K, deny));
  return body;
}

}  // namespace

Policy::Rule& Policy::rule(long nr) {
  for (auto& r : rules_)
    if (r.nr == nr) return r;
  rules_.push_back(Rule{});
  rules_.back().nr = nr;
  return rules_.back();
}

Policy& Policy::allow(long nr) {
  Rule& r = rule(nr);
  r.always = true;
  r.any_of.clear();
  return *this;
}

Policy& Policy::allow_if(long nr, std::vector<Arg> all_of) {
  Rule& r = rule(nr);
  if (!r.always) r.any_of.push_back(std::move(all_of));
  return *this;
}

Policy& Policy::fail_with(long nr, int err) {
  Rule& r = rule(nr);
  r.always = true;
  r.any_of.clear();
  r.fail_errno = err;
  return *this;
}

Result<Mode> mode_from_env() {
  const char* v = std::getenv("SPORE_SECCOMP");
  if (!v || !*v || std::strcmp(v, "on") == 0) return Mode::kEnforce;
  if (std::strcmp(v, "log") == 0) return Mode::kLog;
  if (std::strcmp(v, "off") == 0) return Mode::kOff;
  return make_error(ErrorKind::kUsage, strfmt("SPORE_SECCOMP=%s: expected on, log or off", v));
}

Result<Program> compile(const Policy& policy, Mode mode) {
  if (mode == Mode::kOff) {
    static std::once_flag warned;
    std::call_once(warned, [] { LOG_WARN("SPORE_SECCOMP=off: the VMM runs without its syscall filter"); });
    return Program{};
  }
  // Compiling happens before the thread (or its creator) is confined: the
  // process is prepared then, while any call is still allowed.
  prepare_process();
  SPORE_ASSIGN_OR_RETURN(uint16_t tag, name_tag(policy.name()));
  const uint32_t deny = mode == Mode::kLog ? SECCOMP_RET_LOG : (SECCOMP_RET_TRAP | tag);

  Program p;
  p.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
  p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 1, 0));
  p.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));  // another ABI's numbers mean other calls
  p.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
#if defined(__x86_64__)
  p.push_back(jump(BPF_JMP | BPF_JGE | BPF_K, __X32_SYSCALL_BIT, 0, 1));  // the x32 ABI shares this arch
  p.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
#endif
  for (const auto& r : policy.rules()) {
    if (r.nr < 0) return make_error(ErrorKind::kInternal, "seccomp: negative syscall number");
    uint32_t action = r.fail_errno ? (SECCOMP_RET_ERRNO | (static_cast<uint32_t>(r.fail_errno) & SECCOMP_RET_DATA))
                                   : SECCOMP_RET_ALLOW;
    SPORE_ASSIGN_OR_RETURN(Program body, rule_body(r, action, deny));
    if (body.size() > kMaxJump)
      return make_error(ErrorKind::kInternal, strfmt("seccomp: the rule for syscall %ld is too long", r.nr));
    p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(r.nr), 0, static_cast<uint8_t>(body.size())));
    p.insert(p.end(), body.begin(), body.end());
  }
  p.push_back(stmt(BPF_RET | BPF_K, deny));
  if (p.size() > kMaxProgram)
    return make_error(ErrorKind::kInternal, strfmt("seccomp: the %s policy compiles to %zu instructions (max %zu)",
                                                   policy.name(), p.size(), kMaxProgram));
  return p;
}

Status install(const Program& program) {
  if (program.empty()) return ok_status();
  prepare_process();
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return errno_error("seccomp: prctl(PR_SET_NO_NEW_PRIVS)");
  sock_fprog prog{};
  prog.len = static_cast<unsigned short>(program.size());
  prog.filter = const_cast<sock_filter*>(program.data());
  long r = ::syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
  if (r < 0 && errno == ENOSYS) r = ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
  if (r < 0)
    return errno_error("seccomp: cannot install the syscall filter (the kernel needs CONFIG_SECCOMP_FILTER; "
                       "SPORE_SECCOMP=off runs without it)");
  return ok_status();
}

void set_program_name(const std::string& name) {
  size_t n = std::min(name.size(), sizeof g_program - 1);
  std::memcpy(g_program, name.data(), n);
  g_program[n] = '\0';
}

void set_violation_hook(void (*hook)()) { g_hook.store(hook); }

const char* syscall_name(long nr) {
  for (const auto& s : kSyscalls)
    if (s.nr == nr) return s.name;
  return nullptr;
}

}  // namespace spore::seccomp
