#include "agent/server.h"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <list>
#include <memory>
#include <vector>

#include "agent/generation.h"
#include "agent/process.h"
#include "agent/protocol.h"
#include "base/fd.h"
#include "base/log.h"
#include "base/strings.h"

namespace spore::agent {
namespace {

constexpr size_t kMaxSessions = 256;
// Output queued for the host per session before we stop reading the child.
constexpr size_t kOutCap = 1 << 20;
// Output read after the command exited, per stream: what it wrote before
// exiting fits in its pipe (at most pipe-max-size, 1 MiB by default); more
// comes from processes it left behind, which the exit does not wait for.
constexpr size_t kDrainCap = 1 << 20;
// Input queued for the child before we stop reading the host.
constexpr size_t kStdinCap = 1 << 20;

int64_t now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1'000'000;
}

struct Session {
  UniqueFd conn;
  proto::FrameReader reader;
  std::string out;
  size_t out_off = 0;
  bool started = false;
  Child child;
  std::string stdin_buf;
  bool stdin_expected = false;  // EXEC had the STDIN flag
  bool stdin_closed = false;    // STDIN_CLOSE arrived
  bool stdin_close_pending = false;
  bool tty = false;
  bool exited = false;
  int wait_status = 0;
  bool timed_out = false;
  int64_t deadline_ms = 0;  // 0: none
  bool closing = false;     // final frame queued: close once flushed
  bool host_gone = false;

  size_t pending_out() const { return out.size() - out_off; }
  void send(proto::Type t, std::string_view payload) { out += proto::encode_frame(t, payload); }
};

class Server {
 public:
  explicit Server(const ServerOptions& o) : opts_(o) {}
  Status run();

 private:
  void accept_one();
  void on_conn_readable(Session& s);
  void on_frame(Session& s, const proto::Frame& f);
  void start(Session& s, const proto::ExecRequest& req);
  void refuse(Session& s, proto::ErrorCode code, const std::string& msg);
  void bad_frame(Session& s, const std::string& msg);
  void pump_output(Session& s, int fd, proto::Type type, bool drain);
  void flush_stdin(Session& s);
  void flush_out(Session& s);
  void reap();
  void finish_if_done(Session& s);
  void signal_child(Session& s, int signo);

