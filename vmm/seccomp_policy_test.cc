// The VMM's real thread policies, installed in forked children: what every
// role forbids, and the argument rules that matter.
#include "vmm/seccomp_policy.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <atomic>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "base/exit_codes.h"
#include "tests/child_process.h"

using namespace spore;
using namespace spore::vmm;
using spore::test::run_in_child;

namespace {

constexpr ThreadRole kRoles[] = {ThreadRole::kVcpu,    ThreadRole::kDevice,  ThreadRole::kPrefetch,
                                 ThreadRole::kController, ThreadRole::kSession, ThreadRole::kMonitor,
                                 ThreadRole::kMonitorClient};

void must(bool ok, const char* what) {
  if (ok) return;
  ssize_t n = ::write(STDERR_FILENO, what, std::strlen(what));
  (void)n;
  _exit(99);
}

void say(const char* s) {
  ssize_t n = ::write(STDERR_FILENO, s, std::strlen(s));
  (void)n;
}

// Compiled before anything is installed: compiling allocates.
void confine_or_die(ThreadRole role, const PolicyFds& fds = {}) {
  auto prog = thread_program(role, fds);
  must(prog.ok(), "compile failed\n");
  must(!prog->empty(), "empty program (is SPORE_SECCOMP=off set?)\n");
  must(seccomp::install(*prog).ok(), "install failed\n");
}

std::string violation(ThreadRole role, const char* call, long nr) {
  return std::string("probe: seccomp: the ") + thread_role_name(role) +
         " thread made a system call its policy forbids: " + call + " (" + std::to_string(nr) +
         "); the VMM stops (exit 159)\n";
}

struct Forbidden {
  const char* name;
  long nr;
  std::function<void()> call;
};

}  // namespace

TEST_CASE("every thread policy compiles within the kernel's program limit", "[seccomp]") {
  for (ThreadRole role : kRoles) {
    auto p = seccomp::compile(thread_policy(role, PolicyFds{3, 4, 5}), seccomp::Mode::kEnforce);
    INFO(thread_role_name(role));
    REQUIRE(p.ok());
    CHECK(p->size() > 10);
    CHECK(p->size() < BPF_MAXINSNS);
  }
}

TEST_CASE("no thread may exec, fork, open network sockets, trace, unshare or map executable memory", "[seccomp]") {
  const std::vector<Forbidden> calls = {
      {"execve", __NR_execve,
       [] {
         char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
         ::execve("/bin/true", argv, argv + 1);
       }},
      {"clone", __NR_clone, [] { (void)::fork(); }},
      {"socket", __NR_socket, [] { (void)::socket(AF_INET, SOCK_STREAM, 0); }},
      {"ptrace", __NR_ptrace, [] { (void)::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr); }},
      {"unshare", __NR_unshare, [] { (void)::unshare(CLONE_NEWUSER); }},
      {"mmap", __NR_mmap,
       [] { (void)::mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); }},
      {"mprotect", __NR_mprotect,
       [] {
         static char page[8192];
         auto a = reinterpret_cast<uintptr_t>(page + 4095) & ~uintptr_t{4095};
         (void)::mprotect(reinterpret_cast<void*>(a), 4096, PROT_READ | PROT_EXEC);
       }},
  };
  for (ThreadRole role : kRoles) {
    for (const auto& f : calls) {
      INFO(thread_role_name(role) << " / " << f.name);
      auto r = run_in_child([&] {
        seccomp::set_program_name("probe");
        confine_or_die(role, PolicyFds{3, 4, 5});
        f.call();
        say("not stopped\n");
      });
      CHECK(r.status == kExitSeccomp);
      CHECK(r.err == violation(role, f.name, f.nr));
    }
  }
}

