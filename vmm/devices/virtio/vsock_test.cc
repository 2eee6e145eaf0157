#include "vmm/devices/virtio/vsock.h"

#include <poll.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <optional>

#include "tests/virtio_driver.h"

using namespace spore;
using namespace spore::vmm;
using namespace spore::vmm::virtio;
using spore::test::Buf;

namespace {

constexpr uint64_t kCid = 3;
constexpr uint16_t kQSize = 64;

// A vsock device on a real MMIO transport, driven like a guest kernel would.
struct VsockRig {
  VsockRig() {
    auto dev = std::make_unique<Vsock>(kCid, *g.loop);
    vsock = dev.get();
    auto t = MmioTransport::create(std::move(dev), g.mem, *g.loop, std::make_unique<test::CountingIrq>(&irqs));
    REQUIRE(t.ok());
    transport = std::move(*t);
    drv = std::make_unique<test::TestDriver>(g, *transport);
    drv->begin();
    for (uint32_t q = 0; q < 3; q++) drv->setup_queue(q, kQSize);
    drv->driver_ok();
    REQUIRE((drv->status() & kStatusDriverOk));
  }

  // Posts n receive buffers of size bytes each.
  void post_rx(int n, uint32_t size = 4096) {
    for (int i = 0; i < n; i++) {
      uint64_t gpa = g.alloc(size);
      uint16_t head = drv->add(0, {{gpa, size, true}});
      rx_bufs[head] = gpa;
    }
    drv->kick(0);
  }

  // Sends one packet from the guest (header + payload in two descriptors).
  void send(VsockHeader h, const std::string& payload = "") {
    h.len = h.len ? h.len : static_cast<uint32_t>(payload.size());
    uint64_t hg = g.alloc(sizeof h);
    std::memcpy(g.host(hg), &h, sizeof h);
    std::vector<Buf> bufs = {{hg, sizeof h, false}};
    if (!payload.empty()) {
      uint64_t pg = g.alloc(payload.size());
      std::memcpy(g.host(pg), payload.data(), payload.size());
      bufs.push_back({pg, static_cast<uint32_t>(payload.size()), false});
    }
    drv->add(1, bufs);
    drv->kick(1);
  }

  VsockHeader guest_header(uint32_t guest_port, uint32_t host_port, uint16_t op, uint32_t buf_alloc = 1 << 20) {
    VsockHeader h{};
    h.src_cid = kCid;
    h.dst_cid = kVsockHostCid;
    h.src_port = guest_port;
    h.dst_port = host_port;
    h.type = kVsockTypeStream;
    h.op = op;
    h.buf_alloc = buf_alloc;
    return h;
  }

  struct Packet {
    VsockHeader h;
    std::string data;
  };
  // Packets the device delivered into rx buffers since the last call.
  std::vector<Packet> received() {
    g.poll();
    std::vector<Packet> out;
    for (auto [id, len] : drv->used(0)) {
      uint64_t gpa = rx_bufs.at(static_cast<uint16_t>(id));
      Packet p;
      REQUIRE(len >= sizeof(VsockHeader));
      std::memcpy(&p.h, g.host(gpa), sizeof p.h);
      REQUIRE(p.h.len == len - sizeof(VsockHeader));
      p.data.assign(reinterpret_cast<char*>(g.host(gpa)) + sizeof(VsockHeader), p.h.len);
      out.push_back(p);
    }
    return out;
  }

  test::TestGuest g;
  int irqs = 0;
  Vsock* vsock = nullptr;
  std::unique_ptr<MmioTransport> transport;
  std::unique_ptr<test::TestDriver> drv;
  std::map<uint16_t, uint64_t> rx_bufs;
};

std::string read_some(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 1000) <= 0) return {};
  char buf[65536];
  ssize_t n = ::read(fd, buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

}  // namespace

