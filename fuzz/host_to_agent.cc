// The agent's side of the agent protocol: the frames a host sends (EXEC,
// STDIN, STDIN_CLOSE, SIGNAL, RESIZE), split into chunks of the input's
// choosing and fed to a FrameReader, each payload decoded the way the
// agent's server does (agent/server.cc). Checked: every frame that
// decodes encodes back to exactly its payload, frames come out whole and
// in order, and a reader that failed stays failed.
#include "agent/protocol.h"
#include "fuzz/support/fuzz.h"

using namespace spore;
using namespace spore::fuzz;
using proto::Type;

namespace {

void decode(const proto::Frame& f) {
  switch (static_cast<Type>(f.type)) {
    case Type::kExec: {
      auto r = proto::decode_exec(f.payload);
      if (r.ok()) check(proto::encode_exec(*r) == f.payload, "EXEC does not encode back to its payload");
      break;
    }
    case Type::kSignal: {
      auto r = proto::decode_signal(f.payload);
      if (r.ok()) {
        check(*r >= 1 && *r <= 64, "SIGNAL outside 1..64 accepted");
        check(proto::encode_signal(*r) == f.payload, "SIGNAL does not encode back");
      }
      break;
    }
    case Type::kResize: {
      auto r = proto::decode_resize(f.payload);
      if (r.ok()) check(proto::encode_resize(r->first, r->second) == f.payload, "RESIZE does not encode back");
      break;
    }
    // The host's decoders too: an agent parses nothing else, but the
    // payload codecs are shared.
    case Type::kExit: {
      auto r = proto::decode_exit(f.payload);
      if (r.ok()) check(proto::encode_exit(*r) == f.payload, "EXIT does not encode back");
      break;
    }
    case Type::kError: {
      auto r = proto::decode_error(f.payload);
      if (r.ok()) check(proto::encode_error(*r) == f.payload, "ERROR does not encode back");
      break;
    }
    case Type::kHello: {
      auto r = proto::decode_hello(f.payload);
      if (r.ok()) check(proto::encode_hello(*r) == f.payload, "HELLO does not encode back");
      break;
    }
    case Type::kStarted: {
      auto r = proto::decode_started(f.payload);
      if (r.ok()) check(proto::encode_started(*r) == f.payload, "STARTED does not encode back");
      break;
    }
    default:
      (void)proto::type_name(f.type);
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  proto::FrameReader reader;
  std::string fed;      // everything fed so far
  size_t framed = 0;    // bytes of it that came out as frames
  while (!in.empty()) {
    std::string chunk = in.bytes(1 + in.u8());
    reader.feed(chunk.data(), chunk.size());
    fed += chunk;
    for (;;) {
      auto f = reader.next();
      if (!f.ok()) {
        check(!reader.next().ok(), "a frame reader recovered after a bad header");
        return 0;
      }
      if (!*f) break;
      std::string whole = proto::encode_frame(static_cast<Type>((*f)->type), (*f)->payload);
      check(fed.compare(framed, whole.size(), whole) == 0, "a frame is not the bytes that were fed");
      framed += whole.size();
      check(reader.buffered() == fed.size() - framed, "the reader's buffered() is off");
      decode(**f);
    }
  }
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  proto::ExecRequest r;
  r.flags = proto::kExecStdin | proto::kExecTty;
  r.argv = {"python3", "-c", "print(1)"};
  r.env = {"PATH=/usr/bin:/bin", "TERM=xterm"};
  r.cwd = "/srv";
  r.user = "1000:1000";
  r.rows = 24;
  r.cols = 80;
  r.timeout_ms = 5000;
  std::string stream = proto::encode_frame(Type::kExec, proto::encode_exec(r)) +
                       proto::encode_frame(Type::kStdin, "some input\n") +
                       proto::encode_frame(Type::kResize, proto::encode_resize(50, 132)) +
                       proto::encode_frame(Type::kSignal, proto::encode_signal(2)) +
                       proto::encode_frame(Type::kStdinClose, "");
  auto chunked = [](const std::string& s, size_t n) {
    Output o;
    for (size_t i = 0; i < s.size(); i += n) o.u8(static_cast<uint8_t>(n - 1)).bytes(s.substr(i, n));
    return o.str();
  };
  seeds.add("session", chunked(stream, 200));
  seeds.add("session_bytewise", chunked(stream, 1));
  std::string bad = proto::encode_frame(Type::kSignal, proto::encode_signal(2));
  bad[6] = 1;  // reserved field
  seeds.add("bad_header", chunked(bad + stream, 64));
  seeds.add("host_frames", chunked(proto::encode_frame(Type::kExit, proto::encode_exit({1, proto::ExitReason::kTimedOut, 0})) +
                                       proto::encode_frame(Type::kHello, proto::encode_hello({})) +
                                       proto::encode_frame(Type::kError, proto::encode_error({})) +
                                       proto::encode_frame(Type::kStarted, proto::encode_started(1)),
                                   255));
}