  ServerOptions opts_;
  UniqueFd sigfd_;
  std::list<std::unique_ptr<Session>> sessions_;
};

void Server::refuse(Session& s, proto::ErrorCode code, const std::string& msg) {
  proto::ErrorReply e{code, msg};
  s.send(proto::Type::kError, proto::encode_error(e));
  s.closing = true;
}

// A broken frame mid-session: the stream cannot be trusted any more, so the
// session ends with ERROR and its command is killed.
void Server::bad_frame(Session& s, const std::string& msg) {
  refuse(s, proto::ErrorCode::kBadFrame, msg);
  signal_child(s, SIGKILL);
}

void Server::signal_child(Session& s, int signo) {
  if (s.child.pid <= 0 || s.exited) return;
  pid_t target = -s.child.pid;  // the command's process group
  if (s.tty && s.child.pty) {
    pid_t fg = -1;
    if (::ioctl(s.child.pty.get(), TIOCGPGRP, &fg) == 0 && fg > 0) target = -fg;
  }
  ::kill(target, signo);
}

void Server::start(Session& s, const proto::ExecRequest& req) {
  SpawnContext ctx;
  ctx.hostname = opts_.hostname;
  if (Generation* g = opts_.generation) {
    g->refresh();
    ctx.hostname = g->hostname();
    ctx.extra_env = g->environment();
  }
  SpawnError err;
  auto child = spawn(req, ctx, &err);
  if (!child.ok()) {
    refuse(s, err.code, err.message);
    return;
  }
  s.child = std::move(*child);
  s.started = true;
  s.tty = req.flags & proto::kExecTty;
  s.stdin_expected = req.flags & proto::kExecStdin;
  if (req.timeout_ms) s.deadline_ms = now_ms() + req.timeout_ms;
  for (int fd : {s.child.stdin_w.get(), s.child.stdout_r.get(), s.child.stderr_r.get()})
    if (fd >= 0) (void)set_nonblocking(fd);
  s.send(proto::Type::kStarted, proto::encode_started(static_cast<uint32_t>(s.child.pid)));
}

void Server::on_frame(Session& s, const proto::Frame& f) {
  auto type = static_cast<proto::Type>(f.type);
  if (!s.started) {
    if (type != proto::Type::kExec) {
      refuse(s, proto::ErrorCode::kBadRequest,
             strfmt("the first frame must be EXEC, not %s", proto::type_name(f.type)));
      return;
    }
    auto req = proto::decode_exec(f.payload);
    if (!req.ok()) {
      bool version = req.error().message.find("version") != std::string::npos;
      refuse(s, version ? proto::ErrorCode::kUnsupportedVersion : proto::ErrorCode::kBadFrame,
             req.error().message);
      return;
    }
    if (req->flags & ~proto::kExecKnownFlags) {
      refuse(s, proto::ErrorCode::kBadRequest, strfmt("unknown EXEC flags 0x%x", req->flags));
      return;
    }
    start(s, *req);
    return;
  }
  // After STARTED: anything the host may not send now, or a payload that
  // does not decode, is BAD_FRAME (doc/agent-protocol.md lists every case).
  switch (type) {
    case proto::Type::kStdin:
      if (!s.stdin_expected) return bad_frame(s, "STDIN, but EXEC did not set the STDIN flag");
      if (s.stdin_closed) return bad_frame(s, "STDIN after STDIN_CLOSE");
      if (f.payload.size() > proto::kMaxDataChunk) return bad_frame(s, "STDIN chunk too large");
      if (s.child.stdin_w) s.stdin_buf += f.payload;
      flush_stdin(s);
      return;
    case proto::Type::kStdinClose:
      if (!f.payload.empty()) return bad_frame(s, "STDIN_CLOSE with a payload");
      if (!s.stdin_expected) return bad_frame(s, "STDIN_CLOSE, but EXEC did not set the STDIN flag");
      if (s.stdin_closed) return bad_frame(s, "a second STDIN_CLOSE");
      s.stdin_closed = true;
      s.stdin_close_pending = true;
      flush_stdin(s);
      return;
    case proto::Type::kSignal: {
      auto sig = proto::decode_signal(f.payload);
      if (!sig.ok()) return bad_frame(s, sig.error().message);
      signal_child(s, static_cast<int>(*sig));
      return;
    }
    case proto::Type::kResize: {
      auto sz = proto::decode_resize(f.payload);
      if (!sz.ok()) return bad_frame(s, sz.error().message);
      if (!s.tty) return bad_frame(s, "RESIZE, but EXEC did not set the TTY flag");
      if (s.child.pty) {
        winsize ws{sz->first, sz->second, 0, 0};
        ::ioctl(s.child.pty.get(), TIOCSWINSZ, &ws);
      }
      return;
    }
    default:
      return bad_frame(s, strfmt("unexpected %s frame", proto::type_name(f.type)));
  }
}

void Server::on_conn_readable(Session& s) {
  char buf[64 << 10];
  ssize_t n = ::read(s.conn.get(), buf, sizeof buf);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    n = 0;
  }
  if (n == 0) {
    // The host went away: nobody will read the output, end the command.
    s.host_gone = true;
    s.closing = true;
    signal_child(s, SIGKILL);
    return;
  }
  s.reader.feed(buf, static_cast<size_t>(n));
  while (!s.closing) {
    auto f = s.reader.next();
    if (!f.ok()) return bad_frame(s, f.error().message);
    if (!*f) break;
    on_frame(s, **f);
  }
}

