#include "stub/daemon.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>

#include "base/exit_codes.h"
#include "base/files.h"
#include "base/strings.h"
#include "stub/run.h"
#include "vmm/guest.h"
#include "vmm/seccomp_policy.h"

namespace spore::stub {
namespace {

constexpr int kStatusNotRunning = 3;  // like LSB init scripts' "program is not running"
constexpr int kStartTimeoutMs = 200'000;
// A starting monitor retries the lock this often before concluding that
// another monitor holds it (probers hold it only while they clean up).
constexpr int kLockTries = 20;
constexpr int kLockRetryMs = 50;
// Connections the monitor serves at once (each has a thread). Above the
// guest agent's own session limit, so that one is what execs meet first.
constexpr size_t kMaxClients = 320;

std::string sanitize(const std::string& name) {
  std::string out;
  for (char c : name) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
  return out.empty() ? "app" : out.substr(0, 40);
}

Result<UniqueFd> connect_unix(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) return make_error(ErrorKind::kUnavailable, "socket path too long: " + path);
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("socket");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return errno_error(path);
  return fd;
}

// Reads one '\n'-terminated line (at most max bytes) within timeout_ms.
Result<std::string> read_line(int fd, size_t max, int timeout_ms) {
  std::string line;
  char c;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (line.size() < max) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
    if (left <= 0) return make_error(ErrorKind::kTimeout, "timed out waiting for the monitor");
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    ssize_t n = ::read(fd, &c, 1);  // byte at a time: nothing past the line may be consumed
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return make_error(ErrorKind::kProtocol, "the monitor closed the connection");
    if (c == '\n') return line;
    line.push_back(c);
  }
  return make_error(ErrorKind::kProtocol, "the monitor sent an over-long line");
}

std::optional<pid_t> read_pid(const std::string& path) {
  auto t = read_file(path, 64);
  if (!t.ok()) return std::nullopt;
  std::string s = *t;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  auto n = parse_u64(s);
  if (!n || *n == 0 || *n > 4194304) return std::nullopt;
  return static_cast<pid_t>(*n);
}

// Is pid our monitor? A pid file can outlive its process and the number be
// reused: the process must also be running this very program.
bool alive(pid_t pid) {
  if (::kill(pid, 0) != 0 && errno != EPERM) return false;
  char mine[4096], theirs[4096];
  ssize_t a = ::readlink("/proc/self/exe", mine, sizeof mine - 1);
  ssize_t b = ::readlink(("/proc/" + std::to_string(pid) + "/exe").c_str(), theirs, sizeof theirs - 1);
  if (a <= 0 || b <= 0) return true;  // cannot tell: assume it is
  return std::string(mine, static_cast<size_t>(a)) == std::string(theirs, static_cast<size_t>(b));
}

enum class Liveness { kRunning, kStopped, kStale };

// The monitor holds an OFD write lock on paths.lock from before it creates
// anything until it exits (the kernel drops it even on SIGKILL). That lock,
// not the pid file, says whether a monitor is there, so two concurrent
// starts cannot both serve, and nobody cleans up a monitor's files while
// it is still coming up.
bool lock_held(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return false;
  struct flock fl{};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (::fcntl(fd.get(), F_OFD_GETLK, &fl) < 0) return false;
  return fl.l_type != F_UNLCK;
}

// Takes the lock without waiting; an empty fd when someone holds it.
Result<UniqueFd> try_lock(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return errno_error(path);
  struct flock fl{};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (::fcntl(fd.get(), F_OFD_SETLK, &fl) < 0) {
    if (errno == EAGAIN || errno == EACCES) return UniqueFd();
    return errno_error("locking " + path);
  }
  return fd;
}

// Is a monitor there (its socket may still be coming up)? Cleans up the
// files of one that died, holding the lock meanwhile so that a monitor
// starting at the same moment cannot lose its socket to us.
Liveness probe(const DaemonPaths& p, pid_t* pid_out) {
  auto pid = read_pid(p.pid);
  if (pid_out) *pid_out = pid.value_or(0);
  if (lock_held(p.lock)) return Liveness::kRunning;
  auto lock = try_lock(p.lock);
  if (lock.ok() && !*lock) return Liveness::kRunning;  // taken just now
  bool had_files = pid.has_value() || ::access(p.sock.c_str(), F_OK) == 0;
  ::unlink(p.sock.c_str());
  ::unlink(p.pid.c_str());
  return had_files ? Liveness::kStale : Liveness::kStopped;
}

