#include "agent/process.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
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

// What the child reports through the exec-status pipe when it fails.
struct ChildFailure {
  int stage;  // 1 chdir, 2 user, 3 exec, 4 stdio/tty
  int err;
};

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

[[noreturn]] void child_fail(int pipe_fd, int stage) {
  ChildFailure f{stage, errno};
  ssize_t n = ::write(pipe_fd, &f, sizeof f);
  (void)n;
  _exit(127);
}

// Merges request env over defaults: later KEY=... replaces earlier.
std::vector<std::string> merge_env(std::vector<std::string> base, const std::vector<std::string>& extra) {
  for (const auto& e : extra) {
    auto eq = e.find('=');
    std::string key = e.substr(0, eq);
    bool replaced = false;
    for (auto& b : base)
      if (b.compare(0, key.size() + 1, key + "=") == 0) {
        b = e;
        replaced = true;
        break;
      }
    if (!replaced) base.push_back(e);
  }
  return base;
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

  // Everything the child needs, prepared before fork: after it only
  // async-signal-safe calls.
  std::vector<char*> argv, envp;
  for (const auto& a : req.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  if (::pipe2(p, O_CLOEXEC) < 0) return fail(proto::ErrorCode::kStartFailed, "pipe failed");
  UniqueFd status_r(p[0]), status_w(p[1]);

  pid_t pid = ::fork();
  if (pid < 0) return fail(proto::ErrorCode::kStartFailed, strfmt("fork: %s", std::strerror(errno)));
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int s = 1; s < NSIG; s++) ::signal(s, SIG_DFL);
    ::setsid();
    if (tty) {
      int s = ::open(pty_name.c_str(), O_RDWR);
      if (s < 0 || ::ioctl(s, TIOCSCTTY, 0) < 0) child_fail(status_w.get(), 4);
      if (::dup2(s, 0) < 0 || ::dup2(s, 1) < 0 || ::dup2(s, 2) < 0) child_fail(status_w.get(), 4);
      if (s > 2) ::close(s);
    } else {
      if (::dup2(child_in.get(), 0) < 0 || ::dup2(child_out.get(), 1) < 0 || ::dup2(child_err.get(), 2) < 0)
        child_fail(status_w.get(), 4);
    }
    if (::setgroups(user->groups.size(), user->groups.data()) < 0 || ::setgid(user->gid) < 0 ||
        ::setuid(user->uid) < 0)
      child_fail(status_w.get(), 2);
    if (::chdir(cwd.c_str()) < 0) child_fail(status_w.get(), 1);
    ::execve(exe->c_str(), argv.data(), envp.data());
    child_fail(status_w.get(), 3);
  }
  status_w.reset();
  child_in.reset();
  child_out.reset();
  child_err.reset();

  ChildFailure f{};
  ssize_t n;
  do {
    n = ::read(status_r.get(), &f, sizeof f);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof f)) {
    int st;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    switch (f.stage) {
      case 1:
        return fail(proto::ErrorCode::kStartFailed, strfmt("chdir to %s: %s", cwd.c_str(), std::strerror(f.err)));
      case 2:
        return fail(proto::ErrorCode::kStartFailed,
                    strfmt("cannot switch to user '%s': %s", req.user.c_str(), std::strerror(f.err)));
      case 3:
        if (f.err == ENOENT)
          return fail(proto::ErrorCode::kNotFound, strfmt("exec %s: no such file or directory", exe->c_str()));
        return fail(proto::ErrorCode::kNotExecutable, strfmt("exec %s: %s", exe->c_str(), std::strerror(f.err)));
      default:
        return fail(proto::ErrorCode::kStartFailed, strfmt("setting up stdio: %s", std::strerror(f.err)));
    }
  }
  c.pid = pid;
  return c;
}

}  // namespace spore::agent
