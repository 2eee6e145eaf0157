#include "agent/process.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cstring>

#include "agent/users.h"
#include "base/strings.h"

namespace spore::agent {
namespace {

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::string env_get(const std::vector<std::string>& env, const std::string& key) {
  std::string prefix = key + "=";
  std::string val;
  for (const auto& e : env)
    if (starts_with(e, prefix)) val = e.substr(prefix.size());  // last one wins
  return val;
}

bool is_executable_file(const std::string& path, int* err) {
  struct stat st;
  if (::stat(path.c_str(), &st) < 0) {
    *err = errno;
    return false;
  }
  if (S_ISDIR(st.st_mode)) {
    *err = EACCES;
    return false;
  }
  if (::access(path.c_str(), X_OK) < 0) {
    *err = errno;
    return false;
  }
  return true;
}

// What the child of spawn() needs; it also reports failure here (shared memory).
struct ChildArgs {
  bool tty;
  const char* pty_name;
  int in, out, err;
  const gid_t* groups;
  size_t ngroups;
  uid_t uid;
  gid_t gid;
  const char* cwd;
  const char* exe;
  char* const* argv;
  char* const* envp;
  int fail_stage = 0;  // 1 chdir, 2 user, 3 exec, 4 stdio/tty
  int fail_errno = 0;
};

// Runs in the child, on its own stack, sharing the agent's memory until
// execve: system calls only.
int child_main(void* arg) {
  auto* a = static_cast<ChildArgs*>(arg);
  auto fail = [a](int stage) {
    a->fail_errno = errno;
    a->fail_stage = stage;
    _exit(127);
  };
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // execve resets caught signals by itself; ignored ones are inherited, and
  // the agent ignores only SIGPIPE.
  ::signal(SIGPIPE, SIG_DFL);
  ::setsid();
  if (a->tty) {
    int t = ::open(a->pty_name, O_RDWR);
    if (t < 0 || ::ioctl(t, TIOCSCTTY, 0) < 0) fail(4);
    if (::dup2(t, 0) < 0 || ::dup2(t, 1) < 0 || ::dup2(t, 2) < 0) fail(4);
    if (t > 2) ::close(t);
  } else if (::dup2(a->in, 0) < 0 || ::dup2(a->out, 1) < 0 || ::dup2(a->err, 2) < 0) {
    fail(4);
  }
  if (::setgroups(a->ngroups, a->groups) < 0 || ::setgid(a->gid) < 0 || ::setuid(a->uid) < 0) fail(2);
  if (::chdir(a->cwd) < 0) fail(1);
  ::execve(a->exe, a->argv, a->envp);
  fail(3);
  return 127;
}

}  // namespace

std::vector<std::string> base_environment(const std::string& home, bool tty, const std::string& hostname) {
  std::vector<std::string> env = {std::string("PATH=") + kDefaultPath, "HOME=" + home};
  if (!hostname.empty()) env.push_back("HOSTNAME=" + hostname);
  if (tty) env.push_back("TERM=xterm");
  return env;
}

Result<std::string> find_executable(const std::string& file, const std::vector<std::string>& env) {
  int err = ENOENT;
  if (file.find('/') != std::string::npos) {
    if (is_executable_file(file, &err)) return file;
    return Error{ErrorKind::kNotFound, err, file};
  }
  std::string path = env_get(env, "PATH");
  if (path.empty()) path = kDefaultPath;
  bool saw_eacces = false;
  for (const auto& dir : split(path, ':')) {
    std::string cand = (dir.empty() ? std::string(".") : dir) + "/" + file;
    int e = 0;
    if (is_executable_file(cand, &e)) return cand;
    if (e == EACCES) saw_eacces = true;
  }
  return Error{ErrorKind::kNotFound, saw_eacces ? EACCES : ENOENT, file};
}

Result<Child> spawn(const proto::ExecRequest& req, const SpawnContext& ctx, SpawnError* err) {
  auto fail = [&](proto::ErrorCode code, std::string msg) -> Error {
    err->code = code;
    err->message = std::move(msg);
    return make_error(ErrorKind::kGuest, err->message);
  };
  if (req.argv.empty() || req.argv[0].empty()) return fail(proto::ErrorCode::kBadRequest, "no command given");
  for (const auto& e : req.env)
    if (e.find('=') == std::string::npos || e[0] == '=')
      return fail(proto::ErrorCode::kBadRequest, "environment entry '" + e + "' is not KEY=VALUE");

  auto passwd = read_file("/etc/passwd", 16 << 20);
  auto group = read_file("/etc/group", 16 << 20);
  auto user = resolve_user(req.user, passwd.ok() ? *passwd : std::string(), group.ok() ? *group : std::string());
  if (!user.ok()) return fail(proto::ErrorCode::kStartFailed, user.error().message);

  const bool tty = req.flags & proto::kExecTty;
  std::vector<std::string> env =
      merge_env(merge_env(base_environment(user->home, tty, ctx.hostname), ctx.extra_env), req.env);
  const std::string cwd = req.cwd.empty() ? "/" : req.cwd;

  // Resolve the program before forking so errors carry docker-like messages.
  auto exe = find_executable(req.argv[0], env);
  if (!exe.ok()) {
    if (exe.error().sys_errno == EACCES)
      return fail(proto::ErrorCode::kNotExecutable, strfmt("exec %s: permission denied", req.argv[0].c_str()));
    if (req.argv[0].find('/') != std::string::npos)
      return fail(proto::ErrorCode::kNotFound, strfmt("exec %s: no such file or directory", req.argv[0].c_str()));
    return fail(proto::ErrorCode::kNotFound,
                strfmt("exec \"%s\": executable file not found in $PATH", req.argv[0].c_str()));
  }

  Child c;
  UniqueFd child_in, child_out, child_err;
  int p[2];
  if (tty) {
    int m = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0 || ::grantpt(m) < 0 || ::unlockpt(m) < 0) {
      if (m >= 0) ::close(m);
      return fail(proto::ErrorCode::kStartFailed, strfmt("cannot allocate a pty: %s", std::strerror(errno)));
    }
    c.pty.reset(m);
    if (req.rows && req.cols) {
      winsize ws{req.rows, req.cols, 0, 0};
      ::ioctl(m, TIOCSWINSZ, &ws);
    }
    c.stdout_r.reset(::dup(m));
    ::fcntl(c.stdout_r.get(), F_SETFD, FD_CLOEXEC);
    if (req.flags & proto::kExecStdin) {
      c.stdin_w.reset(::dup(m));
      ::fcntl(c.stdin_w.get(), F_SETFD, FD_CLOEXEC);
    }
  } else {
    if (req.flags & proto::kExecStdin) {
      if (::pipe2(p, O_CLOEXEC) < 0) return fail(proto::ErrorCode::kStartFailed, "pipe failed");
      child_in.reset(p[0]);
      c.stdin_w.reset(p[1]);
    } else {
      child_in.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    }
    if (::pipe2(p, O_CLOEXEC) < 0) return fail(proto::ErrorCode::kStartFailed, "pipe failed");
    c.stdout_r.reset(p[0]);
    child_out.reset(p[1]);
    if (::pipe2(p, O_CLOEXEC) < 0) return fail(proto::ErrorCode::kStartFailed, "pipe failed");
    c.stderr_r.reset(p[0]);
    child_err.reset(p[1]);
  }
  std::string pty_name;
  if (tty) {
    char buf[128];
    if (::ptsname_r(c.pty.get(), buf, sizeof buf) != 0)
      return fail(proto::ErrorCode::kStartFailed, "cannot name the pty");
    pty_name = buf;
  }