TEST_CASE("vsock: a guest connection to a listening host port is accepted and carries data both ways",
          "[virtio][vsock]") {
  VsockRig r;
  std::optional<UniqueFd> accepted;
  r.vsock->listen(1025, [&](UniqueFd fd, uint32_t port) {
    CHECK(port == 5000);
    accepted = std::move(fd);
  });
  r.post_rx(16);
  r.send(r.guest_header(5000, 1025, kOpRequest));
  auto pk = r.received();
  REQUIRE(pk.size() == 1);
  CHECK(pk[0].h.op == kOpResponse);
  CHECK(pk[0].h.dst_port == 5000);
  CHECK(pk[0].h.src_port == 1025);
  CHECK(pk[0].h.buf_alloc == Vsock::kBufAlloc);
  REQUIRE(accepted.has_value());

  r.send(r.guest_header(5000, 1025, kOpRw), "hello host");
  CHECK(read_some(accepted->get()) == "hello host");

  REQUIRE(::write(accepted->get(), "hi guest", 8) == 8);
  r.g.poll();
  pk = r.received();
  REQUIRE(pk.size() == 1);
  CHECK(pk[0].h.op == kOpRw);
  CHECK(pk[0].data == "hi guest");
  CHECK(r.irqs > 0);
}

TEST_CASE("vsock: a connection to a port nobody listens on is reset", "[virtio][vsock]") {
  VsockRig r;
  r.post_rx(4);
  r.send(r.guest_header(5000, 7777, kOpRequest));
  auto pk = r.received();
  REQUIRE(pk.size() == 1);
  CHECK(pk[0].h.op == kOpRst);
}

TEST_CASE("vsock: host-initiated connect completes on RESPONSE and fails on RST", "[virtio][vsock]") {
  VsockRig r;
  r.post_rx(8);
  std::optional<Result<UniqueFd>> result;
  r.vsock->connect(1024, [&](Result<UniqueFd> fd) { result = std::move(fd); });
  auto pk = r.received();
  REQUIRE(pk.size() == 1);
  CHECK(pk[0].h.op == kOpRequest);
  CHECK(pk[0].h.dst_port == 1024);
  uint32_t host_port = pk[0].h.src_port;

  SECTION("accepted") {
    r.send(r.guest_header(1024, host_port, kOpResponse));
    REQUIRE(result.has_value());
    REQUIRE(result->ok());
    REQUIRE(::write((*result)->get(), "x", 1) == 1);
    r.g.poll();
    pk = r.received();
    REQUIRE(pk.size() == 1);
    CHECK(pk[0].data == "x");
  }
  SECTION("refused") {
    r.send(r.guest_header(1024, host_port, kOpRst));
    REQUIRE(result.has_value());
    REQUIRE_FALSE(result->ok());
    CHECK_THAT(result->error().message, Catch::Contains("refused"));
    CHECK(r.vsock->connection_count() == 0);
  }
}

TEST_CASE("vsock: the device never sends more than the guest's credit", "[virtio][vsock]") {
  VsockRig r;
  std::optional<UniqueFd> accepted;
  r.vsock->listen(1025, [&](UniqueFd fd, uint32_t) { accepted = std::move(fd); });
  r.post_rx(32);
  r.send(r.guest_header(6000, 1025, kOpRequest, /*buf_alloc=*/100));
  REQUIRE(r.received().size() == 1);
  std::string big(1000, 'z');
  REQUIRE(::write(accepted->get(), big.data(), big.size()) == 1000);
  r.g.poll();
  auto pk = r.received();
  size_t total = 0;
  for (auto& p : pk) total += p.data.size();
  CHECK(total == 100);
  // The guest consumed it all: a credit update lets the next 100 through.
  auto h = r.guest_header(6000, 1025, kOpCreditUpdate, 100);
  h.fwd_cnt = 100;
  r.send(h);
  r.g.poll();
  total = 0;
  for (auto& p : r.received()) total += p.data.size();
  CHECK(total == 100);
}