TEST_CASE("a vCPU thread runs only its own vCPU and raises lines only on its VM", "[seccomp]") {
  // /dev/null stands in for the KVM fds: an allowed ioctl reaches the
  // kernel and fails there (ENOTTY) instead of being stopped.
  int vcpu = ::open("/dev/null", O_RDONLY | O_CLOEXEC), vm = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(vcpu >= 0);
  REQUIRE(vm >= 0);
  SECTION("allowed") {
    auto r = run_in_child([&] {
      confine_or_die(ThreadRole::kVcpu, PolicyFds{vcpu, vm, -1});
      must(::ioctl(vcpu, KVM_RUN, 0) < 0 && errno == ENOTTY, "KVM_RUN on its vCPU\n");
      kvm_irq_level l{};
      must(::ioctl(vm, KVM_IRQ_LINE, &l) < 0 && errno == ENOTTY, "KVM_IRQ_LINE on the VM\n");
      say("ok\n");
    });
    CHECK(r.status == 0);
    CHECK(r.err == "ok\n");
  }
  SECTION("KVM_RUN on another fd") {
    auto r = run_in_child([&] {
      seccomp::set_program_name("probe");
      confine_or_die(ThreadRole::kVcpu, PolicyFds{vcpu, vm, -1});
      ::ioctl(vm, KVM_RUN, 0);
    });
    CHECK(r.status == kExitSeccomp);
    CHECK(r.err == violation(ThreadRole::kVcpu, "ioctl", __NR_ioctl));
  }
  SECTION("another request on its vCPU") {
    auto r = run_in_child([&] {
      seccomp::set_program_name("probe");
      confine_or_die(ThreadRole::kVcpu, PolicyFds{vcpu, vm, -1});
      kvm_one_reg reg{};
      ::ioctl(vcpu, KVM_SET_ONE_REG, &reg);
    });
    CHECK(r.status == kExitSeccomp);
    CHECK(r.err == violation(ThreadRole::kVcpu, "ioctl", __NR_ioctl));
  }
  ::close(vcpu);
  ::close(vm);
}

TEST_CASE("a vCPU thread may drop vsock connections: the guest resets its device from there", "[seccomp]") {
  auto ok = run_in_child([] {
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    int sv[2];
    must(ep >= 0 && ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "setup\n");
    epoll_event ev{};
    must(::epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev) == 0, "add\n");
    confine_or_die(ThreadRole::kVcpu, PolicyFds{3, 4, -1});
    must(::epoll_ctl(ep, EPOLL_CTL_DEL, sv[0], nullptr) == 0, "EPOLL_CTL_DEL\n");
    must(::close(sv[0]) == 0, "close\n");
    say("ok\n");
  });
  CHECK(ok.status == 0);
  CHECK(ok.err == "ok\n");
  auto bad = run_in_child([] {
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    seccomp::set_program_name("probe");
    confine_or_die(ThreadRole::kVcpu, PolicyFds{3, 4, -1});
    epoll_event ev{};
    ::epoll_ctl(ep, EPOLL_CTL_ADD, STDERR_FILENO, &ev);  // watching new fds is the device thread's job
  });
  CHECK(bad.status == kExitSeccomp);
  CHECK(bad.err == violation(ThreadRole::kVcpu, "epoll_ctl", __NR_epoll_ctl));
}