std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += c;
    else if (static_cast<unsigned char>(c) < 0x20) o += strfmt("\\u%04x", c);
    else o += c;
  }
  return o + "\"";
}

// From /proc/self/status, opened before the monitor was confined: procfs
// regenerates the text on every read from offset 0.
uint64_t rss_kib(int status_fd) {
  char buf[4096];
  ssize_t n = ::pread(status_fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char* pos = std::strstr(buf, "VmRSS:");
  return pos ? std::strtoull(pos + 6, nullptr, 10) : 0;
}

std::string human_duration(uint64_t s) {
  if (s < 60) return strfmt("%llus", static_cast<unsigned long long>(s));
  if (s < 3600) return strfmt("%llum%02llus", static_cast<unsigned long long>(s / 60), static_cast<unsigned long long>(s % 60));
  return strfmt("%lluh%02llum", static_cast<unsigned long long>(s / 3600), static_cast<unsigned long long>(s / 60 % 60));
}

// ---- the monitor ----

class Monitor {
 public:
  Monitor(App& app, DaemonPaths paths, std::unique_ptr<vmm::Machine> m, bool resumed)
      : app_(app), paths_(std::move(paths)), m_(std::move(m)), resumed_(resumed) {}

  Status listen();
  // Opens what serving needs, then confines this thread (kMonitor): from
  // here it opens nothing by path and starts nothing but threads.
  Status confine();
  void serve();

 private:
  void client(UniqueFd fd);
  void proxy(int a, int b);
  Result<UniqueFd> agent_connection();
  void refill_spare();
  std::string status(bool json) const;
  void request_stop() {
    uint64_t one = 1;
    ssize_t n = ::write(stop_event_.get(), &one, sizeof one);
    (void)n;
  }

  App& app_;
  DaemonPaths paths_;
  std::unique_ptr<vmm::Machine> m_;
  bool resumed_;
  UniqueFd listen_;
  UniqueFd stop_event_{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
  UniqueFd sigfd_;
  UniqueFd status_fd_;
  time_t started_ = ::time(nullptr);
  std::atomic<int> active_{0};
  std::atomic<uint64_t> served_{0};
  std::mutex mu_;
  std::set<int> client_fds_;
  size_t pending_clients_ = 0;  // accepted, thread not yet registered
  // One connection to the agent made ahead of time, so that an EXEC does
  // not wait for the vsock handshake (an idle session costs the agent
  // nothing: it waits for the request like any other).
  std::mutex spare_mu_;
  UniqueFd spare_;
  bool refilling_ = false;
};

Result<UniqueFd> Monitor::agent_connection() {
  UniqueFd fd;
  {
    std::lock_guard<std::mutex> g(spare_mu_);
    fd = std::move(spare_);
  }
  refill_spare();
  if (fd) {
    // An idle connection has nothing to read: readable means the agent
    // closed it (or broke the protocol); a fresh one is made instead.
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 0) == 0) return fd;
  }
  return m_->vsock().connect_wait(proto::kAgentPort, vmm::kAgentConnectTimeoutMs);
}

void Monitor::refill_spare() {
  {
    std::lock_guard<std::mutex> g(spare_mu_);
    if (refilling_ || spare_) return;
    refilling_ = true;
  }
  std::thread([this] {
    auto c = m_->vsock().connect_wait(proto::kAgentPort, vmm::kAgentConnectTimeoutMs);
    std::lock_guard<std::mutex> g(spare_mu_);
    refilling_ = false;
    if (c.ok()) spare_ = std::move(*c);
  }).detach();
}

