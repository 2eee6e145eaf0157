// Host side of the agent protocol: runs one exec session over a connected
// stream, pumping stdin, stdout, stderr and signals until the exit status.
// Shared by spore-vm and the stub.
#pragma once

#include <optional>

#include "agent/protocol.h"
#include "base/fd.h"
#include "base/result.h"

namespace spore::agent {

// How long after a request's timeout_ms the host waits for the agent to
// report the command's end before it ends the session itself: the host's own
// enforcement of --timeout, for a guest that cannot or will not stop the
// command (doc/agent-protocol.md).
inline constexpr int kHostTimeoutGraceMs = 5000;

struct ExecIo {
  int stdin_fd = -1;   // forwarded when >= 0 (then set kExecStdin)
  int stdout_fd = 1;
  int stderr_fd = 2;
  int signal_fd = -1;  // signalfd: SIGWINCH becomes RESIZE, the rest SIGNAL
  int cancel_fd = -1;  // becomes readable when the session must end (the VM exited)
  int interrupt_fd = -1;  // becomes readable to stop pumping and return (the session stays open)
  int tty_fd = -1;     // terminal whose size RESIZE reports
  int timeout_grace_ms = kHostTimeoutGraceMs;  // see run_exec
};

struct ExecOutcome {
  std::optional<proto::ExitStatus> exit;      // the command ran and ended
  std::optional<proto::ErrorReply> refused;   // the agent could not run it
  int64_t first_output_ns = 0;                // CLOCK_MONOTONIC of the first output byte
  bool interrupted = false;                   // interrupt_fd fired before the command ended
  bool cut_off = false;                       // the request's timeout plus kHostTimeoutGraceMs passed first
};

// Runs req on conn (a connected stream to the agent's exec port). Errors mean
// the session itself failed (connection lost, protocol violation, cancelled).
// With req.timeout_ms, returns with cut_off once the timeout plus
// io.timeout_grace_ms has passed since the request went out without the
// command's end (EXIT) having arrived.
Result<ExecOutcome> run_exec(int conn, const proto::ExecRequest& req, const ExecIo& io);

// run_exec with this process's terminal handled: stdin forwarded when
// interactive; with tty, the request asks for a pty of this terminal's size
// and the terminal is in raw mode for the session.
Result<ExecOutcome> run_exec_attached(int conn, proto::ExecRequest req, ExecIo io, bool interactive, bool tty);

// The exit status a launcher reports for a session: the command's own, or
// one of base/exit_codes.h after printing "<prefix>: <why>" on stderr.
// timeout is how the user wrote --timeout (for the message).
int session_exit_status(const Result<ExecOutcome>& outcome, const std::string& prefix, const std::string& timeout);

// Blocks the signals a launcher forwards to the guest command (INT, TERM,
// HUP, QUIT, WINCH) before any thread starts, and returns a signalfd for them.
UniqueFd block_forwarded_signals();

// Reads the agent's HELLO from a connection to the ready port, within
// timeout_ms in all (a peer trickling bytes does not extend it).
Result<proto::Hello> read_hello(int fd, int timeout_ms);
// The HELLO once reader holds a whole frame; nothing while bytes are missing.
// Anything else first, or a HELLO of another version, is a protocol error.
Result<std::optional<proto::Hello>> take_hello(proto::FrameReader& reader);

// Terminal size of fd, or nothing if it is not a terminal.
std::optional<std::pair<uint16_t, uint16_t>> terminal_size(int fd);

// Puts a terminal in raw mode for the lifetime of the object.
class RawTerminal {
 public:
  explicit RawTerminal(int fd);
  ~RawTerminal();
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  int fd_;
  bool active_ = false;
  struct Saved;
  Saved* saved_ = nullptr;
};

}  // namespace spore::agent