void Server::flush_stdin(Session& s) {
  if (!s.child.stdin_w) {
    s.stdin_buf.clear();
    return;
  }
  while (!s.stdin_buf.empty()) {
    ssize_t n = ::write(s.child.stdin_w.get(), s.stdin_buf.data(), s.stdin_buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      s.stdin_buf.clear();  // EPIPE: the command stopped reading
      break;
    }
    s.stdin_buf.erase(0, static_cast<size_t>(n));
  }
  if (s.stdin_close_pending) {
    if (s.tty) {
      char eot = 4;  // a terminal signals end of input with ^D, not by closing
      ssize_t n = ::write(s.child.stdin_w.get(), &eot, 1);
      (void)n;
    }
    s.child.stdin_w.reset();
    s.stdin_close_pending = false;
  }
}

void Server::pump_output(Session& s, int fd, proto::Type type, bool drain) {
  char buf[proto::kMaxDataChunk];
  size_t drained = 0;
  while (drain ? drained < kDrainCap : s.pending_out() < kOutCap) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // EOF, or EIO from a pty whose other side closed: this stream is done.
      if (n == 0 || (n < 0 && errno != EAGAIN)) {
        if (fd == s.child.stdout_r.get()) {
          s.child.stdout_r.reset();
          s.child.pty.reset();
        } else if (fd == s.child.stderr_r.get()) {
          s.child.stderr_r.reset();
        }
      }
      return;
    }
    drained += static_cast<size_t>(n);
    if (!s.host_gone) s.send(type, std::string_view(buf, static_cast<size_t>(n)));
  }
}

