#include "tests/integration/harness.h"

#include "base/sha256.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

extern char** environ;

namespace spore::itest {
namespace {

int64_t now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000ll + ts.tv_nsec / 1'000'000;
}

struct Sample {
  long fds = 0, rss_kib = 0, guest_kib = 0;
};

// fds, VmRSS, and the resident part of the mapping(s) of exactly guest_bytes
// (the guest's RAM) of a running process.
Sample sample(pid_t pid, uint64_t guest_bytes) {
  Sample s;
  std::string proc = "/proc/" + std::to_string(pid);
  if (DIR* d = ::opendir((proc + "/fd").c_str())) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') s.fds++;
    ::closedir(d);
  }
  std::ifstream status(proc + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmRSS:", 0) == 0) s.rss_kib = std::strtol(line.c_str() + 6, nullptr, 10);
  std::ifstream smaps(proc + "/smaps");
  bool guest = false;
  for (std::string line; std::getline(smaps, line);) {
    unsigned long long lo, hi;
    if (std::sscanf(line.c_str(), "%llx-%llx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
      guest = hi - lo == guest_bytes;
    } else if (guest && line.rfind("Rss:", 0) == 0) {
      s.guest_kib += std::strtol(line.c_str() + 4, nullptr, 10);
    }
  }
  return s;
}

void record(Usage& u, const Sample& s) {
  long host = s.rss_kib - s.guest_kib;
  if (!u.sampled) {
    u.sampled = true;
    u.fds_at_start = u.fds_max = s.fds;
    u.rss_kib_at_start = u.rss_kib_max = s.rss_kib;
    u.host_kib_at_start = u.host_kib_max = host;
    return;
  }
  u.fds_max = std::max(u.fds_max, s.fds);
  u.rss_kib_max = std::max(u.rss_kib_max, s.rss_kib);
  u.host_kib_max = std::max(u.host_kib_max, host);
}

}  // namespace

RunResult run(const std::vector<std::string>& argv, const RunOptions& opts) {
  RunResult r;
  int in[2] = {-1, -1}, out[2], err[2];
  if (opts.stdin_open && ::pipe2(in, O_CLOEXEC) < 0) return r;
  if (::pipe2(out, O_CLOEXEC) < 0 || ::pipe2(err, O_CLOEXEC) < 0) return r;
  // Ours, with opts.env applied in order: KEY=VALUE replaces, KEY unsets.
  std::vector<std::string> env;
  for (char** e = environ; *e; e++) env.emplace_back(*e);
  for (const auto& e : opts.env) {
    std::string key = e.substr(0, e.find('='));
    std::erase_if(env, [&](const std::string& have) { return have.compare(0, key.size() + 1, key + "=") == 0; });
    if (e.find('=') != std::string::npos) env.push_back(e);
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(opts.stdin_open ? in[0] : devnull, 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    std::vector<char*> a, ev;
    for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    for (const auto& s : env) ev.push_back(const_cast<char*>(s.c_str()));
    ev.push_back(nullptr);
    ::execvpe(a[0], a.data(), ev.data());
    std::fprintf(stderr, "exec %s: %s\n", a[0], std::strerror(errno));
    _exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  if (opts.stdin_open) ::close(in[0]);
  int in_fd = opts.stdin_open ? in[1] : -1;
  size_t in_off = 0;
  if (in_fd >= 0) ::fcntl(in_fd, F_SETFL, O_NONBLOCK);
  if (in_fd >= 0 && opts.stdin_data.empty()) {
    ::close(in_fd);
    in_fd = -1;
  }
  ::signal(SIGPIPE, SIG_IGN);
  timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  bool out_open = true, err_open = true, signalled = false;
  timespec trigger = start;  // when the kill text appeared
  bool triggered = opts.kill_signal && opts.kill_after_output.empty() && opts.kill_after_stderr.empty();
  const bool slow = opts.stdout_bytes_per_10ms > 0;
  const bool watching = !opts.watch_from.empty();
  int64_t next_stdout_read = 0, next_sample = 0;
  char buf[65536];
  while (out_open || err_open) {
    int64_t tick = now_ms();
    if (watching && tick >= next_sample && (r.usage.sampled || r.err.find(opts.watch_from) != std::string::npos)) {
      record(r.usage, sample(pid, opts.guest_ram_mib << 20));
      next_sample = tick + 100;
    }
    pollfd fds[3];
    int n = 0;
    int oi = -1, ei = -1, ii = -1;
    if (out_open && tick >= next_stdout_read) { oi = n; fds[n++] = {out[0], POLLIN, 0}; }
    if (err_open) { ei = n; fds[n++] = {err[0], POLLIN, 0}; }
    if (in_fd >= 0) { ii = n; fds[n++] = {in_fd, POLLOUT, 0}; }
    int rc = ::poll(fds, static_cast<nfds_t>(n), (triggered && !signalled) || slow || watching ? 10 : 1000);
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - start.tv_sec > opts.timeout_s) {
      r.timed_out = true;
      ::kill(-pid, SIGKILL);
      break;
    }
    auto drain = [&](int idx, int fd, std::string& dst, bool& open, size_t most) {
      if (idx < 0 || !fds[idx].revents) return;
      ssize_t k = ::read(fd, buf, std::min(sizeof buf, most));
      if (k > 0) dst.append(buf, static_cast<size_t>(k));
      else if (k == 0 || errno != EINTR) open = false;
    };
    if (rc > 0) {
      drain(oi, out[0], r.out, out_open, slow ? opts.stdout_bytes_per_10ms : sizeof buf);
      if (slow && oi >= 0 && fds[oi].revents) next_stdout_read = now_ms() + 10;
      drain(ei, err[0], r.err, err_open, sizeof buf);
    }
    if (opts.kill_signal && !triggered &&
        ((!opts.kill_after_output.empty() && r.out.find(opts.kill_after_output) != std::string::npos) ||
         (!opts.kill_after_stderr.empty() && r.err.find(opts.kill_after_stderr) != std::string::npos))) {
      triggered = true;
      trigger = now;
    }
    if (triggered && !signalled &&
        (now.tv_sec - trigger.tv_sec) * 1000 + (now.tv_nsec - trigger.tv_nsec) / 1'000'000 >= opts.kill_delay_ms) {
      if (opts.on_output) opts.on_output(pid);
      ::kill(pid, opts.kill_signal);
      signalled = true;
    }
    if (rc > 0 && ii >= 0 && fds[ii].revents) {
      ssize_t k = ::write(in_fd, opts.stdin_data.data() + in_off, opts.stdin_data.size() - in_off);
      if (k > 0) in_off += static_cast<size_t>(k);
      if (k < 0 && errno != EAGAIN) in_off = opts.stdin_data.size();
      if (in_off == opts.stdin_data.size()) {
        ::close(in_fd);
        in_fd = -1;
      }
    }
  }
  if (in_fd >= 0) ::close(in_fd);
  ::close(out[0]);
  ::close(err[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

RunResult vm_run(const std::vector<std::string>& cmd, const std::vector<std::string>& extra, const RunOptions& opts) {
  std::vector<std::string> argv = {"spore-vm", "run"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back("--");
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  return run(argv, opts);
}

struct PtyRun::Modes {
  termios tio;
};

PtyRun::PtyRun(const std::vector<std::string>& argv, const std::vector<std::string>& env, unsigned short rows,
               unsigned short cols) {
  winsize ws{};
  ws.ws_row = rows;
  ws.ws_col = cols;
  if (::openpty(&master_, &slave_, nullptr, nullptr, &ws) < 0) return;
  ::fcntl(master_, F_SETFD, FD_CLOEXEC);
  ::fcntl(slave_, F_SETFD, FD_CLOEXEC);
  before_ = new Modes;
  ::tcgetattr(slave_, &before_->tio);
  std::vector<std::string> envs;
  for (char** e = environ; *e; e++) envs.emplace_back(*e);
  for (const auto& e : env) envs.push_back(e);
  pid_ = ::fork();
  if (pid_ == 0) {
    ::setsid();
    ::ioctl(slave_, TIOCSCTTY, 0);
    ::dup2(slave_, 0);
    ::dup2(slave_, 1);
    ::dup2(slave_, 2);
    std::vector<char*> a, ev;
    for (const auto& x : argv) a.push_back(const_cast<char*>(x.c_str()));
    a.push_back(nullptr);
    for (const auto& x : envs) ev.push_back(const_cast<char*>(x.c_str()));
    ev.push_back(nullptr);
    ::execvpe(a[0], a.data(), ev.data());
    _exit(127);
  }
}

PtyRun::~PtyRun() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (master_ >= 0) ::close(master_);
  if (slave_ >= 0) ::close(slave_);
  delete before_;
}

bool PtyRun::drain(int wait_ms) {
  if (master_ < 0) return false;
  pollfd p{master_, POLLIN, 0};
  if (::poll(&p, 1, wait_ms) <= 0) return true;
  char buf[4096];
  ssize_t n = ::read(master_, buf, sizeof buf);
  if (n <= 0) return false;  // EIO: every slave end is closed
  out_.append(buf, static_cast<size_t>(n));
  return true;
}

bool PtyRun::read_until(const std::string& text, int timeout_s) {
  timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  while (out_.find(text) == std::string::npos) {
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - start.tv_sec > timeout_s || !drain(200)) return out_.find(text) != std::string::npos;
  }
  return true;
}

void PtyRun::write(const std::string& bytes) {
  ssize_t n = ::write(master_, bytes.data(), bytes.size());
  (void)n;
}

void PtyRun::resize(unsigned short rows, unsigned short cols) {
  winsize ws{};
  ws.ws_row = rows;
  ws.ws_col = cols;
  ::ioctl(master_, TIOCSWINSZ, &ws);
}

int PtyRun::wait(int timeout_s) {
  timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      while (drain(0) && master_ >= 0) {
        pollfd p{master_, POLLIN, 0};
        if (::poll(&p, 1, 0) <= 0) break;
      }
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - start.tv_sec > timeout_s) return -1;
    drain(100);  // keep the terminal drained, or the program may block writing
  }
}

bool PtyRun::modes_restored() const {
  termios now;
  if (!before_ || ::tcgetattr(slave_, &now) < 0) return false;
  return now.c_iflag == before_->tio.c_iflag && now.c_oflag == before_->tio.c_oflag &&
         now.c_lflag == before_->tio.c_lflag && now.c_cflag == before_->tio.c_cflag;
}

std::vector<ThreadConfinement> thread_confinement(pid_t pid) {
  std::vector<ThreadConfinement> out;
  std::string task = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(task.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream f(task + "/" + e->d_name + "/status");
    ThreadConfinement t;
    t.tid = std::atoi(e->d_name);
    std::string line;
    while (std::getline(f, line)) {
      auto value = [&](const char* key) { return std::atoi(line.c_str() + std::strlen(key)); };
      if (line.rfind("Seccomp:", 0) == 0) t.seccomp = value("Seccomp:");
      else if (line.rfind("NoNewPrivs:", 0) == 0) t.no_new_privs = value("NoNewPrivs:");
      else if (line.rfind("Seccomp_filters:", 0) == 0) t.filters = value("Seccomp_filters:");
    }
    out.push_back(t);
  }
  ::closedir(d);
  return out;
}

std::string sha256_hex(const std::string& data) { return digest_hex(sha256(data)); }

std::string sha256_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return sha256_hex(ss.str());
}

std::string temp_dir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/spore-itest-XXXXXX";
  char* d = ::mkdtemp(tmpl.data());
  return d ? std::string(d) : std::string();
}

std::string assets_dir() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  std::string exe(buf, n > 0 ? static_cast<size_t>(n) : 0);
  return exe.substr(0, exe.rfind('/')) + "/../share/spore";
}

}  // namespace spore::itest
