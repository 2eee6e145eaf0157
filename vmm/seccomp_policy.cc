// The VMM's seccomp policy, written once with the target's syscall names.
// aarch64 has only the *at and p* forms of old calls (openat, ppoll,
// epoll_pwait); other architectures' libcs still use the old ones, listed
// through opt() where they exist. What each role needs was found by tracing
// every integration test (doc/security.md, "How the policy was derived").
#include "vmm/seccomp_policy.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>

namespace spore::vmm {
namespace {

using seccomp::arg_clear;
using seccomp::arg_eq;
using seccomp::Policy;

// The flags glibc's pthread_create passes to clone: a thread, never a
// process (no fork, no new namespaces).
constexpr uint32_t kThreadCloneFlags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
                                       CLONE_SYSVSEM | CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;

// Calls only some architectures have (-1 elsewhere).
#ifdef __NR_poll
constexpr long kNrPoll = __NR_poll;
#else
constexpr long kNrPoll = -1;
#endif
#ifdef __NR_epoll_wait
constexpr long kNrEpollWait = __NR_epoll_wait;
#else
constexpr long kNrEpollWait = -1;
#endif
#ifdef __NR_open
constexpr long kNrOpen = __NR_open;
#else
constexpr long kNrOpen = -1;
#endif
#ifdef __NR_stat
constexpr long kNrStat = __NR_stat;
constexpr long kNrLstat = __NR_lstat;
#else
constexpr long kNrStat = -1;
constexpr long kNrLstat = -1;
#endif
#ifdef __NR_unlink
constexpr long kNrUnlink = __NR_unlink;
constexpr long kNrRmdir = __NR_rmdir;
constexpr long kNrRename = __NR_rename;
constexpr long kNrMkdir = __NR_mkdir;
constexpr long kNrAccess = __NR_access;
constexpr long kNrReadlink = __NR_readlink;
#else
constexpr long kNrUnlink = -1;
constexpr long kNrRmdir = -1;
constexpr long kNrRename = -1;
constexpr long kNrMkdir = -1;
constexpr long kNrAccess = -1;
constexpr long kNrReadlink = -1;
#endif

void opt(Policy& p, long nr) {
  if (nr >= 0) p.allow(nr);
}

// What every thread may call: libc's own needs (locks, memory, signal
// masks, time, thread exit) and the SIGSYS reporter's (write, exit_group).
// Memory never becomes executable.
void add_common(Policy& p) {
  p.allow(__NR_futex);
  p.allow(__NR_write);
  p.allow_if(__NR_mmap, {arg_clear(2, PROT_EXEC)});
  p.allow_if(__NR_mprotect, {arg_clear(2, PROT_EXEC)});
  p.allow(__NR_munmap);
  p.allow(__NR_madvise);
  p.allow(__NR_brk);
  p.allow(__NR_mremap);
  p.allow(__NR_clock_gettime);
  p.allow(__NR_rt_sigprocmask);
  p.allow(__NR_rt_sigreturn);
  p.allow(__NR_restart_syscall);
  p.allow(__NR_gettid);
  p.allow(__NR_getpid);
  // Kicks between vCPU threads, raise(): only this process's threads.
  p.allow_if(__NR_tgkill, {arg_eq(0, static_cast<uint32_t>(::getpid()))});
  p.allow(__NR_sched_yield);
  p.allow(__NR_exit);
  p.allow(__NR_exit_group);
  // The reporter puts the terminal's modes back (stdin in raw mode for -t)
  // on whichever thread it runs.
  p.allow_if(__NR_ioctl, {arg_eq(0, STDIN_FILENO), arg_eq(1, TCSETS)});
}

// The stdio pump (agent/client.cc): sockets and pipes the process already
// holds, the terminal's size and modes.
void add_stdio(Policy& p) {
  p.allow(__NR_ppoll);
  opt(p, kNrPoll);
  p.allow(__NR_read);
  p.allow(__NR_sendto);
  p.allow(__NR_recvfrom);
  p.allow(__NR_pread64);  // e.g. the pagemap a working set is read from, opened beforehand
  for (uint32_t req : {TCGETS, TCSETS, TIOCGWINSZ}) p.allow_if(__NR_ioctl, {arg_eq(1, req)});
  for (uint32_t cmd : {F_GETFL, F_SETFL}) p.allow_if(__NR_fcntl, {arg_eq(1, cmd)});  // non-blocking sockets
  p.allow(__NR_close);
  // Tearing the machine down: devices leave the event loop.
  p.allow_if(__NR_epoll_ctl, {arg_eq(1, EPOLL_CTL_DEL)});
}

// pthread_create: clone3 is refused so that glibc falls back to clone,
// whose flags (a register, not a struct in memory) the filter can check.
void add_threads(Policy& p) {
  p.allow_if(__NR_clone, {arg_eq(0, kThreadCloneFlags)});
  p.fail_with(__NR_clone3, ENOSYS);
  p.allow(__NR_set_robust_list);
  p.allow(__NR_rseq);
  p.allow(__NR_clock_nanosleep);
}

// Lets a thread confine itself further (a filter can only narrow).
void add_confine(Policy& p) {
  p.allow_if(__NR_prctl, {arg_eq(0, PR_SET_NO_NEW_PRIVS)});
  p.allow_if(__NR_seccomp, {arg_eq(0, SECCOMP_SET_MODE_FILTER), arg_eq(1, 0)});
}

// Capturing a spore, recording a working set, writing a bundle: files by
// path. Never executables, never sockets.
void add_files(Policy& p) {
  p.allow(__NR_openat);
  opt(p, kNrOpen);
  p.allow(__NR_pread64);
  p.allow(__NR_pwrite64);
  p.allow(__NR_lseek);
  p.allow(__NR_fstat);
  p.allow(__NR_newfstatat);
  opt(p, kNrStat);
  opt(p, kNrLstat);
  p.allow(__NR_getdents64);
  p.allow(__NR_mkdirat);
  opt(p, kNrMkdir);
  p.allow(__NR_unlinkat);
  opt(p, kNrUnlink);
  opt(p, kNrRmdir);
  p.allow(__NR_renameat);
  p.allow(__NR_renameat2);
  opt(p, kNrRename);
  p.allow(__NR_faccessat);
  p.allow(__NR_faccessat2);
  opt(p, kNrAccess);
  p.allow(__NR_readlinkat);
  opt(p, kNrReadlink);
  p.allow(__NR_getcwd);
  p.allow(__NR_fsync);
  p.allow(__NR_fdatasync);
  p.allow(__NR_ftruncate);
  p.allow(__NR_fchmodat);
  p.allow_if(__NR_fcntl, {arg_eq(1, F_SETFD)});  // nftw's fdopendir (removing a tree)
  p.allow(__NR_getuid);   // a private directory is checked to be ours
  p.allow(__NR_geteuid);
}

}  // namespace

const char* thread_role_name(ThreadRole role) {
  switch (role) {
    case ThreadRole::kVcpu: return "vCPU";
    case ThreadRole::kDevice: return "device";
    case ThreadRole::kPrefetch: return "prefetch";
    case ThreadRole::kController: return "main (controller)";
    case ThreadRole::kSession: return "main (session)";
    case ThreadRole::kMonitor: return "monitor";
    case ThreadRole::kMonitorClient: return "monitor client";
  }
  return "unknown";
}

seccomp::Policy thread_policy(ThreadRole role, const PolicyFds& fds) {
  Policy p(thread_role_name(role));
  switch (role) {
    case ThreadRole::kVcpu:
      // Hot path first: every exit comes back through KVM_RUN.
      p.allow_if(__NR_ioctl, {arg_eq(0, static_cast<uint32_t>(fds.vcpu)), arg_eq(1, KVM_RUN)});
      add_arch_rules(p, role, fds);
      // A guest that resets its vsock device (status 0, e.g. while powering
      // off) makes this thread drop the host connections.
      p.allow(__NR_close);
      p.allow_if(__NR_epoll_ctl, {arg_eq(1, EPOLL_CTL_DEL)});
      add_common(p);
      break;
    case ThreadRole::kDevice:
      p.allow(__NR_epoll_pwait);
      opt(p, kNrEpollWait);
      p.allow(__NR_read);
      p.allow(__NR_pread64);   // virtio-blk
      p.allow(__NR_pwrite64);  // virtio-blk (writable disks)
      p.allow(__NR_fdatasync);
      p.allow(__NR_sendto);    // vsock host ends
      p.allow(__NR_recvfrom);
      p.allow(__NR_epoll_ctl);
      p.allow(__NR_getrandom);  // virtio-rng
      p.allow_if(__NR_socketpair, {arg_eq(0, AF_UNIX)});
      p.allow(__NR_shutdown);
      p.allow(__NR_close);
      for (uint32_t cmd : {F_GETFL, F_SETFL}) p.allow_if(__NR_fcntl, {arg_eq(1, cmd)});
      add_arch_rules(p, role, fds);
      add_common(p);
      break;
    case ThreadRole::kPrefetch:
      add_common(p);  // madvise(MADV_POPULATE_*) over guest RAM, then exit
      break;
    case ThreadRole::kSession:
      add_stdio(p);
      add_arch_rules(p, role, fds);
      add_common(p);
      break;
    case ThreadRole::kMonitorClient:
      add_stdio(p);           // pread64: the status reply's /proc/self/status, opened beforehand
      add_threads(p);         // the spare agent connection is made on a thread of its own
      add_arch_rules(p, role, fds);
      add_common(p);
      break;
    case ThreadRole::kMonitor:
      add_stdio(p);
      p.allow_if(__NR_accept4, {arg_eq(0, static_cast<uint32_t>(fds.listen))});
      p.allow(__NR_shutdown);  // ends client sessions when it stops
      p.allow(__NR_unlinkat);  // its socket and pid file, when it stops
      opt(p, kNrUnlink);
      add_threads(p);
      add_confine(p);
      add_arch_rules(p, role, fds);
      add_common(p);
      break;
    case ThreadRole::kController:
      // Everything the later main-thread roles allow (filters stack), and files.
      add_stdio(p);
      p.allow(__NR_accept4);
      p.allow(__NR_shutdown);
      // The daemon's socket, event and signal descriptors are made once its
      // VM is ready; a spore's id is random.
      p.allow_if(__NR_socket, {arg_eq(0, AF_UNIX)});
      p.allow(__NR_bind);
      p.allow(__NR_listen);
      p.allow(__NR_eventfd2);
      p.allow(__NR_signalfd4);
      p.allow(__NR_getrandom);
      add_files(p);
      add_threads(p);
      add_confine(p);
      add_arch_rules(p, role, fds);
      add_common(p);
      break;
  }
  return p;
}

Result<seccomp::Program> thread_program(ThreadRole role, const PolicyFds& fds) {
  SPORE_ASSIGN_OR_RETURN(seccomp::Mode mode, seccomp::mode_from_env());
  return seccomp::compile(thread_policy(role, fds), mode);
}

Status confine_this_thread(ThreadRole role, const PolicyFds& fds) {
  SPORE_ASSIGN_OR_RETURN(seccomp::Program prog, thread_program(role, fds));
  return seccomp::install(prog);
}

}  // namespace spore::vmm
