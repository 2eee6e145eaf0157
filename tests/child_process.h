// Runs a function in a forked child and reports how the child ended: for
// tests of things that end or confine a process (seccomp filters stay with
// the process that installed them).
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <string>

namespace spore::test {

struct ChildResult {
  int status = -1;  // exit code, or 128 + signal
  std::string err;  // what it wrote on stderr
};

// fn runs in the child with stderr captured; returning from it exits 0.
inline ChildResult run_in_child(const std::function<void()>& fn) {
  ChildResult r;
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) return r;
  pid_t pid = ::fork();
  if (pid < 0) return r;
  if (pid == 0) {
    ::dup2(p[1], STDERR_FILENO);
    fn();
    _exit(0);
  }
  ::close(p[1]);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
    if (n > 0) r.err.append(buf, static_cast<size_t>(n));
  ::close(p[0]);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

}  // namespace spore::test
