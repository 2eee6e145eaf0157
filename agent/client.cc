#include "agent/client.h"

#include <poll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "base/exit_codes.h"
#include "base/fd.h"
#include "base/log.h"
#include "base/seccomp.h"
#include "base/strings.h"

namespace spore::agent {
namespace {

Error lost(const std::string& why) { return make_error(ErrorKind::kGuest, "agent connection " + why); }

int64_t mono_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000ll + ts.tv_nsec / 1'000'000;
}

}  // namespace

std::optional<std::pair<uint16_t, uint16_t>> terminal_size(int fd) {
  winsize ws{};
  if (fd < 0 || ::ioctl(fd, TIOCGWINSZ, &ws) < 0) return std::nullopt;
  return std::make_pair(ws.ws_row, ws.ws_col);
}

struct RawTerminal::Saved {
  termios tio;
};

namespace {
// The modes to put back if the process is stopped by its seccomp policy
// while the terminal is raw (base/seccomp.h); set before raw mode starts.
termios g_restore_tio;
std::atomic<int> g_restore_fd{-1};
void restore_terminal() {
  int fd = g_restore_fd.load();
  if (fd >= 0) ::tcsetattr(fd, TCSANOW, &g_restore_tio);
}
}  // namespace

RawTerminal::RawTerminal(int fd) : fd_(fd) {
  termios tio;
  if (::tcgetattr(fd, &tio) < 0) return;
  saved_ = new Saved{tio};
  g_restore_tio = tio;
  g_restore_fd = fd;
  seccomp::set_violation_hook(restore_terminal);
  cfmakeraw(&tio);
  if (::tcsetattr(fd, TCSANOW, &tio) == 0) active_ = true;
}

RawTerminal::~RawTerminal() {
  if (active_) ::tcsetattr(fd_, TCSANOW, &saved_->tio);
  g_restore_fd = -1;
  delete saved_;
}

Result<std::optional<proto::Hello>> take_hello(proto::FrameReader& reader) {
  auto f = reader.next();
  if (!f.ok()) return std::move(f).error();
  if (!*f) return std::optional<proto::Hello>();
  if ((*f)->type != static_cast<uint16_t>(proto::Type::kHello))
    return make_error(ErrorKind::kProtocol,
                      strfmt("expected HELLO from the agent, got %s", proto::type_name((*f)->type)));
  auto h = proto::decode_hello((*f)->payload);
  if (!h.ok()) return std::move(h).error();
  if (h->version != proto::kVersion)
    return make_error(ErrorKind::kProtocol,
                      strfmt("guest agent speaks protocol %u, this host speaks %u", h->version, proto::kVersion));
  return std::optional<proto::Hello>(std::move(*h));
}

Result<proto::Hello> read_hello(int fd, int timeout_ms) {
  const int64_t deadline = mono_ms() + timeout_ms;
  proto::FrameReader reader;
  char buf[4096];
  for (;;) {
    SPORE_ASSIGN_OR_RETURN(std::optional<proto::Hello> h, take_hello(reader));
    if (h) return std::move(*h);
    int64_t left = deadline - mono_ms();
    if (left <= 0) return make_error(ErrorKind::kTimeout, "timed out waiting for the agent's HELLO");
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno_error("poll");
    if (r == 0) continue;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return lost("closed before HELLO");
    reader.feed(buf, static_cast<size_t>(n));
  }
}

