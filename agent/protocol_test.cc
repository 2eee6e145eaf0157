#include "agent/protocol.h"

#include <catch2/catch.hpp>

using namespace spore;
using namespace spore::proto;

TEST_CASE("EXEC requests round-trip", "[proto]") {
  ExecRequest r;
  r.flags = kExecTty | kExecStdin;
  r.argv = {"sh", "-c", std::string("echo \0x", 8)};
  r.env = {"A=1", "B="};
  r.cwd = "/work";
  r.user = "1000:1000";
  r.rows = 40;
  r.cols = 120;
  r.timeout_ms = 5000;
  auto d = decode_exec(encode_exec(r));
  REQUIRE(d.ok());
  CHECK(d->flags == r.flags);
  CHECK(d->argv == r.argv);
  CHECK(d->env == r.env);
  CHECK(d->cwd == r.cwd);
  CHECK(d->user == r.user);
  CHECK(d->rows == 40);
  CHECK(d->cols == 120);
  CHECK(d->timeout_ms == 5000);
}

TEST_CASE("small messages round-trip", "[proto]") {
  ExitStatus e{137, ExitReason::kSignaled, 9};
  auto de = decode_exit(encode_exit(e));
  REQUIRE(de.ok());
  CHECK(de->status == 137);
  CHECK(de->reason == ExitReason::kSignaled);
  CHECK(de->signal == 9);

  ErrorReply er{ErrorCode::kNotFound, "exec nope: not found"};
  auto der = decode_error(encode_error(er));
  REQUIRE(der.ok());
  CHECK(der->code == ErrorCode::kNotFound);
  CHECK(der->message == er.message);

  Hello h{kVersion, "1.2.3", 1234};
  auto dh = decode_hello(encode_hello(h));
  REQUIRE(dh.ok());
  CHECK(dh->agent_version == "1.2.3");
  CHECK(dh->uptime_ms == 1234);

  CHECK(*decode_signal(encode_signal(15)) == 15u);
  CHECK(decode_resize(encode_resize(24, 80))->second == 80);
}

TEST_CASE("truncated, padded or nonsensical payloads are rejected", "[proto]") {
  std::string exec = encode_exec(ExecRequest{kVersion, 0, {"true"}, {}, "", "", 0, 0, 0});
  for (size_t n = 0; n < exec.size(); n++) CHECK_FALSE(decode_exec(exec.substr(0, n)).ok());
  CHECK_FALSE(decode_exec(exec + "x").ok());
  CHECK_FALSE(decode_exit(std::string("\x01\x07\x00", 3)).ok());  // unknown reason
  CHECK_FALSE(decode_signal(encode_signal(0)).ok());
  CHECK_FALSE(decode_signal(encode_signal(1000)).ok());
}

TEST_CASE("a list count larger than the input is rejected without allocating it", "[proto]") {
  Encoder e;
  e.u16(kVersion);
  e.u32(0);
  e.u32(0xfffffff0u);  // argv count
  auto r = decode_exec(e.take());
  CHECK_FALSE(r.ok());
}

TEST_CASE("an unsupported protocol version is named in the error", "[proto]") {
  ExecRequest r;
  r.version = 99;
  r.argv = {"true"};
  auto d = decode_exec(encode_exec(r));
  REQUIRE_FALSE(d.ok());
  CHECK_THAT(d.error().message, Catch::Contains("version 99"));
}

TEST_CASE("the frame reader reassembles frames split anywhere", "[proto]") {
  std::string stream = encode_frame(Type::kStdout, "hello") + encode_frame(Type::kStderr, "") +
                       encode_frame(Type::kExit, encode_exit({3, ExitReason::kExited, 0}));
  for (size_t step = 1; step <= stream.size(); step++) {
    FrameReader r;
    std::vector<Frame> got;
    for (size_t i = 0; i < stream.size(); i += step) {
      r.feed(stream.data() + i, std::min(step, stream.size() - i));
      for (;;) {
        auto f = r.next();
        REQUIRE(f.ok());
        if (!*f) break;
        got.push_back(**f);
      }
    }
    REQUIRE(got.size() == 3);
    CHECK(got[0].type == static_cast<uint16_t>(Type::kStdout));
    CHECK(got[0].payload == "hello");
    CHECK(got[1].payload.empty());
    CHECK(got[2].type == static_cast<uint16_t>(Type::kExit));
  }
}

TEST_CASE("oversized or dirty frame headers poison the stream", "[proto]") {
  SECTION("too long") {
    Encoder e;
    e.u32(kMaxPayload + 1);
    e.u16(2);
    e.u16(0);
    FrameReader r;
    std::string h = e.take();
    r.feed(h.data(), h.size());
    CHECK_FALSE(r.next().ok());
    CHECK_FALSE(r.next().ok());  // and stays failed
  }
  SECTION("reserved bits set") {
    Encoder e;
    e.u32(0);
    e.u16(2);
    e.u16(1);
    FrameReader r;
    std::string h = e.take();
    r.feed(h.data(), h.size());
    CHECK_FALSE(r.next().ok());
  }
}
