// The filter compiler and installer, exercised in forked children: a
// filter never leaves the process (and thread) that installs it.
#include "base/seccomp.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "base/exit_codes.h"
#include "tests/child_process.h"

using namespace spore;
using namespace spore::seccomp;
using spore::test::run_in_child;

namespace {

// What a child needs to report and end, whatever else a test forbids.
Policy basics(const char* name) {
  Policy p(name);
  p.allow(__NR_write);
  p.allow(__NR_exit_group);
  p.allow(__NR_exit);
  p.allow(__NR_rt_sigreturn);
  return p;
}

void must(bool ok, const char* what) {
  if (ok) return;
  ssize_t n = ::write(STDERR_FILENO, what, std::strlen(what));
  (void)n;
  _exit(99);
}

void install_or_die(const Policy& p, Mode mode = Mode::kEnforce) {
  auto prog = compile(p, mode);
  must(prog.ok(), "compile failed\n");
  must(install(*prog).ok(), "install failed\n");
}

void say(const char* s) {
  ssize_t n = ::write(STDERR_FILENO, s, std::strlen(s));
  (void)n;
}

std::string violation(const char* thread, const char* call, long nr) {
  return std::string("probe: seccomp: the ") + thread + " thread made a system call its policy forbids: " + call + " (" +
         std::to_string(nr) + "); the VMM stops (exit 159)\n";
}

}  // namespace

TEST_CASE("a forbidden call stops the process with one line naming it, and exit 159", "[seccomp]") {
  REQUIRE(kExitSeccomp == 159);
  auto r = run_in_child([] {
    set_program_name("probe");
    install_or_die(basics("test"));
    ::syscall(__NR_getppid);
    say("getppid returned\n");
  });
  CHECK(r.status == kExitSeccomp);
  CHECK(r.err == violation("test", "getppid", __NR_getppid));
}

TEST_CASE("allowed calls run and the filter and no_new_privs show in /proc", "[seccomp]") {
  auto r = run_in_child([] {
    Policy p = basics("test");
    p.allow(__NR_getppid).allow(__NR_openat).allow(__NR_read).allow(__NR_close);
    install_or_die(p);
    must(::syscall(__NR_getppid) == ::getppid(), "getppid\n");
    int fd = ::open("/proc/self/status", O_RDONLY);
    must(fd >= 0, "open\n");
    char buf[8192];
    ssize_t n = ::read(fd, buf, sizeof buf - 1);
    must(n > 0, "read\n");
    buf[n] = '\0';
    must(std::strstr(buf, "NoNewPrivs:\t1\n") && std::strstr(buf, "Seccomp:\t2\n"), "status\n");
    say("ok\n");
  });
  CHECK(r.status == 0);
  CHECK(r.err == "ok\n");
}

TEST_CASE("argument conditions: any alternative may hold, all its conditions must", "[seccomp]") {
  auto policy = [] {
    Policy p = basics("args");
    p.allow_if(__NR_fcntl, {arg_eq(0, 0), arg_eq(1, F_GETFL)});
    p.allow_if(__NR_fcntl, {arg_eq(1, F_GETFD)});
    p.allow_if(__NR_mmap, {arg_clear(2, PROT_EXEC)});
    p.allow(__NR_munmap);
    return p;
  };
  SECTION("matching calls run") {
    auto r = run_in_child([&] {
      install_or_die(policy());
      must(::fcntl(0, F_GETFL) >= 0 || errno == EBADF, "F_GETFL\n");
      must(::fcntl(2, F_GETFD) >= 0, "F_GETFD on 2\n");
      void* m = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      must(m != MAP_FAILED, "mmap\n");
      ::munmap(m, 4096);
      say("ok\n");
    });
    CHECK(r.status == 0);
    CHECK(r.err == "ok\n");
  }
  SECTION("a condition of the only matching alternative fails") {
    auto r = run_in_child([&] {
      set_program_name("probe");
      install_or_die(policy());
      ::fcntl(2, F_GETFL);  // F_GETFL only on fd 0
    });
    CHECK(r.status == kExitSeccomp);
    CHECK(r.err == violation("args", "fcntl", __NR_fcntl));
  }
  SECTION("no executable memory") {
    auto r = run_in_child([&] {
      set_program_name("probe");
      install_or_die(policy());
      ::mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    });
    CHECK(r.status == kExitSeccomp);
    CHECK(r.err == violation("args", "mmap", __NR_mmap));
  }
  SECTION("only the low 32 bits of an argument are compared, as the kernel reads them") {
    auto r = run_in_child([&] {
      install_or_die(policy());
      long fl = ::syscall(__NR_fcntl, 2, static_cast<long>(F_GETFD) | (1l << 40));
      must(fl >= 0, "F_GETFD with high bits\n");
      say("ok\n");
    });
    CHECK(r.status == 0);
    CHECK(r.err == "ok\n");
  }
}

