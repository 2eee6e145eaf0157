// The exec server and the host client, end to end over a unix socket on the
// build host: the same code that runs as the guest's PID 1, minus the VM.
#include "agent/server.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <optional>
#include <thread>

#include "agent/client.h"
#include "agent/protocol.h"
#include "base/fd.h"

using namespace spore;

namespace {

// Runs serve() in a child process on a fresh unix socket.
class AgentProcess {
 public:
  AgentProcess() {
    char tmpl[] = "/tmp/spore-agent-test-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    path_ = dir_ + "/agent.sock";
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path_.c_str(), sizeof a.sun_path - 1);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 16) == 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      agent::ServerOptions o;
      o.listen_fd = fd;
      o.hostname = "test";
      (void)agent::serve(o);
      _exit(1);
    }
    ::close(fd);
  }
  ~AgentProcess() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  UniqueFd connect() {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path_.c_str(), sizeof a.sun_path - 1);
    REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    return fd;
  }
  bool alive() { return ::waitpid(pid_, nullptr, WNOHANG) == 0; }

 private:
  std::string dir_, path_;
  pid_t pid_ = -1;
};

struct Captured {
  Result<agent::ExecOutcome> outcome = make_error(ErrorKind::kInternal, "not run");
  std::string out, err;
};

std::string slurp(int fd) {
  std::string s;
  char buf[4096];
  ssize_t n;
  ::lseek(fd, 0, SEEK_SET);
  while ((n = ::read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(n));
  return s;
}

Captured exec(AgentProcess& a, const proto::ExecRequest& req, const std::string& input = "", bool with_stdin = false) {
  Captured c;
  char o[] = "/tmp/spore-out-XXXXXX", e[] = "/tmp/spore-err-XXXXXX", i[] = "/tmp/spore-in-XXXXXX";
  UniqueFd out(::mkstemp(o)), err(::mkstemp(e)), in(::mkstemp(i));
  ::unlink(o);
  ::unlink(e);
  ::unlink(i);
  REQUIRE(write_all(in.get(), input.data(), input.size()).ok());
  ::lseek(in.get(), 0, SEEK_SET);
  agent::ExecIo io;
  io.stdout_fd = out.get();
  io.stderr_fd = err.get();
  if (with_stdin) io.stdin_fd = in.get();
  UniqueFd conn = a.connect();
  c.outcome = agent::run_exec(conn.get(), req, io);
  c.out = slurp(out.get());
  c.err = slurp(err.get());
  return c;
}

proto::ExecRequest cmd(std::vector<std::string> argv) {
  proto::ExecRequest r;
  r.argv = std::move(argv);
  return r;
}

// Sends raw bytes and returns the first frame the agent answers with.
proto::Frame raw_exchange(AgentProcess& a, const std::string& bytes) {
  UniqueFd c = a.connect();
  REQUIRE(write_all(c.get(), bytes.data(), bytes.size()).ok());
  proto::FrameReader r;
  char buf[4096];
  for (;;) {
    auto f = r.next();
    REQUIRE(f.ok());
    if (*f) return **f;
    ssize_t n = ::read(c.get(), buf, sizeof buf);
    REQUIRE(n > 0);
    r.feed(buf, static_cast<size_t>(n));
  }
}

}  // namespace

TEST_CASE("agent server: output, exit status and separate streams", "[agent][server]") {
  AgentProcess a;
  auto c = exec(a, cmd({"/bin/sh", "-c", "echo out; echo err >&2; exit 7"}));
  REQUIRE(c.outcome.ok());
  REQUIRE(c.outcome->exit);
  CHECK(c.outcome->exit->status == 7);
  CHECK(c.out == "out\n");
  CHECK(c.err == "err\n");
}

TEST_CASE("agent server: stdin, env and cwd", "[agent][server]") {
  AgentProcess a;
  auto req = cmd({"/bin/sh", "-c", "cat; echo \"$FOO\"; pwd"});
  req.env = {"FOO=bar baz"};
  req.cwd = "/tmp";
  auto c = exec(a, req, "piped\n", true);
  REQUIRE(c.outcome.ok());
  CHECK(c.outcome->exit->status == 0);
  CHECK(c.out == "piped\nbar baz\n/tmp\n");
}

TEST_CASE("agent server: signals and timeouts end the command", "[agent][server]") {
  AgentProcess a;
  auto k = exec(a, cmd({"/bin/sh", "-c", "kill -KILL $$"}));
  REQUIRE(k.outcome.ok());
  CHECK(k.outcome->exit->status == 137);
  CHECK(k.outcome->exit->reason == proto::ExitReason::kSignaled);
  auto req = cmd({"/bin/sleep", "30"});
  req.timeout_ms = 200;
  auto t = exec(a, req);
  REQUIRE(t.outcome.ok());
  CHECK(t.outcome->exit->reason == proto::ExitReason::kTimedOut);
}

