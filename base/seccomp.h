// Seccomp-BPF allow-lists for one thread: rules written with the target's
// syscall numbers (__NR_* from its own headers, so a policy is written once
// for every architecture), compiled into a classic BPF program, installed
// with no_new_privs. What the VMM allows per thread is vmm/seccomp/policy.h;
// doc/security.md ("Seccomp") explains both.
//
// A call no rule allows raises SIGSYS (SECCOMP_RET_TRAP). The handler writes
// one line naming the thread and the system call on stderr and ends the
// process with kExitSeccomp (base/exit_codes.h): no syscall a policy forbids
// ever runs, and the user learns which one was tried.
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"

namespace spore::seccomp {

// One condition on a syscall argument: (low 32 bits of args[index] & mask)
// == value. Every argument spore checks (fds, flags, ioctl requests,
// protections, address families) is one the kernel reads as 32 bits, so the
// high half is never consulted: comparing it would only reject callers that
// leave garbage there, which the kernel itself ignores.
struct Arg {
  uint8_t index = 0;
  uint32_t mask = 0xffffffffu;
  uint32_t value = 0;
};
inline Arg arg_eq(uint8_t index, uint32_t value) { return Arg{index, 0xffffffffu, value}; }
// The bits of mask are all clear in args[index].
inline Arg arg_clear(uint8_t index, uint32_t mask) { return Arg{index, mask, 0}; }

// The rules of one thread role. A syscall is allowed when any of its
// alternatives holds (an alternative: all its conditions hold); a syscall
// added without conditions is always allowed.
class Policy {
 public:
  // name says which thread breaks a rule ("vCPU", "device", ...): a string
  // that lives as long as the process (the reporter prints it); at most
  // kMaxNames distinct names per process.
  explicit Policy(const char* name) : name_(name) {}
  static constexpr size_t kMaxNames = 16;

  Policy& allow(long nr);
  Policy& allow_if(long nr, std::vector<Arg> all_of);
  // The call fails with err instead of running (e.g. clone3 -> ENOSYS, so
  // that libc falls back to clone, whose flags a filter can read).
  Policy& fail_with(long nr, int err);

  const char* name() const { return name_; }
  struct Rule {
    long nr = -1;
    bool always = false;
    std::vector<std::vector<Arg>> any_of;
    int fail_errno = 0;
  };
  const std::vector<Rule>& rules() const { return rules_; }

 private:
  Rule& rule(long nr);
  const char* name_;
  std::vector<Rule> rules_;  // in the order given: put frequent calls first
};

// SPORE_SECCOMP: the user's own switch for debugging (never read from a
// bundle or the guest). Unset or "on": enforce. "log": install the filters
// but let violations through, logged by the kernel's audit log (dmesg,
// "type=1326"). "off": no filters, with a warning.
enum class Mode { kEnforce, kLog, kOff };
Result<Mode> mode_from_env();

using Program = std::vector<sock_filter>;

// The classic BPF program for policy: checks the architecture, then the
// rules in order; anything else traps (kLog: is logged and allowed).
Result<Program> compile(const Policy& policy, Mode mode);

// Installs program on the calling thread (no_new_privs first, as an
// unprivileged process must); it applies to threads this one creates later,
// and stacks on filters the thread already has (the strictest answer wins).
// The first call also installs the SIGSYS reporter. An empty program
// (Mode::kOff) installs nothing.
Status install(const Program& program);

// Prefix of the violation message ("spore-vm", the app's name).
void set_program_name(const std::string& name);
// Runs in the SIGSYS handler after the line is written, before the process
// exits, on whichever thread broke its policy (async-signal-safe code whose
// calls every policy allows): the terminal's modes are put back this way.
void set_violation_hook(void (*hook)());

// Name of syscall nr on this architecture, or nullptr.
const char* syscall_name(long nr);

}  // namespace spore::seccomp
