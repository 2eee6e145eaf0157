#include "agent/protocol.h"

#include <cstring>

#include "base/strings.h"

namespace spore::proto {

const char* type_name(uint16_t type) {
  switch (static_cast<Type>(type)) {
    case Type::kExec: return "EXEC";
    case Type::kStdin: return "STDIN";
    case Type::kStdinClose: return "STDIN_CLOSE";
    case Type::kSignal: return "SIGNAL";
    case Type::kResize: return "RESIZE";
    case Type::kStarted: return "STARTED";
    case Type::kStdout: return "STDOUT";
    case Type::kStderr: return "STDERR";
    case Type::kExit: return "EXIT";
    case Type::kError: return "ERROR";
    case Type::kHello: return "HELLO";
  }
  return "UNKNOWN";
}

std::string encode_frame(Type type, std::string_view payload) {
  Encoder e;
  e.u32(static_cast<uint32_t>(payload.size()));
  e.u16(static_cast<uint16_t>(type));
  e.u16(0);
  std::string out = e.take();
  out.append(payload);
  return out;
}

namespace {
Error bad(const char* what) {
  return make_error(ErrorKind::kProtocol, strfmt("malformed %s message", what));
}
}  // namespace

std::string encode_exec(const ExecRequest& r) {
  Encoder e;
  e.u16(r.version);
  e.u32(r.flags);
  e.strs(r.argv);
  e.strs(r.env);
  e.str(r.cwd);
  e.str(r.user);
  e.u16(r.rows);
  e.u16(r.cols);
  e.u32(r.timeout_ms);
  return e.take();
}

Result<ExecRequest> decode_exec(std::string_view payload) {
  Decoder d(payload);
  ExecRequest r;
  r.version = d.u16();
  if (d.ok() && r.version != kVersion)
    return make_error(ErrorKind::kProtocol,
                      strfmt("protocol version %u is not supported (agent speaks %u)", r.version, kVersion));
  r.flags = d.u32();
  r.argv = d.strs();
  r.env = d.strs();
  r.cwd = d.str();
  r.user = d.str();
  r.rows = d.u16();
  r.cols = d.u16();
  r.timeout_ms = d.u32();
  if (!d.done()) return bad("EXEC");
  return r;
}

std::string encode_exit(const ExitStatus& s) {
  Encoder e;
  e.u8(s.status);
  e.u8(static_cast<uint8_t>(s.reason));
  e.u8(s.signal);
  return e.take();
}

Result<ExitStatus> decode_exit(std::string_view payload) {
  Decoder d(payload);
  ExitStatus s;
  s.status = d.u8();
  uint8_t reason = d.u8();
  s.signal = d.u8();
  if (!d.done() || reason > static_cast<uint8_t>(ExitReason::kTimedOut)) return bad("EXIT");
  s.reason = static_cast<ExitReason>(reason);
  return s;
}

std::string encode_error(const ErrorReply& r) {
  Encoder e;
  e.u32(static_cast<uint32_t>(r.code));
  e.str(r.message);
  return e.take();
}

Result<ErrorReply> decode_error(std::string_view payload) {
  Decoder d(payload);
  ErrorReply r;
  r.code = static_cast<ErrorCode>(d.u32());
  r.message = d.str();
  if (!d.done()) return bad("ERROR");
  return r;
}

std::string encode_hello(const Hello& h) {
  Encoder e;
  e.u16(h.version);
  e.str(h.agent_version);
  e.u64(h.uptime_ms);
  return e.take();
}

Result<Hello> decode_hello(std::string_view payload) {
  Decoder d(payload);
  Hello h;
  h.version = d.u16();
  h.agent_version = d.str();
  h.uptime_ms = d.u64();
  if (!d.done()) return bad("HELLO");
  return h;
}

std::string encode_signal(uint32_t signo) {
  Encoder e;
  e.u32(signo);
  return e.take();
}

Result<uint32_t> decode_signal(std::string_view payload) {
  Decoder d(payload);
  uint32_t s = d.u32();
  if (!d.done() || s == 0 || s >= 65) return bad("SIGNAL");
  return s;
}

std::string encode_resize(uint16_t rows, uint16_t cols) {
  Encoder e;
  e.u16(rows);
  e.u16(cols);
  return e.take();
}

Result<std::pair<uint16_t, uint16_t>> decode_resize(std::string_view payload) {
  Decoder d(payload);
  uint16_t rows = d.u16();
  uint16_t cols = d.u16();
  if (!d.done()) return bad("RESIZE");
  return std::make_pair(rows, cols);
}

std::string encode_started(uint32_t pid) {
  Encoder e;
  e.u32(pid);
  return e.take();
}

Result<uint32_t> decode_started(std::string_view payload) {
  Decoder d(payload);
  uint32_t pid = d.u32();
  if (!d.done()) return bad("STARTED");
  return pid;
}

void FrameReader::feed(const void* data, size_t len) {
  // Compact lazily so a long stream does not grow the buffer without bound.
  if (pos_ > 0 && pos_ >= buf_.size() / 2) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(static_cast<const char*>(data), len);
}

Result<std::optional<Frame>> FrameReader::next() {
  if (failed_) return make_error(ErrorKind::kProtocol, "stream is out of sync");
  if (buffered() < kHeaderSize) return std::optional<Frame>();
  Decoder d(std::string_view(buf_).substr(pos_, kHeaderSize));
  uint32_t len = d.u32();
  uint16_t type = d.u16();
  uint16_t reserved = d.u16();
  if (reserved != 0 || len > kMaxPayload) {
    failed_ = true;
    return make_error(ErrorKind::kProtocol,
                      reserved != 0 ? strfmt("frame header reserved field is %u, not 0", reserved)
                                    : strfmt("frame payload of %u bytes exceeds the %u-byte limit", len, kMaxPayload));
  }
  if (buffered() - kHeaderSize < len) return std::optional<Frame>();
  Frame f;
  f.type = type;
  f.payload = buf_.substr(pos_ + kHeaderSize, len);
  pos_ += kHeaderSize + len;
  return std::optional<Frame>(std::move(f));
}

}  // namespace spore::proto