TEST_CASE("agent server: commands that cannot run are refused with the right code", "[agent][server]") {
  AgentProcess a;
  auto nf = exec(a, cmd({"/nonexistent"}));
  REQUIRE(nf.outcome.ok());
  REQUIRE(nf.outcome->refused);
  CHECK(nf.outcome->refused->code == proto::ErrorCode::kNotFound);
  auto path = exec(a, cmd({"no-such-command-anywhere"}));
  REQUIRE(path.outcome->refused);
  CHECK_THAT(path.outcome->refused->message, Catch::Contains("not found in $PATH"));
  auto dir = exec(a, cmd({"/tmp"}));
  REQUIRE(dir.outcome->refused);
  CHECK(dir.outcome->refused->code == proto::ErrorCode::kNotExecutable);
  auto req = cmd({"/bin/true"});
  req.cwd = "/no/such/dir";
  auto cwd = exec(a, req);
  REQUIRE(cwd.outcome->refused);
  CHECK(cwd.outcome->refused->code == proto::ErrorCode::kStartFailed);
  req.cwd = "";
  req.user = "no-such-user";
  auto user = exec(a, req);
  REQUIRE(user.outcome->refused);
  CHECK(user.outcome->refused->code == proto::ErrorCode::kStartFailed);
}

TEST_CASE("agent server: malformed frames get an error reply and never crash it", "[agent][server]") {
  AgentProcess a;
  SECTION("garbage header") {
    auto f = raw_exchange(a, std::string("\xff\xff\xff\xff\x01\x00\x00\x00", 8));
    CHECK(f.type == static_cast<uint16_t>(proto::Type::kError));
    CHECK(proto::decode_error(f.payload)->code == proto::ErrorCode::kBadFrame);
  }
  SECTION("first frame is not EXEC") {
    auto f = raw_exchange(a, proto::encode_frame(proto::Type::kStdin, "hello"));
    CHECK(proto::decode_error(f.payload)->code == proto::ErrorCode::kBadRequest);
  }
  SECTION("truncated EXEC payload") {
    auto f = raw_exchange(a, proto::encode_frame(proto::Type::kExec, "\x01\x00\x00"));
    CHECK(proto::decode_error(f.payload)->code == proto::ErrorCode::kBadFrame);
  }
  SECTION("another protocol version") {
    proto::ExecRequest r = cmd({"/bin/true"});
    r.version = 9;
    auto f = raw_exchange(a, proto::encode_frame(proto::Type::kExec, proto::encode_exec(r)));
    CHECK(proto::decode_error(f.payload)->code == proto::ErrorCode::kUnsupportedVersion);
  }
  SECTION("unknown flags") {
    proto::ExecRequest r = cmd({"/bin/true"});
    r.flags = 0x80;
    auto f = raw_exchange(a, proto::encode_frame(proto::Type::kExec, proto::encode_exec(r)));
    CHECK(proto::decode_error(f.payload)->code == proto::ErrorCode::kBadRequest);
  }
  // Still alive and serving.
  CHECK(a.alive());
  auto c = exec(a, cmd({"/bin/echo", "still here"}));
  REQUIRE(c.outcome.ok());
  CHECK(c.out == "still here\n");
}

