// The host's side of the agent protocol (agent/client.cc): what a guest
// agent, or anything in the guest that took its place, sends back. Two
// modes (first byte): the ready port's HELLO, read through a FrameReader
// fed in chunks of the input's choosing; or a whole exec session, where
// run_exec() sends EXEC (and stdin from the input) over a socketpair and
// reads the input's bytes as the agent's answer until EXIT, ERROR or the
// connection's end.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/client.h"
#include "agent/protocol.h"
#include "base/fd.h"
#include "fuzz/support/fuzz.h"

using namespace spore;
using namespace spore::fuzz;

namespace {

int dev_null() {
  static int fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  return fd;
}

void hello(Input& in) {
  proto::FrameReader reader;
  for (int i = 0; i < 64 && !in.empty(); i++) {
    std::string chunk = in.bytes(1 + in.u8());
    reader.feed(chunk.data(), chunk.size());
    auto h = agent::take_hello(reader);
    if (!h.ok()) return;
    if (*h) {
      check((*h)->version == proto::kVersion, "a HELLO of another version was accepted");
      return;
    }
  }
}

void session(Input& in) {
  proto::ExecRequest req;
  req.argv = {"sh", "-c", "true"};
  uint8_t mode = in.u8();
  if (mode & 1) req.flags |= proto::kExecTty;
  std::string stdin_data = mode & 2 ? in.bytes(in.u16() % 4096) : "";
  std::string agent = in.rest();

  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) fail("socketpair");
  UniqueFd host(sv[0]), guest(sv[1]);
  // The agent's whole answer is queued before the session starts; what
  // does not fit in the socket buffer is cut (the host then sees EOF early).
  (void)set_nonblocking(guest.get());
  size_t off = 0;
  while (off < agent.size()) {
    ssize_t n = ::send(guest.get(), agent.data() + off, agent.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  ::shutdown(guest.get(), SHUT_WR);

  UniqueFd stdin_r;
  if (mode & 2) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) fail("pipe2");
    stdin_r.reset(p[0]);
    UniqueFd w(p[1]);
    if (!write_all(w.get(), stdin_data.data(), stdin_data.size()).ok()) fail("stdin pipe");
  }
  agent::ExecIo io;
  io.stdin_fd = stdin_r.get();
  io.stdout_fd = dev_null();
  io.stderr_fd = dev_null();
  auto outcome = agent::run_exec(host.get(), req, io);
  if (outcome.ok()) check(outcome->exit.has_value() != outcome->refused.has_value(), "a session ended with neither "
                          "or both of EXIT and ERROR");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  if (in.u8() & 1) session(in);
  else hello(in);
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  using proto::Type;
  proto::Hello h;
  h.agent_version = "0.1.0";
  h.uptime_ms = 812;
  std::string hello = proto::encode_frame(Type::kHello, proto::encode_hello(h));
  Output o;
  o.u8(0);
  for (size_t i = 0; i < hello.size(); i += 5) o.u8(4).bytes(hello.substr(i, 5));
  seeds.add("hello", o.str());
  h.version = 2;
  seeds.add("hello_v2", Output().u8(0).u8(255).bytes(proto::encode_frame(Type::kHello, proto::encode_hello(h))).str());

  auto session = [](uint8_t mode, std::string stdin_data, std::string frames) {
    Output o;
    o.u8(1).u8(mode);
    if (mode & 2) o.u16(static_cast<uint16_t>(stdin_data.size())).bytes(stdin_data);
    return o.bytes(frames).str();
  };
  std::string ok = proto::encode_frame(Type::kStarted, proto::encode_started(42)) +
                   proto::encode_frame(Type::kStdout, "out\n") + proto::encode_frame(Type::kStderr, "err\n") +
                   proto::encode_frame(Type::kExit, proto::encode_exit({3, proto::ExitReason::kExited, 0}));
  seeds.add("session", session(0, "", ok));
  seeds.add("session_stdin", session(2, "input line\n", ok));
  seeds.add("session_tty", session(1, "", proto::encode_frame(Type::kStarted, proto::encode_started(7)) +
                                              proto::encode_frame(Type::kStdout, "x") +
                                              proto::encode_frame(Type::kExit, proto::encode_exit(
                                                  {137, proto::ExitReason::kSignaled, 9}))));
  seeds.add("refused", session(0, "", proto::encode_frame(Type::kError, proto::encode_error(
                                                     {proto::ErrorCode::kNotFound, "sh: not found"}))));
  seeds.add("stdout_first", session(0, "", proto::encode_frame(Type::kStdout, "early")));
  seeds.add("truncated", session(0, "", ok.substr(0, ok.size() - 2)));
}
