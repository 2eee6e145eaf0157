// The host side of the agent protocol against a scripted fake agent: what
// it accepts, what it refuses, and its own deadlines.
#include "agent/client.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "agent/protocol.h"
#include "base/exit_codes.h"
#include "base/fd.h"

using namespace spore;

namespace {

struct Pair {
  Pair() {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    host.reset(sv[0]);
    agent.reset(sv[1]);
  }
  UniqueFd host, agent;
};

// Like write_all, but a host that hung up is not a SIGPIPE.
bool send_all(int fd, const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Plays the agent's side: swallows the EXEC, then sends `frames`, then
// keeps the connection open (and silent) until the host closes it.
std::thread fake_agent(int fd, std::string frames) {
  return std::thread([fd, frames] {
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof buf);
    (void)n;
    (void)send_all(fd, frames);
    while (::read(fd, buf, sizeof buf) > 0) {
    }
  });
}

std::string frame(proto::Type t, std::string_view payload = {}) { return proto::encode_frame(t, payload); }

Result<agent::ExecOutcome> exec_against(const std::string& frames, proto::ExecRequest req = {},
                                        agent::ExecIo io = {}) {
  Pair p;
  if (req.argv.empty()) req.argv = {"true"};
  auto t = fake_agent(p.agent.get(), frames);
  UniqueFd out(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  io.stdout_fd = out.get();
  io.stderr_fd = out.get();
  auto r = agent::run_exec(p.host.get(), req, io);
  p.host.reset();
  t.join();
  return r;
}

}  // namespace

TEST_CASE("client: a HELLO trickled byte by byte cannot outlast the deadline", "[agent][client]") {
  Pair p;
  proto::Hello h;
  h.agent_version = "trickle";
  std::string hello = frame(proto::Type::kHello, proto::encode_hello(h));
  std::thread t([fd = p.agent.get(), hello] {
    for (char c : hello) {
      if (!send_all(fd, std::string(1, c))) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(150));
    }
  });
  // Every gap is far below the deadline; the whole HELLO takes several times it.
  auto r = agent::read_hello(p.host.get(), 1000);
  p.host.reset();
  t.join();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == ErrorKind::kTimeout);
}

TEST_CASE("client: a HELLO that arrives whole is read, anything else first is a protocol error", "[agent][client]") {
  proto::Hello h;
  h.agent_version = "v";
  {
    Pair p;
    std::string bytes = frame(proto::Type::kHello, proto::encode_hello(h));
    REQUIRE(write_all(p.agent.get(), bytes.data(), bytes.size()).ok());
    auto r = agent::read_hello(p.host.get(), 5000);
    REQUIRE(r.ok());
    CHECK(r->agent_version == "v");
  }
  {
    Pair p;
    std::string bytes = frame(proto::Type::kStdout, "x");
    REQUIRE(write_all(p.agent.get(), bytes.data(), bytes.size()).ok());
    auto r = agent::read_hello(p.host.get(), 5000);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::kProtocol);
  }
}

TEST_CASE("client: the host ends a session whose agent never reports the timeout", "[agent][client]") {
  proto::ExecRequest req;
  req.timeout_ms = 50;
  agent::ExecIo io;
  io.timeout_grace_ms = 100;
  // STARTED, some output, then silence: a stopped or wedged agent.
  auto r = exec_against(frame(proto::Type::kStarted, proto::encode_started(7)) + frame(proto::Type::kStdout, "x"),
                        req, io);
  REQUIRE(r.ok());
  CHECK(r->cut_off);
  CHECK_FALSE(r->exit);
  CHECK(agent::session_exit_status(r, "test", "50ms") == kExitTimeout);
}

TEST_CASE("client: an agent that keeps talking cannot hold the host past the timeout either", "[agent][client]") {
  proto::ExecRequest req;
  req.timeout_ms = 50;
  agent::ExecIo io;
  io.timeout_grace_ms = 100;
  std::string output;
  for (int i = 0; i < 1000; i++) output += frame(proto::Type::kStdout, std::string(100, 'y'));
  Pair p;
  std::thread t([fd = p.agent.get(), output] {
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof buf);
    (void)n;
    if (!send_all(fd, frame(proto::Type::kStarted, proto::encode_started(7)))) return;
    for (;;)  // output, forever, until the host hangs up
      if (!send_all(fd, output)) return;
  });
  UniqueFd out(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  io.stdout_fd = out.get();
  req.argv = {"true"};
  auto r = agent::run_exec(p.host.get(), req, io);
  ::shutdown(p.host.get(), SHUT_RDWR);
  t.join();
  REQUIRE(r.ok());
  CHECK(r->cut_off);
}

TEST_CASE("client: unexpected frames from the agent are protocol errors", "[agent][client]") {
  const std::string started = frame(proto::Type::kStarted, proto::encode_started(7));
  const std::string exit0 = frame(proto::Type::kExit, proto::encode_exit({}));
  auto refused = [&](const std::string& frames, proto::ExecRequest req = {}) {
    auto r = exec_against(frames, req);
    INFO((r.ok() ? std::string("accepted") : r.error().message));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::kProtocol);
    CHECK(exit_code_for(r.error()) == kExitProtocol);
  };
  SECTION("a well-behaved session is accepted") {
    auto r = exec_against(started + frame(proto::Type::kStdout, "out") + exit0);
    REQUIRE(r.ok());
    CHECK(r->exit);
  }
  SECTION("output before STARTED") { refused(frame(proto::Type::kStdout, "early") + started + exit0); }
  SECTION("EXIT before STARTED") { refused(exit0); }
  SECTION("a second STARTED") { refused(started + started + exit0); }
  SECTION("a malformed STARTED") { refused(frame(proto::Type::kStarted, "xy") + exit0); }
  SECTION("STDOUT over 64 KiB") {
    refused(started + frame(proto::Type::kStdout, std::string(proto::kMaxDataChunk + 1, 'z')) + exit0);
  }
  SECTION("STDERR in a terminal session") {
    proto::ExecRequest req;
    req.flags = proto::kExecTty;
    refused(started + frame(proto::Type::kStderr, "e") + exit0, req);
  }
  SECTION("HELLO on an exec session") { refused(started + frame(proto::Type::kHello, "") + exit0); }
  SECTION("a host-to-agent type") { refused(started + frame(proto::Type::kStdin, "") + exit0); }
  SECTION("an unknown type") { refused(started + proto::encode_frame(static_cast<proto::Type>(0x7f), "") + exit0); }
}