TEST_CASE("agent server: many sessions at once do not mix their output", "[agent][server]") {
  AgentProcess a;
  std::vector<std::pair<UniqueFd, int>> sessions;
  std::vector<Captured> results(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; i++)
    threads.emplace_back([&, i] {
      results[i] = exec(a, cmd({"/bin/sh", "-c", "for j in 1 2 3 4 5; do echo s" + std::to_string(i) + "; done"}));
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < 8; i++) {
    std::string want;
    for (int j = 0; j < 5; j++) want += "s" + std::to_string(i) + "\n";
    CHECK(results[i].out == want);
  }
}

TEST_CASE("agent server: commands start with no signals ignored or blocked", "[agent][server]") {
  AgentProcess a;
  auto c = exec(a, cmd({"/bin/grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"}));
  REQUIRE(c.outcome.ok());
  CHECK(c.out == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

namespace {

// Next frame from c (blocking); nothing at EOF.
std::optional<proto::Frame> next_frame(int c, proto::FrameReader& r) {
  char buf[4096];
  for (;;) {
    auto f = r.next();
    REQUIRE(f.ok());
    if (*f) return **f;
    ssize_t n = ::read(c, buf, sizeof buf);
    if (n <= 0) return std::nullopt;
    r.feed(buf, static_cast<size_t>(n));
  }
}

}  // namespace

TEST_CASE("agent server: a frame the host may not send mid-session gets BAD_FRAME and ends the command",
          "[agent][server]") {
  AgentProcess a;
  proto::ExecRequest req = cmd({"/bin/sleep", "1000"});
  std::string bad;
  SECTION("SIGNAL with a short payload") { bad = proto::encode_frame(proto::Type::kSignal, std::string("\x02\x00", 2)); }
  SECTION("SIGNAL 0") { bad = proto::encode_frame(proto::Type::kSignal, proto::encode_signal(0)); }
  SECTION("SIGNAL 65") { bad = proto::encode_frame(proto::Type::kSignal, proto::encode_signal(65)); }
  SECTION("RESIZE with a trailing byte") {
    bad = proto::encode_frame(proto::Type::kResize, proto::encode_resize(24, 80) + "x");
  }
  SECTION("RESIZE without a terminal") {
    bad = proto::encode_frame(proto::Type::kResize, proto::encode_resize(24, 80));
  }
  SECTION("STDIN_CLOSE with a payload") {
    req.flags = proto::kExecStdin;
    bad = proto::encode_frame(proto::Type::kStdinClose, "x");
  }
  SECTION("STDIN without the STDIN flag") { bad = proto::encode_frame(proto::Type::kStdin, "data"); }
  SECTION("STDIN_CLOSE without the STDIN flag") { bad = proto::encode_frame(proto::Type::kStdinClose, ""); }
  SECTION("STDIN after STDIN_CLOSE") {
    req.flags = proto::kExecStdin;
    bad = proto::encode_frame(proto::Type::kStdinClose, "") + proto::encode_frame(proto::Type::kStdin, "late");
  }
  SECTION("a second STDIN_CLOSE") {
    req.flags = proto::kExecStdin;
    bad = proto::encode_frame(proto::Type::kStdinClose, "") + proto::encode_frame(proto::Type::kStdinClose, "");
  }
  SECTION("a second EXEC") { bad = proto::encode_frame(proto::Type::kExec, proto::encode_exec(req)); }
  SECTION("an agent-to-host type") { bad = proto::encode_frame(proto::Type::kExit, proto::encode_exit({})); }

  UniqueFd c = a.connect();
  std::string exec = proto::encode_frame(proto::Type::kExec, proto::encode_exec(req));
  REQUIRE(write_all(c.get(), exec.data(), exec.size()).ok());
  proto::FrameReader r;
  auto started = next_frame(c.get(), r);
  REQUIRE(started);
  REQUIRE(started->type == static_cast<uint16_t>(proto::Type::kStarted));
  REQUIRE(write_all(c.get(), bad.data(), bad.size()).ok());
  auto answer = next_frame(c.get(), r);
  REQUIRE(answer);
  REQUIRE(answer->type == static_cast<uint16_t>(proto::Type::kError));
  CHECK(proto::decode_error(answer->payload)->code == proto::ErrorCode::kBadFrame);
  // ERROR is the last frame, and the command (sleep 1000) was killed: the
  // agent closes the session once it has reaped it.
  CHECK_FALSE(next_frame(c.get(), r));
  CHECK(a.alive());
}

TEST_CASE("agent server: well-formed control frames mid-session are taken quietly", "[agent][server]") {
  AgentProcess a;
  proto::ExecRequest req = cmd({"/bin/sh", "-c", "cat; echo done"});
  req.flags = proto::kExecStdin;
  UniqueFd c = a.connect();
  std::string frames = proto::encode_frame(proto::Type::kExec, proto::encode_exec(req)) +
                       proto::encode_frame(proto::Type::kStdin, "") +  // empty: allowed, does nothing
                       proto::encode_frame(proto::Type::kStdin, "in\n") +
                       proto::encode_frame(proto::Type::kSignal, proto::encode_signal(SIGWINCH)) +
                       proto::encode_frame(proto::Type::kStdinClose, "");
  REQUIRE(write_all(c.get(), frames.data(), frames.size()).ok());
  proto::FrameReader r;
  std::string out;
  std::optional<proto::ExitStatus> exit;
  while (auto f = next_frame(c.get(), r)) {
    REQUIRE(f->type != static_cast<uint16_t>(proto::Type::kError));
    if (f->type == static_cast<uint16_t>(proto::Type::kStdout)) out += f->payload;
    if (f->type == static_cast<uint16_t>(proto::Type::kExit)) exit = *proto::decode_exit(f->payload);
  }
  REQUIRE(exit);
  CHECK(exit->status == 0);
  CHECK(out == "in\ndone\n");
}