TEST_CASE("vsock: a guest that overruns the credit it was given is reset", "[virtio][vsock]") {
  VsockRig r;
  std::optional<UniqueFd> accepted;
  r.vsock->listen(1025, [&](UniqueFd fd, uint32_t) { accepted = std::move(fd); });
  r.post_rx(1);  // room for the RESPONSE only, so no credit update can reach the guest
  r.send(r.guest_header(6000, 1025, kOpRequest));
  REQUIRE(r.received().size() == 1);
  std::string chunk(Vsock::kMaxPacketData, 'a');
  for (int i = 0; i < 4; i++) r.send(r.guest_header(6000, 1025, kOpRw), chunk);  // exactly the credit
  CHECK(r.vsock->connection_count() == 1);
  r.send(r.guest_header(6000, 1025, kOpRw), "one byte too many");
  CHECK(r.vsock->connection_count() == 0);
  r.post_rx(4);
  auto pk = r.received();
  REQUIRE_FALSE(pk.empty());
  CHECK(pk.back().h.op == kOpRst);
}

TEST_CASE("vsock: malformed packets are dropped or reset, never trusted", "[virtio][vsock]") {
  VsockRig r;
  std::optional<UniqueFd> accepted;
  r.vsock->listen(1025, [&](UniqueFd fd, uint32_t) { accepted = std::move(fd); });
  r.post_rx(16);
  r.send(r.guest_header(6000, 1025, kOpRequest));
  REQUIRE(r.received().size() == 1);

  SECTION("length field larger than the payload present") {
    auto h = r.guest_header(6000, 1025, kOpRw);
    h.len = 5000;
    r.send(h, "short");
    auto pk = r.received();
    REQUIRE(pk.size() == 1);
    CHECK(pk[0].h.op == kOpRst);
    CHECK(r.vsock->connection_count() == 0);
  }
  SECTION("spoofed source CID is ignored") {
    auto h = r.guest_header(6000, 1025, kOpRw);
    h.src_cid = 99;
    r.send(h, "spoof");
    CHECK(r.received().empty());
    pollfd p{accepted->get(), POLLIN, 0};
    CHECK(::poll(&p, 1, 50) == 0);
  }
  SECTION("non-stream socket type gets a reset") {
    auto h = r.guest_header(6001, 1025, kOpRequest);
    h.type = 2;
    r.send(h);
    auto pk = r.received();
    REQUIRE(pk.size() == 1);
    CHECK(pk[0].h.op == kOpRst);
  }
  SECTION("a header cut short is ignored") {
    uint64_t gpa = r.g.alloc(20);
    std::memset(r.g.host(gpa), 0xff, 20);
    r.drv->add(1, {{gpa, 20, false}});
    r.drv->kick(1);
    CHECK(r.received().empty());
    CHECK(r.vsock->connection_count() == 1);
  }
  SECTION("data on an unknown connection gets a reset") {
    r.send(r.guest_header(6002, 1025, kOpRw), "who?");
    auto pk = r.received();
    REQUIRE(pk.size() == 1);
    CHECK(pk[0].h.op == kOpRst);
  }
  // The device itself keeps working after all of the above.
  CHECK((r.drv->status() & kStatusNeedsReset) == 0);
}

TEST_CASE("vsock: a malformed ring stops the device and asks for a reset", "[virtio][vsock]") {
  VsockRig r;
  r.drv->set_avail_idx(1, 1000);  // runs far ahead of a 64-entry queue
  r.drv->kick(1);
  CHECK((r.drv->status() & kStatusNeedsReset) != 0);
  // A reset brings it back.
  r.drv->begin();
  for (uint32_t q = 0; q < 3; q++) r.drv->setup_queue(q, kQSize);
  r.drv->driver_ok();
  CHECK((r.drv->status() & kStatusNeedsReset) == 0);
}

TEST_CASE("vsock: host close reaches the guest as SHUTDOWN, guest close as EOF", "[virtio][vsock]") {
  VsockRig r;
  std::optional<UniqueFd> accepted;
  r.vsock->listen(1025, [&](UniqueFd fd, uint32_t) { accepted = std::move(fd); });
  r.post_rx(16);
  r.send(r.guest_header(6000, 1025, kOpRequest));
  REQUIRE(r.received().size() == 1);

  SECTION("guest shuts down both directions") {
    auto h = r.guest_header(6000, 1025, kOpShutdown);
    h.flags = kShutdownRcv | kShutdownSend;
    r.send(h);
    auto pk = r.received();
    REQUIRE(pk.size() == 1);
    CHECK(pk[0].h.op == kOpRst);
    char c;
    CHECK(::read(accepted->get(), &c, 1) == 0);
    CHECK(r.vsock->connection_count() == 0);
  }
  SECTION("host closes its end") {
    accepted.reset();
    r.g.poll();
    auto pk = r.received();
    REQUIRE(pk.size() >= 1);
    CHECK(pk[0].h.op == kOpShutdown);
    CHECK(r.vsock->connection_count() == 0);
  }
}

