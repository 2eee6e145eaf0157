// The agent protocol: framed, versioned messages between the host (spore-vm,
// the stub) and the guest agent over a vsock stream. doc/agent-protocol.md is
// the byte-level reference; keep the two in step.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/codec.h"
#include "base/result.h"

namespace spore::proto {

using spore::Decoder;
using spore::Encoder;

inline constexpr uint16_t kVersion = 1;
inline constexpr uint32_t kAgentPort = 1024;  // guest listens: exec sessions
inline constexpr uint32_t kReadyPort = 1025;  // host listens: agent says hello
inline constexpr size_t kHeaderSize = 8;
inline constexpr uint32_t kMaxPayload = 1u << 20;
inline constexpr uint32_t kMaxDataChunk = 64u << 10;  // STDIN/STDOUT/STDERR payloads

enum class Type : uint16_t {
  // host -> agent
  kExec = 0x01,
  kStdin = 0x02,
  kStdinClose = 0x03,
  kSignal = 0x04,
  kResize = 0x05,
  // agent -> host
  kStarted = 0x81,
  kStdout = 0x82,
  kStderr = 0x83,
  kExit = 0x84,
  kError = 0x85,
  kHello = 0x86,
};

const char* type_name(uint16_t type);

// kExec flags
inline constexpr uint32_t kExecTty = 1u << 0;    // run on a pty; output arrives as kStdout only
inline constexpr uint32_t kExecStdin = 1u << 1;  // host will send kStdin; else stdin is /dev/null
inline constexpr uint32_t kExecKnownFlags = kExecTty | kExecStdin;

struct ExecRequest {
  uint16_t version = kVersion;
  uint32_t flags = 0;
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "KEY=VALUE", applied over the agent's defaults
  std::string cwd;               // empty: the user's home, else "/"
  std::string user;              // empty: root; "name", "uid", "name:group", "uid:gid"
  uint16_t rows = 0, cols = 0;   // initial pty size when kExecTty
  uint32_t timeout_ms = 0;       // 0: none; else the agent kills the process group
};

enum class ExitReason : uint8_t { kExited = 0, kSignaled = 1, kTimedOut = 2 };

struct ExitStatus {
  uint8_t status = 0;  // shell convention: exit code, or 128+signal
  ExitReason reason = ExitReason::kExited;
  uint8_t signal = 0;
};

enum class ErrorCode : uint32_t {
  kBadFrame = 1,            // framing or encoding is wrong
  kUnsupportedVersion = 2,  // ExecRequest.version is not one the agent speaks
  kBadRequest = 3,          // well-formed but invalid (empty argv, bad flags)
  kNotFound = 4,            // the command does not exist (exit 127)
  kNotExecutable = 5,       // exists but cannot be executed (exit 126)
  kStartFailed = 6,         // user, cwd, pty or fork failed (exit 126)
  kBusy = 7,                // session limit reached
};

struct ErrorReply {
  ErrorCode code = ErrorCode::kBadFrame;
  std::string message;
};

struct Hello {
  uint16_t version = kVersion;
  std::string agent_version;
  uint64_t uptime_ms = 0;  // guest CLOCK_BOOTTIME when ready
};

struct Frame {
  uint16_t type = 0;
  std::string payload;
};

// Frame = header (u32 payload length, u16 type, u16 reserved=0) + payload.
std::string encode_frame(Type type, std::string_view payload);

std::string encode_exec(const ExecRequest& r);
std::string encode_exit(const ExitStatus& s);
std::string encode_error(const ErrorReply& e);
std::string encode_hello(const Hello& h);
std::string encode_signal(uint32_t signo);
std::string encode_resize(uint16_t rows, uint16_t cols);
std::string encode_started(uint32_t pid);

Result<ExecRequest> decode_exec(std::string_view payload);
Result<ExitStatus> decode_exit(std::string_view payload);
Result<ErrorReply> decode_error(std::string_view payload);
Result<Hello> decode_hello(std::string_view payload);
Result<uint32_t> decode_signal(std::string_view payload);
Result<std::pair<uint16_t, uint16_t>> decode_resize(std::string_view payload);
Result<uint32_t> decode_started(std::string_view payload);

// Incremental frame parser for a byte stream. Feed bytes, then pop frames.
// A bad header puts it in a failed state for good: the stream cannot be
// resynchronised, so the connection must end.
class FrameReader {
 public:
  void feed(const void* data, size_t len);
  // The next complete frame, nothing if more bytes are needed, or an error.
  Result<std::optional<Frame>> next();
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  std::string buf_;
  size_t pos_ = 0;
  bool failed_ = false;
};

}  // namespace spore::proto