Status Monitor::listen() {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::string tmp = paths_.sock + ".tmp." + std::to_string(::getpid());
  if (tmp.size() >= sizeof a.sun_path) return make_error(ErrorKind::kUnavailable, "socket path too long: " + tmp);
  std::memcpy(a.sun_path, tmp.c_str(), tmp.size() + 1);
  listen_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listen_) return errno_error("socket");
  ::unlink(tmp.c_str());
  if (::bind(listen_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return errno_error("bind " + tmp);
  ::chmod(tmp.c_str(), 0600);
  if (::listen(listen_.get(), 128) < 0) return errno_error("listen");
  // Appears under its name only when it accepts connections.
  if (::rename(tmp.c_str(), paths_.sock.c_str()) < 0) return errno_error("rename " + tmp);
  return write_file_atomic(paths_.pid, std::to_string(::getpid()) + "\n", 0644);
}

Status Monitor::confine() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGTERM);
  sigaddset(&s, SIGINT);
  sigfd_.reset(::signalfd(-1, &s, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sigfd_) return errno_error("signalfd");
  status_fd_.reset(::open("/proc/self/status", O_RDONLY | O_CLOEXEC));
  vmm::PolicyFds fds;
  fds.listen = listen_.get();
  return vmm::confine_this_thread(vmm::ThreadRole::kMonitor, fds);
}

std::string Monitor::status(bool json) const {
  uint64_t up = static_cast<uint64_t>(::time(nullptr) - started_);
  const auto& mc = m_->config();
  if (json)
    return strfmt("{\"state\":\"running\",\"app\":%s,\"pid\":%d,\"uptime_s\":%llu,\"started\":%lld,\"rss_kib\":%llu,"
                  "\"cpus\":%u,\"mem_mib\":%llu,\"resumed\":%s,\"active_execs\":%d,\"execs_served\":%llu,"
                  "\"bundle\":%s,\"socket\":%s}",
                  json_str(app_.name()).c_str(), ::getpid(), static_cast<unsigned long long>(up),
                  static_cast<long long>(started_), static_cast<unsigned long long>(rss_kib(status_fd_.get())), mc.vcpus,
                  static_cast<unsigned long long>(mc.mem_mib), resumed_ ? "true" : "false", active_.load(),
                  static_cast<unsigned long long>(served_.load()), json_str(app_.digest_hex()).c_str(),
                  json_str(paths_.sock).c_str());
  return strfmt("running, pid %d, up %s, %.1f MiB resident, %u vCPU / %llu MiB, %d exec(s) running, %llu served\n"
                "socket %s",
                ::getpid(), human_duration(up).c_str(), rss_kib(status_fd_.get()) / 1024.0, mc.vcpus,
                static_cast<unsigned long long>(mc.mem_mib), active_.load(),
                static_cast<unsigned long long>(served_.load()), paths_.sock.c_str());
}

