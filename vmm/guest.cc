#include "vmm/guest.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <chrono>

#include "base/log.h"
#include "base/strings.h"

namespace spore::vmm {
namespace {
constexpr size_t kConsoleKeep = 16 << 10;

std::string signal_name(uint32_t signo) {
  switch (signo) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    case SIGQUIT: return "SIGQUIT";
    default: return strfmt("signal %u", signo);
  }
}

}  // namespace

void ConsoleLog::write(const char* data, size_t len) {
  if (echo_) {
    ssize_t n = ::write(STDERR_FILENO, data, len);
    (void)n;
  }
  std::lock_guard<std::mutex> g(mu_);
  buf_.append(data, len);
  if (buf_.size() > 2 * kConsoleKeep) buf_.erase(0, buf_.size() - kConsoleKeep);
}

std::string ConsoleLog::tail(size_t max_lines) const {
  std::lock_guard<std::mutex> g(mu_);
  std::string s = buf_;
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  size_t pos = s.size(), lines = 0;
  while (pos > 0 && lines < max_lines) {
    size_t nl = s.rfind('\n', pos - 1);
    lines++;
    if (nl == std::string::npos) {
      pos = 0;
      break;
    }
    pos = nl;
  }
  std::string out = s.substr(pos == 0 ? 0 : pos + 1);
  std::string clean;
  for (char c : out)
    if (c != '\r') clean.push_back(c);
  return clean;
}

std::string ConsoleLog::report_tail(size_t max_lines) const {
  std::string text = tail(max_lines), out;
  if (text.empty()) return out;
  for (const auto& line : split(text, '\n')) out += "  | " + line + "\n";
  return out;
}

Result<std::unique_ptr<AgentReady>> AgentReady::listen(Machine& m) {
  std::unique_ptr<AgentReady> r(new AgentReady(m));
  r->event_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!r->event_) return errno_error("eventfd");
  AgentReady* self = r.get();
  // Once: the first connection is the agent's (it is the guest's first
  // process); anything later is refused, so guest programs connecting to
  // the port cannot make us hold host fds.
  m.vsock().listen(
      proto::kReadyPort,
      [self](UniqueFd fd, uint32_t) {
        {
          std::lock_guard<std::mutex> g(self->mu_);
          self->accepted_ = std::move(fd);
        }
        uint64_t one = 1;
        ssize_t n = ::write(self->event_.get(), &one, sizeof one);
        (void)n;
      },
      /*once=*/true);
  return r;
}

// The callback points at this object: it must be gone (or never run again)
// before we are.
AgentReady::~AgentReady() { m_.vsock().unlisten(proto::kReadyPort); }

Result<proto::Hello> AgentReady::wait(int timeout_ms, int sig_fd) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  UniqueFd conn;
  proto::FrameReader reader;
  char buf[4096];
  for (;;) {
    if (!conn) {
      std::lock_guard<std::mutex> g(mu_);
      conn = std::move(accepted_);
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return make_error(ErrorKind::kTimeout,
                        strfmt("the guest agent did not report ready within %d s", timeout_ms / 1000));
    // Before the connection: its eventfd; after: the connection itself.
    pollfd fds[3] = {{conn ? conn.get() : event_.get(), POLLIN, 0}, {m_.exit_fd(), POLLIN, 0}, {sig_fd, POLLIN, 0}};
    int r = ::poll(fds, sig_fd >= 0 ? 3 : 2, static_cast<int>(left.count()));
    if (r < 0 && errno != EINTR) return errno_error("poll");
    if (r <= 0) continue;
    if (fds[1].revents) {
      auto e = m_.exit_status();
      return make_error(ErrorKind::kGuest, "the guest stopped before its agent was ready (" +
                                               (e ? e->message : std::string("unknown reason")) + ")");
    }
    if (sig_fd >= 0 && fds[2].revents) {
      signalfd_siginfo si;
      if (::read(sig_fd, &si, sizeof si) == sizeof si && si.ssi_signo != SIGWINCH)
        return make_error(ErrorKind::kInterrupted,
                          "interrupted by " + signal_name(si.ssi_signo) + " while the guest was booting");
      continue;
    }
    if (!fds[0].revents) continue;
    if (!conn) {
      uint64_t v;
      ssize_t n = ::read(event_.get(), &v, sizeof v);
      (void)n;
      continue;
    }
    ssize_t n = ::read(conn.get(), buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return make_error(ErrorKind::kGuest, "the guest agent closed its ready connection before HELLO");
    reader.feed(buf, static_cast<size_t>(n));
    SPORE_ASSIGN_OR_RETURN(std::optional<proto::Hello> hello, agent::take_hello(reader));
    if (hello) return std::move(*hello);
  }
}

Result<agent::ExecOutcome> exec_in_guest(Machine& m, const proto::ExecRequest& req, agent::ExecIo io) {
  auto t0 = std::chrono::steady_clock::now();
  auto conn = m.vsock().connect_wait(proto::kAgentPort, kAgentConnectTimeoutMs);
  LOG_INFO("vsock connect to the agent took %.1f ms",
           std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  if (!conn.ok()) return std::move(conn).error().wrap("connecting to the guest agent");
  io.cancel_fd = m.exit_fd();
  return agent::run_exec(conn->get(), req, io);
}

}  // namespace spore::vmm