  // Everything the child needs, prepared up front: the child shares our
  // memory (CLONE_VM) and may only make system calls.
  std::vector<char*> argv, envp;
  for (const auto& a : req.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  ChildArgs ca;
  ca.tty = tty;
  ca.pty_name = pty_name.c_str();
  ca.in = child_in.get();
  ca.out = child_out.get();
  ca.err = child_err.get();
  ca.groups = user->groups.data();
  ca.ngroups = user->groups.size();
  ca.uid = user->uid;
  ca.gid = user->gid;
  ca.cwd = cwd.c_str();
  ca.exe = exe->c_str();
  ca.argv = argv.data();
  ca.envp = envp.data();

  // clone(CLONE_VM | CLONE_VFORK) rather than fork(): no copy of the agent's
  // page tables and no copy-on-write faults, which a freshly resumed guest
  // would pay for page by page. We resume once the child has exec'd or died.
  constexpr size_t kStack = 64 << 10;
  void* stack = ::mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return fail(proto::ErrorCode::kStartFailed, "cannot allocate a stack for the child");
  pid_t pid = ::clone(child_main, static_cast<char*>(stack) + kStack, CLONE_VM | CLONE_VFORK | SIGCHLD, &ca);
  int clone_errno = errno;
  ::munmap(stack, kStack);
  if (pid < 0) return fail(proto::ErrorCode::kStartFailed, strfmt("clone: %s", std::strerror(clone_errno)));
  child_in.reset();
  child_out.reset();
  child_err.reset();

  if (ca.fail_stage) {
    int st;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    switch (ca.fail_stage) {
      case 1:
        return fail(proto::ErrorCode::kStartFailed, strfmt("chdir to %s: %s", cwd.c_str(), std::strerror(ca.fail_errno)));
      case 2:
        return fail(proto::ErrorCode::kStartFailed,
                    strfmt("cannot switch to user '%s': %s", req.user.c_str(), std::strerror(ca.fail_errno)));
      case 3:
        if (ca.fail_errno == ENOENT)
          return fail(proto::ErrorCode::kNotFound, strfmt("exec %s: no such file or directory", exe->c_str()));
        return fail(proto::ErrorCode::kNotExecutable, strfmt("exec %s: %s", exe->c_str(), std::strerror(ca.fail_errno)));
      default:
        return fail(proto::ErrorCode::kStartFailed, strfmt("setting up stdio: %s", std::strerror(ca.fail_errno)));
    }
  }
  c.pid = pid;
  return c;
}

}  // namespace spore::agent