void Server::flush_out(Session& s) {
  while (s.pending_out() > 0) {
    ssize_t n = ::send(s.conn.get(), s.out.data() + s.out_off, s.pending_out(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      s.host_gone = true;
      s.closing = true;
      s.out.clear();
      s.out_off = 0;
      signal_child(s, SIGKILL);
      return;
    }
    s.out_off += static_cast<size_t>(n);
  }
  if (s.out_off == s.out.size()) {
    s.out.clear();
    s.out_off = 0;
  } else if (s.out_off > (1 << 20)) {
    s.out.erase(0, s.out_off);
    s.out_off = 0;
  }
}

void Server::finish_if_done(Session& s) {
  if (!s.started || !s.exited || s.closing) return;
  // Whatever the command wrote before it exited is already in the pipes.
  if (s.child.stdout_r) pump_output(s, s.child.stdout_r.get(), proto::Type::kStdout, true);
  if (s.child.stderr_r) pump_output(s, s.child.stderr_r.get(), proto::Type::kStderr, true);
  proto::ExitStatus e;
  if (WIFSIGNALED(s.wait_status)) {
    int sig = WTERMSIG(s.wait_status);
    e.status = static_cast<uint8_t>(128 + sig);
    e.reason = proto::ExitReason::kSignaled;
    e.signal = static_cast<uint8_t>(sig);
  } else {
    e.status = static_cast<uint8_t>(WEXITSTATUS(s.wait_status));
  }
  if (s.timed_out) e.reason = proto::ExitReason::kTimedOut;
  s.send(proto::Type::kExit, proto::encode_exit(e));
  s.closing = true;
  s.child.stdout_r.reset();
  s.child.stderr_r.reset();
  s.child.stdin_w.reset();
  s.child.pty.reset();
}

void Server::reap() {
  signalfd_siginfo si;
  while (::read(sigfd_.get(), &si, sizeof si) == sizeof si) {
  }
  for (;;) {
    int st;
    pid_t pid = ::waitpid(-1, &st, WNOHANG);
    if (pid <= 0) break;
    for (auto& s : sessions_) {
      if (s->child.pid == pid && !s->exited) {
        s->exited = true;
        s->wait_status = st;
        finish_if_done(*s);
      }
    }
  }
}

void Server::accept_one() {
  int fd = ::accept4(opts_.listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) return;
  auto s = std::make_unique<Session>();
  s->conn.reset(fd);
  if (sessions_.size() >= kMaxSessions) refuse(*s, proto::ErrorCode::kBusy, "too many concurrent sessions");
  sessions_.push_back(std::move(s));
}

Status Server::run() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  sigfd_.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sigfd_) return errno_error("signalfd");

  std::vector<pollfd> fds;
  std::vector<std::pair<Session*, int>> owners;  // which session and stream each pollfd serves
  enum { kConn, kStdin, kStdout, kStderr };
  for (;;) {
    fds.clear();
    owners.clear();
    fds.push_back({opts_.listen_fd, POLLIN, 0});
    owners.push_back({nullptr, 0});
    fds.push_back({sigfd_.get(), POLLIN, 0});
    owners.push_back({nullptr, 0});
    if (opts_.generation) {
      fds.push_back({opts_.generation->fd(), POLLIN, 0});
      owners.push_back({nullptr, 0});
    }
    const size_t first_session = fds.size();
    int64_t now = now_ms();
    int timeout = -1;
    for (auto& sp : sessions_) {
      Session& s = *sp;
      if (s.deadline_ms && !s.exited && !s.timed_out) {
        if (now >= s.deadline_ms) {
          s.timed_out = true;
          signal_child(s, SIGKILL);
        } else {
          int64_t left = s.deadline_ms - now;
          if (timeout < 0 || left < timeout) timeout = static_cast<int>(left);
        }
      }
      short ev = 0;
      if (!s.closing && s.stdin_buf.size() < kStdinCap) ev |= POLLIN;
      if (s.pending_out()) ev |= POLLOUT;
      fds.push_back({s.conn.get(), ev, 0});
      owners.push_back({&s, kConn});
      bool room = s.pending_out() < kOutCap && !s.closing;
      if (s.child.stdout_r && room) {
        fds.push_back({s.child.stdout_r.get(), POLLIN, 0});
        owners.push_back({&s, kStdout});
      }
      if (s.child.stderr_r && room) {
        fds.push_back({s.child.stderr_r.get(), POLLIN, 0});
        owners.push_back({&s, kStderr});
      }
      if (s.child.stdin_w && !s.stdin_buf.empty()) {
        fds.push_back({s.child.stdin_w.get(), POLLOUT, 0});
        owners.push_back({&s, kStdin});
      }
    }
    int r = ::poll(fds.data(), fds.size(), timeout);
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno_error("poll");
    }
    if (opts_.generation && fds[2].revents) opts_.generation->on_interrupt();
    for (size_t i = first_session; i < fds.size(); i++) {
      if (!fds[i].revents) continue;
      Session& s = *owners[i].first;
      switch (owners[i].second) {
        case kConn:
          if (fds[i].revents & POLLOUT) flush_out(s);
          if (fds[i].revents & (POLLIN | POLLHUP | POLLERR) && !s.closing) on_conn_readable(s);
          break;
        case kStdout:
          if (s.child.stdout_r) pump_output(s, s.child.stdout_r.get(), proto::Type::kStdout, false);
          break;
        case kStderr:
          if (s.child.stderr_r) pump_output(s, s.child.stderr_r.get(), proto::Type::kStderr, false);
          break;
        case kStdin:
          flush_stdin(s);
          break;
      }
    }
    if (fds[1].revents) reap();
    if (fds[0].revents) accept_one();
    // Send what is queued, and retire sessions that are finished.
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      Session& s = **it;
      if (s.pending_out() && !s.host_gone) flush_out(s);
      bool child_done = !s.started || s.exited;
      if (s.closing && child_done && (s.pending_out() == 0 || s.host_gone)) {
        ::shutdown(s.conn.get(), SHUT_RDWR);
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
  }
}

}  // namespace

Status serve(const ServerOptions& opts) { return Server(opts).run(); }

}  // namespace spore::agent