TEST_CASE("fail_with makes a call fail with an errno instead of running", "[seccomp]") {
  auto r = run_in_child([] {
    Policy p = basics("errno");
    p.fail_with(__NR_getppid, ENOSYS);
    install_or_die(p);
    errno = 0;
    must(::syscall(__NR_getppid) == -1 && errno == ENOSYS, "getppid should fail with ENOSYS\n");
    say("ok\n");
  });
  CHECK(r.status == 0);
  CHECK(r.err == "ok\n");
}

TEST_CASE("filters stack: a call must pass every filter of the thread", "[seccomp]") {
  auto r = run_in_child([] {
    set_program_name("probe");
    Policy outer = basics("outer");
    outer.allow(__NR_getppid).allow(__NR_gettid).allow(__NR_prctl).allow(__NR_seccomp);
    Policy inner = basics("inner");
    inner.allow(__NR_getppid).allow(__NR_getpid);  // getpid: allowed here, not by outer
    // Compiled first: compiling allocates, which outer does not allow.
    auto outer_prog = compile(outer, Mode::kEnforce);
    auto inner_prog = compile(inner, Mode::kEnforce);
    must(outer_prog.ok() && inner_prog.ok(), "compile\n");
    must(install(*outer_prog).ok(), "install outer\n");
    must(install(*inner_prog).ok(), "install inner\n");
    must(::syscall(__NR_getppid) > 0, "getppid\n");
    ::syscall(__NR_getpid);
  });
  CHECK(r.status == kExitSeccomp);
  CHECK(r.err == violation("outer", "getpid", __NR_getpid));
}

TEST_CASE("a thread started after a filter inherits it but one started before does not", "[seccomp]") {
  auto r = run_in_child([] {
    set_program_name("probe");
    std::thread([] {}).join();  // glibc sets up its signal handlers at the first thread
    std::atomic<int> go{0};
    std::thread before([&] {
      while (go.load() == 0) {
      }
      must(::syscall(__NR_getppid) > 0, "getppid in the older thread\n");
      go = 2;
    });
    Policy p = basics("inherited");
    p.allow(__NR_futex).allow(__NR_mmap).allow(__NR_munmap).allow(__NR_mprotect).allow(__NR_madvise);
    p.allow(__NR_clone).allow(__NR_set_robust_list).allow(__NR_rseq).allow(__NR_rt_sigprocmask);
    p.fail_with(__NR_clone3, ENOSYS);
    install_or_die(p);
    go = 1;
    while (go.load() != 2) {
    }
    std::thread after([] { ::syscall(__NR_getppid); });
    after.join();
    say("not stopped\n");
  });
  CHECK(r.status == kExitSeccomp);
  CHECK(r.err == violation("inherited", "getppid", __NR_getppid));
}

TEST_CASE("log mode lets a violation through", "[seccomp]") {
  auto r = run_in_child([] {
    install_or_die(basics("logged"), Mode::kLog);
    must(::syscall(__NR_getppid) > 0, "getppid\n");
    say("ok\n");
  });
  CHECK(r.status == 0);
  CHECK(r.err == "ok\n");
}

TEST_CASE("off mode compiles to nothing and installs nothing", "[seccomp]") {
  auto prog = compile(basics("off"), Mode::kOff);
  REQUIRE(prog.ok());
  CHECK(prog->empty());
  auto r = run_in_child([&] {
    must(install(*prog).ok(), "install\n");
    must(::syscall(__NR_getppid) > 0, "getppid\n");
    say("ok\n");
  });
  CHECK(r.status == 0);
  CHECK(r.err == "ok\n");
}

TEST_CASE("SPORE_SECCOMP chooses the mode, and nothing else is accepted", "[seccomp]") {
  const char* old = std::getenv("SPORE_SECCOMP");
  std::string saved = old ? old : "";
  ::unsetenv("SPORE_SECCOMP");
  CHECK(*mode_from_env() == Mode::kEnforce);
  ::setenv("SPORE_SECCOMP", "on", 1);
  CHECK(*mode_from_env() == Mode::kEnforce);
  ::setenv("SPORE_SECCOMP", "log", 1);
  CHECK(*mode_from_env() == Mode::kLog);
  ::setenv("SPORE_SECCOMP", "off", 1);
  CHECK(*mode_from_env() == Mode::kOff);
  ::setenv("SPORE_SECCOMP", "0", 1);
  auto bad = mode_from_env();
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message == "SPORE_SECCOMP=0: expected on, log or off");
  if (old) ::setenv("SPORE_SECCOMP", saved.c_str(), 1);
  else ::unsetenv("SPORE_SECCOMP");
}

TEST_CASE("syscall names come from this architecture's headers", "[seccomp]") {
  CHECK(std::string(syscall_name(__NR_openat)) == "openat");
  CHECK(std::string(syscall_name(__NR_mmap)) == "mmap");
  CHECK(std::string(syscall_name(__NR_ioctl)) == "ioctl");
  CHECK(std::string(syscall_name(__NR_execve)) == "execve");
  CHECK(syscall_name(100000) == nullptr);
}