Result<ExecOutcome> run_exec(int conn, const proto::ExecRequest& req_in, const ExecIo& io) {
  proto::ExecRequest req = req_in;
  if (io.stdin_fd >= 0) req.flags |= proto::kExecStdin;
  SPORE_TRY(set_nonblocking(conn));

  std::string out = proto::encode_frame(proto::Type::kExec, proto::encode_exec(req));
  size_t out_off = 0;
  bool stdin_open = io.stdin_fd >= 0;
  proto::FrameReader reader;
  const bool tty = req.flags & proto::kExecTty;
  bool started = false;
  std::string buf(64 << 10, '\0');
  int64_t first_output_ns = 0;
  int64_t start_ns;
  {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    start_ns = ts.tv_sec * 1'000'000'000ll + ts.tv_nsec;
  }
  auto mark_output = [&] {
    if (first_output_ns) return;
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    first_output_ns = ts.tv_sec * 1'000'000'000ll + ts.tv_nsec;
  };

  // The host's own deadline for --timeout: the agent enforces timeout_ms, but
  // a guest that stopped its agent (or a hostile agent) must not hold us.
  const int64_t cut_off_at = req.timeout_ms ? mono_ms() + req.timeout_ms + io.timeout_grace_ms : 0;

  for (;;) {
    int wait_ms = -1;
    if (cut_off_at) {
      int64_t left = cut_off_at - mono_ms();
      if (left <= 0) {
        ExecOutcome o;
        o.cut_off = true;
        o.first_output_ns = first_output_ns;
        return o;
      }
      wait_ms = static_cast<int>(std::min<int64_t>(left, 1 << 30));
    }
    // Keep at most a few chunks of stdin queued so a command that does not
    // read its input stalls the sender instead of growing this buffer.
    bool want_stdin = stdin_open && out.size() - out_off < 4 * proto::kMaxDataChunk;
    pollfd fds[5];
    int n = 0;
    fds[n++] = {conn, static_cast<short>(POLLIN | (out_off < out.size() ? POLLOUT : 0)), 0};
    int stdin_idx = -1, sig_idx = -1, cancel_idx = -1, intr_idx = -1;
    if (want_stdin) {
      stdin_idx = n;
      fds[n++] = {io.stdin_fd, POLLIN, 0};
    }
    if (io.signal_fd >= 0) {
      sig_idx = n;
      fds[n++] = {io.signal_fd, POLLIN, 0};
    }
    if (io.cancel_fd >= 0) {
      cancel_idx = n;
      fds[n++] = {io.cancel_fd, POLLIN, 0};
    }
    if (io.interrupt_fd >= 0) {
      intr_idx = n;
      fds[n++] = {io.interrupt_fd, POLLIN, 0};
    }
    int r = ::poll(fds, static_cast<nfds_t>(n), wait_ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno_error("poll");
    }
    if (cancel_idx >= 0 && fds[cancel_idx].revents) return lost("ended: the VM exited");
    if (intr_idx >= 0 && fds[intr_idx].revents) {
      ExecOutcome o;
      o.interrupted = true;
      o.first_output_ns = first_output_ns;
      return o;
    }

    if (fds[0].revents & POLLOUT) {
      ssize_t w = ::send(conn, out.data() + out_off, out.size() - out_off, MSG_NOSIGNAL);
      if (w < 0 && errno != EAGAIN && errno != EINTR) return lost("failed: " + std::string(std::strerror(errno)));
      if (w > 0) out_off += static_cast<size_t>(w);
      if (out_off == out.size()) {
        out.clear();
        out_off = 0;
      }
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t k = ::read(conn, buf.data(), buf.size());
      if (k < 0 && errno != EAGAIN && errno != EINTR) return lost("failed: " + std::string(std::strerror(errno)));
      if (k == 0) return lost("closed before the command's exit status arrived");
      if (k > 0) reader.feed(buf.data(), static_cast<size_t>(k));
      for (;;) {
        auto f = reader.next();
        if (!f.ok()) return std::move(f).error();
        if (!*f) break;
        const proto::Frame& fr = **f;
        auto type = static_cast<proto::Type>(fr.type);
        auto unexpected = [&](const char* why) {
          return make_error(ErrorKind::kProtocol,
                            strfmt("unexpected %s frame from the agent (%s)", proto::type_name(fr.type), why));
        };
        // STARTED or ERROR answers EXEC; output and EXIT only follow STARTED.
        if (!started && type != proto::Type::kStarted && type != proto::Type::kError)
          return unexpected("before STARTED");
        switch (type) {
          case proto::Type::kStarted: {
            if (started) return unexpected("a second one");
            auto pid = proto::decode_started(fr.payload);
            if (!pid.ok()) return std::move(pid).error();
            started = true;
            if (log_level() >= LogLevel::kInfo) {
              timespec ts;
              clock_gettime(CLOCK_MONOTONIC, &ts);
              LOG_INFO("agent started the command at %.1f ms", (ts.tv_sec * 1e9 + ts.tv_nsec - start_ns) / 1e6);
            }
            break;
          }
          case proto::Type::kStdout:
          case proto::Type::kStderr: {
            if (fr.payload.size() > proto::kMaxDataChunk) return unexpected("larger than 64 KiB");
            bool err = type == proto::Type::kStderr;
            if (err && tty) return unexpected("a terminal session has no separate stderr");
            mark_output();
            SPORE_TRY(write_all(err ? io.stderr_fd : io.stdout_fd, fr.payload.data(), fr.payload.size()));
            break;
          }
          case proto::Type::kExit: {
            auto e = proto::decode_exit(fr.payload);
            if (!e.ok()) return std::move(e).error();
            ExecOutcome o;
            o.exit = *e;
            o.first_output_ns = first_output_ns;
            return o;
          }
          case proto::Type::kError: {
            auto e = proto::decode_error(fr.payload);
            if (!e.ok()) return std::move(e).error();
            ExecOutcome o;
            o.refused = *e;
            return o;
          }
          default:
            return unexpected("not one the agent sends in a session");
        }
      }
    }
    if (stdin_idx >= 0 && fds[stdin_idx].revents) {
      ssize_t k = ::read(io.stdin_fd, buf.data(), proto::kMaxDataChunk);
      if (k < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (k <= 0) {
        out += proto::encode_frame(proto::Type::kStdinClose, {});
        stdin_open = false;
      } else {
        out += proto::encode_frame(proto::Type::kStdin, std::string_view(buf.data(), static_cast<size_t>(k)));
      }
    }
    if (sig_idx >= 0 && fds[sig_idx].revents) {
      signalfd_siginfo si;
      if (::read(io.signal_fd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGWINCH) {
          if (auto sz = terminal_size(io.tty_fd))
            out += proto::encode_frame(proto::Type::kResize, proto::encode_resize(sz->first, sz->second));
        } else {
          out += proto::encode_frame(proto::Type::kSignal, proto::encode_signal(si.ssi_signo));
        }
      }
    }
  }
}

Result<ExecOutcome> run_exec_attached(int conn, proto::ExecRequest req, ExecIo io, bool interactive, bool tty) {
  if (interactive) io.stdin_fd = STDIN_FILENO;
  std::unique_ptr<RawTerminal> raw;
  if (tty) {
    req.flags |= proto::kExecTty;
    io.tty_fd = STDIN_FILENO;
    if (auto sz = terminal_size(STDIN_FILENO)) {
      req.rows = sz->first;
      req.cols = sz->second;
    }
    if (interactive && ::isatty(STDIN_FILENO)) raw = std::make_unique<RawTerminal>(STDIN_FILENO);
  }
  return run_exec(conn, req, io);
}

int session_exit_status(const Result<ExecOutcome>& outcome, const std::string& prefix, const std::string& timeout) {
  if (!outcome.ok()) {
    std::fprintf(stderr, "%s: %s\n", prefix.c_str(), outcome.error().message.c_str());
    return exit_code_for(outcome.error());
  }
  if (outcome->refused) {
    const auto& r = *outcome->refused;
    std::fprintf(stderr, "%s: %s\n", prefix.c_str(), r.message.c_str());
    switch (r.code) {
      case proto::ErrorCode::kNotFound: return kExitNotFound;
      case proto::ErrorCode::kNotExecutable:
      case proto::ErrorCode::kStartFailed: return kExitCannotRun;
      default: return kExitProtocol;
    }
  }
  if (outcome->cut_off) {
    std::fprintf(stderr, "%s: command timed out after %s, and the guest did not end it within %d s more: "
                 "the host ended the session\n", prefix.c_str(), timeout.c_str(), kHostTimeoutGraceMs / 1000);
    return kExitTimeout;
  }
  if (!outcome->exit) return kExitSoftware;  // interrupted: the caller decides
  if (outcome->exit->reason == proto::ExitReason::kTimedOut) {
    std::fprintf(stderr, "%s: command timed out after %s\n", prefix.c_str(), timeout.c_str());
    return kExitTimeout;
  }
  return outcome->exit->status;
}

UniqueFd block_forwarded_signals() {
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH}) sigaddset(&sigs, s);
  sigprocmask(SIG_BLOCK, &sigs, nullptr);
  return UniqueFd(::signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK));
}

}  // namespace spore::agent
