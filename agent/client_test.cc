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

std::string frame(proto::Type t, std::string_view payload = {}) { return proto::encode_frame(t, payload); }

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