TEST_CASE("vsock: config space reports the guest CID", "[virtio][vsock]") {
  VsockRig r;
  uint8_t d[8];
  r.transport->mmio_read(0x100, d, 8);
  uint64_t cid;
  std::memcpy(&cid, d, 8);
  CHECK(cid == kCid);
  CHECK(r.drv->reg(0x008) == kTypeVsock);
  CHECK(r.drv->reg(0x000) == 0x74726976);
}

namespace {

size_t open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) n++;
  return n;
}

}  // namespace

TEST_CASE("vsock: a removed listener is never called again and its port resets new connections",
          "[virtio][vsock]") {
  VsockRig r;
  // The callback refers to an object that goes away, as AgentReady's did.
  auto owner = std::make_unique<std::vector<UniqueFd>>();
  auto* accepted = owner.get();
  r.vsock->listen(1025, [accepted](UniqueFd fd, uint32_t) { accepted->push_back(std::move(fd)); });
  r.post_rx(16);
  r.send(r.guest_header(5000, 1025, kOpRequest));
  REQUIRE(r.received().size() == 1);
  CHECK(accepted->size() == 1);

  r.vsock->unlisten(1025);
  std::vector<UniqueFd> keep = std::move(*owner);  // the first connection stays open
  owner.reset();
  r.send(r.guest_header(5001, 1025, kOpRequest));
  auto pk = r.received();
  REQUIRE(pk.size() == 1);
  CHECK(pk[0].h.op == kOpRst);
  CHECK(pk[0].h.dst_port == 5001);
  r.vsock->unlisten(1025);  // again: harmless
}

TEST_CASE("vsock: a once-listener takes the first connection only, later ones are reset and cost no host fd",
          "[virtio][vsock]") {
  VsockRig r;
  std::vector<UniqueFd> accepted;
  r.vsock->listen(1025, [&](UniqueFd fd, uint32_t) { accepted.push_back(std::move(fd)); }, /*once=*/true);
  r.post_rx(32);
  r.send(r.guest_header(5000, 1025, kOpRequest));
  auto pk = r.received();
  REQUIRE(pk.size() == 1);
  CHECK(pk[0].h.op == kOpResponse);
  REQUIRE(accepted.size() == 1);

  size_t fds_before = open_fds();
  for (uint32_t i = 0; i < 200; i++) {
    r.send(r.guest_header(6000 + i, 1025, kOpRequest));
    pk = r.received();
    REQUIRE(pk.size() == 1);
    CHECK(pk[0].h.op == kOpRst);
    r.post_rx(1);
  }
  CHECK(accepted.size() == 1);
  CHECK(r.vsock->connection_count() == 1);
  CHECK(open_fds() == fds_before);
}