TEST_CASE("the device thread makes unix socket pairs only", "[seccomp]") {
  auto ok = run_in_child([] {
    confine_or_die(ThreadRole::kDevice);
    int sv[2];
    must(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair(AF_UNIX)\n");
    say("ok\n");
  });
  CHECK(ok.status == 0);
  CHECK(ok.err == "ok\n");
  auto bad = run_in_child([] {
    seccomp::set_program_name("probe");
    confine_or_die(ThreadRole::kDevice);
    int sv[2];
    ::socketpair(AF_INET, SOCK_STREAM, 0, sv);
  });
  CHECK(bad.status == kExitSeccomp);
  CHECK(bad.err == violation(ThreadRole::kDevice, "socketpair", __NR_socketpair));
}

TEST_CASE("the session thread asks the terminal for its size and modes, nothing else", "[seccomp]") {
  auto ok = run_in_child([] {
    confine_or_die(ThreadRole::kSession);
    winsize ws{};
    must(::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 || errno == ENOTTY, "TIOCGWINSZ\n");
    say("ok\n");
  });
  CHECK(ok.status == 0);
  CHECK(ok.err == "ok\n");
  auto bad = run_in_child([] {
    seccomp::set_program_name("probe");
    confine_or_die(ThreadRole::kSession);
    char c = 'x';
    ::ioctl(STDERR_FILENO, TIOCSTI, &c);  // would type into the user's terminal
  });
  CHECK(bad.status == kExitSeccomp);
  CHECK(bad.err == violation(ThreadRole::kSession, "ioctl", __NR_ioctl));
}

TEST_CASE("the monitor starts client threads - clone3 is refused so libc uses clone", "[seccomp]") {
  auto r = run_in_child([] {
    // As in the monitor, threads exist before it is confined: glibc sets up
    // its own signal handlers when the first thread starts.
    std::thread([] {}).join();
    int lfd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    PolicyFds fds;
    fds.listen = lfd;
    confine_or_die(ThreadRole::kMonitor, fds);
    std::atomic<bool> ran{false};
    std::thread t([&] {
      confine_or_die(ThreadRole::kMonitorClient);
      ran = true;
    });
    t.join();
    must(ran, "thread did not run\n");
    say("ok\n");
  });
  CHECK(r.status == 0);
  CHECK(r.err == "ok\n");
}

TEST_CASE("many threads allocating at once pass every thread policy (malloc sizes its arenas)", "[seccomp]") {
  // glibc counts the CPUs (sched_getaffinity) once more than 8 arenas
  // exist: in a daemon with many clients, or a machine with many vCPUs.
  for (ThreadRole role : {ThreadRole::kMonitor, ThreadRole::kVcpu, ThreadRole::kDevice}) {
    INFO(thread_role_name(role));
    auto r = run_in_child([role] {
      std::thread([] {}).join();
      constexpr int kThreads = 24;
      std::vector<seccomp::Program> progs;
      for (int i = 0; i < kThreads; i++) {
        auto p = thread_program(role == ThreadRole::kMonitor ? ThreadRole::kMonitorClient : role, PolicyFds{3, 4, 5});
        must(p.ok(), "compile\n");
        progs.push_back(std::move(*p));
      }
      if (role == ThreadRole::kMonitor) confine_or_die(role, PolicyFds{3, 4, 5});
      std::atomic<int> ready{0};
      std::vector<std::thread> ts;
      for (int i = 0; i < kThreads; i++)
        ts.emplace_back([&, i] {
          must(seccomp::install(progs[i]).ok(), "install\n");
          ready++;
          while (ready.load() < kThreads) {
          }
          std::vector<char> v(4096 + i);  // each thread's first allocation: a new arena
          v[0] = 1;
          ready++;
          while (ready.load() < 2 * kThreads) {
          }
        });
      for (auto& t : ts) t.join();
      say("ok\n");
    });
    CHECK(r.status == 0);
    CHECK(r.err == "ok\n");
  }
}

TEST_CASE("the main thread narrows from controller to session: files go", "[seccomp]") {
  auto r = run_in_child([] {
    seccomp::set_program_name("probe");
    auto controller = thread_program(ThreadRole::kController);
    auto session = thread_program(ThreadRole::kSession);
    must(controller.ok() && session.ok(), "compile\n");
    must(seccomp::install(*controller).ok(), "install controller\n");
    int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    must(fd >= 0, "open under the controller policy\n");
    ::close(fd);
    must(seccomp::install(*session).ok(), "install session\n");
    ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  });
  CHECK(r.status == kExitSeccomp);
  CHECK(r.err == violation(ThreadRole::kSession, "openat", __NR_openat));
}