void Monitor::proxy(int a, int b) {
  char buf[65536];
  pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
  for (;;) {
    int r = ::poll(fds, 2, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (int i = 0; i < 2; i++) {
      if (!fds[i].revents) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      if (!write_all(fds[1 - i].fd, buf, static_cast<size_t>(n)).ok()) return;
    }
  }
}

void Monitor::client(UniqueFd fd) {
  // Stacked on the monitor's filter, which this thread inherited.
  if (auto s = vmm::confine_this_thread(vmm::ThreadRole::kMonitorClient); !s.ok()) {
    std::string msg = "ERR " + s.error().message + "\n";
    (void)write_all(fd.get(), msg.data(), msg.size());
    return;
  }
  {
    std::lock_guard<std::mutex> g(mu_);
    pending_clients_--;
    client_fds_.insert(fd.get());
  }
  auto line = read_line(fd.get(), 64, 10'000);
  auto reply = [&](const std::string& s) { (void)write_all(fd.get(), s.data(), s.size()); };
  if (line.ok() && *line == "EXEC") {
    active_++;
    auto conn = agent_connection();
    if (!conn.ok()) {
      reply("ERR " + conn.error().message + "\n");
    } else {
      served_++;
      reply("OK\n");
      proxy(fd.get(), conn->get());
    }
    active_--;
  } else if (line.ok() && (*line == "STATUS JSON" || *line == "STATUS TEXT")) {
    reply(status(*line == "STATUS JSON") + "\n");
  } else if (line.ok() && *line == "STOP") {
    reply("OK\n");
    request_stop();
  } else if (line.ok()) {
    reply("ERR unknown request\n");
  }
  std::lock_guard<std::mutex> g(mu_);
  client_fds_.erase(fd.get());
}

void Monitor::serve() {
  std::string why = "stopped";
  refill_spare();
  for (;;) {
    pollfd fds[4] = {{listen_.get(), POLLIN, 0}, {stop_event_.get(), POLLIN, 0}, {sigfd_.get(), POLLIN, 0},
                     {m_->exit_fd(), POLLIN, 0}};
    if (::poll(fds, 4, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents) break;
    if (fds[2].revents) {
      why = "stopped by a signal";
      break;
    }
    if (fds[3].revents) {
      auto e = m_->exit_status();
      why = "the VM exited: " + (e ? e->message : std::string("unknown"));
      break;
    }
    if (fds[0].revents) {
      int c = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      bool full;
      {
        std::lock_guard<std::mutex> g(mu_);
        full = client_fds_.size() + pending_clients_ >= kMaxClients;
        if (!full) pending_clients_++;
      }
      if (full) {  // a thread per client, so a cap on clients
        UniqueFd refused(c);
        std::string busy = strfmt("ERR the daemon is busy: %zu clients already\n", kMaxClients);
        (void)write_all(refused.get(), busy.data(), busy.size());
        continue;
      }
      std::thread([this, c] { client(UniqueFd(c)); }).detach();
    }
  }
  // Stop taking work, end the sessions (their commands are killed by the
  // agent when the connection goes), then the VM.
  ::unlink(paths_.sock.c_str());
  listen_.reset();
  {
    std::lock_guard<std::mutex> g(mu_);
    for (int fd : client_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  for (int i = 0; i < 50 && active_ > 0; i++) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  m_->stop();
  ::unlink(paths_.pid.c_str());
  std::fprintf(stderr, "%s: monitor %d: %s\n", app_.name().c_str(), ::getpid(), why.c_str());
  std::fflush(stderr);
  _exit(0);  // detached client threads may still hold the machine: do not run destructors under them
}

int report(const App& app, const Error& e) {
  std::fprintf(stderr, "%s: %s\n", app.name().c_str(), e.message.c_str());
  return exit_code_for(e);
}

}  // namespace

Result<DaemonPaths> daemon_paths(const App& app) {
  DaemonPaths p;
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  if (xdg && *xdg) {
    p.dir = std::string(xdg) + "/spore";
  } else {
    p.dir = "/tmp/spore-" + std::to_string(::getuid());
  }
  if (::mkdir(p.dir.c_str(), 0700) < 0 && errno != EEXIST) return errno_error("mkdir " + p.dir);
  struct stat st;
  if (::lstat(p.dir.c_str(), &st) < 0) return errno_error(p.dir);
  if (!S_ISDIR(st.st_mode) || st.st_uid != ::getuid() || (st.st_mode & 077))
    return make_error(ErrorKind::kUnavailable, p.dir + " is not a private directory owned by you; refusing to use it");
  std::string base = p.dir + "/" + sanitize(app.name()) + "-" + app.digest_hex().substr(0, 12);
  p.sock = base + ".sock";
  p.pid = base + ".pid";
  p.log = base + ".log";
  p.lock = base + ".lock";
  return p;
}

int cmd_start(App& app, const Options& o) {
  auto paths = daemon_paths(app);
  if (!paths.ok()) return report(app, paths.error());
  pid_t pid = 0;
  Liveness l = probe(*paths, &pid);
  if (l == Liveness::kRunning) {
    std::fprintf(stderr, "%s: already running (pid %d)\n", app.name().c_str(), pid);
    return 0;
  }
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) < 0) return kExitSoftware;
  pid_t child = ::fork();
  if (child < 0) return kExitSoftware;
  if (child == 0) {
    // First child: a new session, then fork again so the monitor is not a
    // session leader and cannot reacquire a terminal.
    ::close(ready[0]);
    ::setsid();
    pid_t mon = ::fork();
    if (mon != 0) _exit(mon < 0 ? 1 : 0);
    ::chdir("/");
    int null = ::open("/dev/null", O_RDWR);
    int log = ::open(paths->log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    ::dup2(null, 0);
    ::dup2(log >= 0 ? log : null, 1);
    ::dup2(log >= 0 ? log : null, 2);
    ::signal(SIGHUP, SIG_IGN);
    ::signal(SIGPIPE, SIG_IGN);
    // Blocked before any thread exists, so only serve() ever sees them.
    sigset_t stop_sigs;
    sigemptyset(&stop_sigs);
    sigaddset(&stop_sigs, SIGTERM);
    sigaddset(&stop_sigs, SIGINT);
    sigprocmask(SIG_BLOCK, &stop_sigs, nullptr);
    auto tell = [&](const std::string& s) { (void)write_all(ready[1], s.data(), s.size()); };
    // The lock first, before anything of ours exists. A prober holds it
    // for microseconds while it cleans up; a monitor for good.
    UniqueFd lock;
    for (int tries = 0; !lock && tries < kLockTries; tries++) {
      auto l = try_lock(paths->lock);
      if (!l.ok()) {
        tell("ERROR " + l.error().message);
        _exit(kExitSoftware);
      }
      lock = std::move(*l);
      if (!lock) std::this_thread::sleep_for(std::chrono::milliseconds(kLockRetryMs));
    }
    if (!lock) {
      tell("RUNNING");
      _exit(0);
    }
    // Whatever a monitor that died left behind.
    ::unlink(paths->sock.c_str());
    ::unlink(paths->pid.c_str());
    MachineRequest mr;
    mr.cpus = o.cpus;
    mr.mem_mib = o.mem_mib;
    auto got = app.obtain(mr);
    if (!got.ok()) {
      tell("ERROR " + got.error().message);
      _exit(exit_code_for(got.error()));
    }
    Monitor mon_obj(app, *paths, std::move(got->machine), got->resumed);
    if (auto s = mon_obj.listen(); !s.ok()) {
      tell("ERROR " + s.error().message);
      _exit(kExitSoftware);
    }
    if (auto s = mon_obj.confine(); !s.ok()) {
      tell("ERROR " + s.error().message);
      _exit(exit_code_for(s.error()));
    }
    std::fprintf(stderr, "%s: monitor %d: serving on %s\n", app.name().c_str(), ::getpid(), paths->sock.c_str());
    std::fflush(stderr);
    tell("READY " + std::to_string(::getpid()));
    ::close(ready[1]);
    mon_obj.serve();
    _exit(0);
  }
  ::close(ready[1]);
  ::waitpid(child, nullptr, 0);
  UniqueFd rfd(ready[0]);
  std::string msg;
  char buf[4096];
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kStartTimeoutMs);
  for (;;) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
    pollfd p{rfd.get(), POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, left) <= 0) {
      std::fprintf(stderr, "%s: the monitor did not become ready (see %s)\n", app.name().c_str(), paths->log.c_str());
      return kExitTempFail;
    }
    ssize_t n = ::read(rfd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    msg.append(buf, static_cast<size_t>(n));
  }
  if (starts_with(msg, "READY ")) {
    std::fprintf(stderr, "%s: started (pid %s)\n", app.name().c_str(), msg.substr(6).c_str());
    return 0;
  }
  if (msg == "RUNNING") {  // another start won the race
    probe(*paths, &pid);
    std::fprintf(stderr, "%s: already running%s\n", app.name().c_str(),
                 pid ? (" (pid " + std::to_string(pid) + ")").c_str() : "");
    return 0;
  }
  std::fprintf(stderr, "%s: could not start: %s\n", app.name().c_str(),
               msg.empty() ? ("the monitor died (see " + paths->log + ")").c_str() : msg.substr(6).c_str());
  return kExitSoftware;
}

int cmd_exec(App& app, const Options& o) {
  auto paths = daemon_paths(app);
  if (!paths.ok()) return report(app, paths.error());
  auto req = build_request(app, o);
  if (!req.ok()) return report(app, req.error());
  UniqueFd sigfd = forwarded_signals();
  auto conn = connect_unix(paths->sock);
  if (!conn.ok()) {
    Liveness l = probe(*paths, nullptr);
    std::fprintf(stderr, "%s: not running%s; start it with '%s start'\n", app.name().c_str(),
                 l == Liveness::kStale ? " (cleaned up after a monitor that died)" : "", app.name().c_str());
    return kExitUnavailable;
  }
  std::string hello = "EXEC\n";
  if (!write_all(conn->get(), hello.data(), hello.size()).ok()) return kExitUnavailable;
  auto line = read_line(conn->get(), 4096, 60'000);
  if (!line.ok() || *line != "OK") {
    std::fprintf(stderr, "%s: the monitor refused: %s\n", app.name().c_str(),
                 line.ok() ? line->substr(line->size() > 4 ? 4 : 0).c_str() : line.error().message.c_str());
    return kExitUnavailable;
  }
  return run_session(app.name(), conn->get(), *req, o, sigfd.get(), -1);
}

int cmd_status(App& app, const Options& o) {
  auto paths = daemon_paths(app);
  if (!paths.ok()) return report(app, paths.error());
  auto conn = connect_unix(paths->sock);
  if (conn.ok()) {
    std::string req = o.json ? "STATUS JSON\n" : "STATUS TEXT\n";
    auto line = write_all(conn->get(), req.data(), req.size()).ok() ? read_line(conn->get(), 1 << 16, 10'000)
                                                                     : Result<std::string>(make_error(ErrorKind::kProtocol, "write"));
    if (line.ok()) {
      // The text form is two lines; the first came with read_line.
      std::string rest;
      if (!o.json) {
        auto second = read_line(conn->get(), 4096, 1000);
        if (second.ok()) rest = "\n" + *second;
      }
      std::printf("%s%s\n", line->c_str(), rest.c_str());
      return 0;
    }
  }
  Liveness l = probe(*paths, nullptr);
  if (l == Liveness::kRunning) {
    std::printf(o.json ? "{\"state\":\"starting\"}\n" : "starting\n");
    return 0;
  }
  if (o.json)
    std::printf("{\"state\":\"stopped\",\"stale_cleaned\":%s}\n", l == Liveness::kStale ? "true" : "false");
  else
    std::printf("stopped%s\n", l == Liveness::kStale ? " (cleaned up after a monitor that died)" : "");
  return kStatusNotRunning;
}

int cmd_stop(App& app, const Options& o) {
  auto paths = daemon_paths(app);
  if (!paths.ok()) return report(app, paths.error());
  pid_t pid = 0;
  Liveness l = probe(*paths, &pid);
  if (l != Liveness::kRunning) {
    std::fprintf(stderr, "%s: not running\n", app.name().c_str());
    return 0;
  }
  uint64_t timeout_ms = *parse_duration_ms(o.stop_timeout);
  if (auto conn = connect_unix(paths->sock); conn.ok()) {
    std::string req = "STOP\n";
    if (write_all(conn->get(), req.data(), req.size()).ok()) (void)read_line(conn->get(), 64, 5000);
  }
  // Gone when its lock is released (the kernel releases it when the
  // process ends, however it ends).
  auto wait_gone = [&](uint64_t ms) {
    for (uint64_t waited = 0; waited < ms; waited += 50) {
      if (!lock_held(paths->lock)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return !lock_held(paths->lock);
  };
  bool forced = false;
  if (!wait_gone(timeout_ms)) {
    forced = true;
    // Only a pid that is still our program: the number may have been reused.
    if (pid && alive(pid)) ::kill(pid, SIGTERM);
    if (!wait_gone(2000) && pid && alive(pid)) ::kill(pid, SIGKILL);
    wait_gone(2000);
  }
  probe(*paths, nullptr);  // removes what it left, unless a new monitor is starting already
  std::fprintf(stderr, "%s: stopped%s\n", app.name().c_str(), forced ? " (forcibly)" : "");
  return 0;
}

}  // namespace spore::stub