TEST_CASE("vsock: a guest that posts no receive buffers cannot grow the control queue", "[virtio][vsock]") {
  VsockRig r;
  r.vsock->listen(1025, [](UniqueFd, uint32_t) {});
  // No rx buffers: every answer the device owes the guest waits in the queue.
  SECTION("connections to a port nobody listens on") {
    for (uint32_t i = 0; i < 3 * Vsock::kMaxPendingControl; i++) r.send(r.guest_header(7000 + i, 7777, kOpRequest));
    CHECK(r.vsock->pending_control() <= Vsock::kMaxPendingControl);
  }
  SECTION("connect and reset, over and over, to a listening port") {
    for (uint32_t i = 0; i < 3 * Vsock::kMaxPendingControl; i++) {
      r.send(r.guest_header(7000 + i, 1025, kOpRequest));
      r.send(r.guest_header(7000 + i, 1025, kOpRst));
    }
    // Each RESPONSE was for a connection the guest has already reset.
    CHECK(r.vsock->pending_control() == 0);
    CHECK(r.vsock->connection_count() == 0);
  }
  SECTION("host connects fail instead of queueing once the queue is full") {
    for (uint32_t i = 0; i < Vsock::kMaxPendingControl; i++) r.send(r.guest_header(7000 + i, 7777, kOpRequest));
    std::optional<Result<UniqueFd>> result;
    r.vsock->connect(1024, [&](Result<UniqueFd> fd) { result = std::move(fd); });
    r.g.poll();
    REQUIRE(result.has_value());
    CHECK_FALSE(result->ok());
    CHECK(r.vsock->pending_control() <= Vsock::kMaxPendingControl);
  }
  // Once the guest posts buffers, the queue drains and the device answers again.
  for (int i = 0; i < 100 && r.vsock->pending_control() > 0; i++) {
    r.post_rx(8);
    r.received();
  }
  REQUIRE(r.vsock->pending_control() == 0);
  r.send(r.guest_header(9000, 7777, kOpRequest));
  r.post_rx(1);
  auto pk = r.received();
  REQUIRE(pk.size() == 1);
  CHECK(pk[0].h.op == kOpRst);
  CHECK(pk[0].h.dst_port == 9000);
}

TEST_CASE("vsock: a steady guest stream to a slower host reader stays within the guest's credit",
          "[virtio][vsock]") {
  VsockRig r;
  std::optional<UniqueFd> accepted;
  r.vsock->listen(1025, [&](UniqueFd fd, uint32_t) { accepted = std::move(fd); });
  r.post_rx(32);
  r.send(r.guest_header(6000, 1025, kOpRequest));
  REQUIRE(r.received().size() == 1);
  REQUIRE(accepted.has_value());
  REQUIRE(set_nonblocking(accepted->get()).ok());

  // One header + payload area, reused by every packet (guest memory is small).
  const uint64_t hdr = r.g.alloc(sizeof(VsockHeader));
  const uint64_t data = r.g.alloc(Vsock::kMaxPacketData);
  auto pattern = [](uint64_t i) { return static_cast<char>((i * 7 + i / 251) & 0xff); };
  uint64_t sent = 0, got = 0, guest_fwd = 0;
  size_t max_buffered = 0;
  bool intact = true;
  char buf[16 << 10];
  for (int round = 0; round < 400; round++) {
    // The guest sends whatever its credit allows.
    uint64_t credit = Vsock::kBufAlloc - (sent - guest_fwd);
    uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(credit, Vsock::kMaxPacketData));
    if (n > 0) {
      auto h = r.guest_header(6000, 1025, kOpRw);
      h.len = n;
      std::memcpy(r.g.host(hdr), &h, sizeof h);
      for (uint32_t k = 0; k < n; k++) r.g.host(data)[k] = static_cast<uint8_t>(pattern(sent + k));
      r.drv->add(1, {{hdr, sizeof h, false}, {data, n, false}});
      r.drv->kick(1);
      sent += n;
    }
    // The host reads less than that each time.
    ssize_t k = ::read(accepted->get(), buf, sizeof buf);
    for (ssize_t j = 0; j < k; j++) intact &= buf[j] == pattern(got + static_cast<uint64_t>(j));
    if (k > 0) got += static_cast<uint64_t>(k);
    r.g.poll();
    // Credit updates come back in rx buffers: track them, give the buffers back.
    auto pk = r.received();
    for (auto& p : pk) {
      REQUIRE(p.h.op != kOpRst);
      guest_fwd = p.h.fwd_cnt;
    }
    if (!pk.empty()) r.post_rx(static_cast<int>(pk.size()));
    {
      std::lock_guard<std::mutex> g(r.transport->lock());
      max_buffered = std::max(max_buffered, r.vsock->buffered_bytes());
    }
  }
  INFO("sent " << sent << ", host read " << got << ", most buffered " << max_buffered);
  CHECK(intact);
  CHECK(got >= (4u << 20));                    // the stream really moved, several times the credit
  CHECK(sent - got > Vsock::kBufAlloc);        // and the host reader really lagged behind
  CHECK(max_buffered <= Vsock::kBufAlloc + 2 * Vsock::kMaxPacketData);
  CHECK(r.vsock->connection_count() == 1);
}
