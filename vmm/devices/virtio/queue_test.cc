#include "vmm/devices/virtio/queue.h"

#include <catch2/catch.hpp>
#include <cstring>

#include "vmm/memory.h"

using namespace spore;
using namespace spore::vmm;
using namespace spore::vmm::virtio;

namespace {

// A queue of 8 entries laid out at fixed guest addresses, written by hand.
struct Fixture {
  static constexpr uint64_t kBase = 0x1000'0000;
  static constexpr uint64_t kDesc = kBase;
  static constexpr uint64_t kAvail = kBase + 0x1000;
  static constexpr uint64_t kUsed = kBase + 0x2000;
  static constexpr uint64_t kData = kBase + 0x3000;

  Fixture() : mem(std::move(*GuestMemory::create_anonymous(kBase, 1 << 20))) {
    q.state().size = 8;
    q.state().ready = true;
    q.state().desc_addr = kDesc;
    q.state().avail_addr = kAvail;
    q.state().used_addr = kUsed;
  }
  void desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0) {
    uint8_t* d = mem.ptr(kDesc + 16ull * i, 16);
    std::memcpy(d, &addr, 8);
    std::memcpy(d + 8, &len, 4);
    std::memcpy(d + 12, &flags, 2);
    std::memcpy(d + 14, &next, 2);
  }
  void avail(uint16_t slot, uint16_t head) { std::memcpy(mem.ptr(kAvail + 4 + 2ull * slot, 2), &head, 2); }
  void avail_idx(uint16_t idx) { std::memcpy(mem.ptr(kAvail + 2, 2), &idx, 2); }

  GuestMemory mem;
  Queue q{256};
};

}  // namespace

TEST_CASE("a well-formed chain pops with its readable and writable parts", "[virtio][queue]") {
  Fixture f;
  f.desc(0, Fixture::kData, 16, kDescFlagNext, 1);
  f.desc(1, Fixture::kData + 16, 100, kDescFlagNext | kDescFlagWrite, 2);
  f.desc(2, Fixture::kData + 200, 1, kDescFlagWrite);
  f.avail(0, 0);
  f.avail_idx(1);
  auto c = f.q.pop(f.mem);
  REQUIRE(c.ok());
  REQUIRE(c->has_value());
  CHECK((*c)->head == 0);
  CHECK((*c)->readable_len == 16);
  CHECK((*c)->writable_len == 101);
  CHECK((*c)->writable.size() == 2);
  auto none = f.q.pop(f.mem);
  REQUIRE(none.ok());
  CHECK_FALSE(none->has_value());
}

TEST_CASE("push_used publishes the element and the index", "[virtio][queue]") {
  Fixture f;
  REQUIRE(f.q.push_used(f.mem, 5, 77).ok());
  uint16_t idx;
  uint32_t id, len;
  std::memcpy(&idx, f.mem.ptr(Fixture::kUsed + 2, 2), 2);
  std::memcpy(&id, f.mem.ptr(Fixture::kUsed + 4, 4), 4);
  std::memcpy(&len, f.mem.ptr(Fixture::kUsed + 8, 4), 4);
  CHECK(idx == 1);
  CHECK(id == 5);
  CHECK(len == 77);
}

TEST_CASE("a descriptor loop is rejected", "[virtio][queue]") {
  Fixture f;
  f.desc(0, Fixture::kData, 8, kDescFlagNext, 1);
  f.desc(1, Fixture::kData, 8, kDescFlagNext, 0);
  f.avail(0, 0);
  f.avail_idx(1);
  auto c = f.q.pop(f.mem);
  REQUIRE_FALSE(c.ok());
  CHECK_THAT(c.error().message, Catch::Contains("loops"));
}

TEST_CASE("out-of-range head and next indices are rejected", "[virtio][queue]") {
  Fixture f;
  SECTION("head") {
    f.avail(0, 8);
    f.avail_idx(1);
    auto c = f.q.pop(f.mem);
    REQUIRE_FALSE(c.ok());
    CHECK_THAT(c.error().message, Catch::Contains("head index"));
  }
  SECTION("next") {
    f.desc(0, Fixture::kData, 8, kDescFlagNext, 200);
    f.avail(0, 0);
    f.avail_idx(1);
    auto c = f.q.pop(f.mem);
    REQUIRE_FALSE(c.ok());
    CHECK_THAT(c.error().message, Catch::Contains("next index"));
  }
}

TEST_CASE("buffers outside guest RAM are rejected, including wrap-around", "[virtio][queue]") {
  Fixture f;
  SECTION("beyond the end") { f.desc(0, Fixture::kBase + (1 << 20) - 4, 8, 0); }
  SECTION("below the start") { f.desc(0, 0x1000, 8, 0); }
  SECTION("address plus length overflows") { f.desc(0, ~0ull - 2, 16, 0); }
  f.avail(0, 0);
  f.avail_idx(1);
  auto c = f.q.pop(f.mem);
  REQUIRE_FALSE(c.ok());
  CHECK_THAT(c.error().message, Catch::Contains("outside guest RAM"));
}

TEST_CASE("indirect descriptors are refused (not negotiated)", "[virtio][queue]") {
  Fixture f;
  f.desc(0, Fixture::kData, 16, kDescFlagIndirect);
  f.avail(0, 0);
  f.avail_idx(1);
  REQUIRE_FALSE(f.q.pop(f.mem).ok());
}

TEST_CASE("a readable descriptor after a writable one is rejected", "[virtio][queue]") {
  Fixture f;
  f.desc(0, Fixture::kData, 16, kDescFlagNext | kDescFlagWrite, 1);
  f.desc(1, Fixture::kData + 16, 16, 0);
  f.avail(0, 0);
  f.avail_idx(1);
  REQUIRE_FALSE(f.q.pop(f.mem).ok());
}

TEST_CASE("an available index that runs ahead by more than the queue size is rejected", "[virtio][queue]") {
  Fixture f;
  f.avail_idx(9);
  auto c = f.q.pop(f.mem);
  REQUIRE_FALSE(c.ok());
  CHECK(f.q.pending(f.mem) == 0);
}

TEST_CASE("the available index wraps around 65535", "[virtio][queue]") {
  Fixture f;
  f.q.state().next_avail = 65535;
  f.desc(3, Fixture::kData, 4, 0);
  f.avail(65535 % 8, 3);
  f.avail_idx(0);  // 65535 + 1
  auto c = f.q.pop(f.mem);
  REQUIRE(c.ok());
  REQUIRE(c->has_value());
  CHECK((*c)->head == 3);
  CHECK(f.q.state().next_avail == 0);
}

TEST_CASE("queue validation checks size and ring placement", "[virtio][queue]") {
  Fixture f;
  CHECK(f.q.validate(f.mem).ok());
  SECTION("size not a power of two") {
    f.q.state().size = 6;
    CHECK_FALSE(f.q.validate(f.mem).ok());
  }
  SECTION("size above the maximum") {
    f.q.state().size = 512;
    CHECK_FALSE(f.q.validate(f.mem).ok());
  }
  SECTION("misaligned descriptor table") {
    f.q.state().desc_addr += 8;
    CHECK_FALSE(f.q.validate(f.mem).ok());
  }
  SECTION("used ring past the end of RAM") {
    f.q.state().used_addr = Fixture::kBase + (1 << 20) - 8;
    CHECK_FALSE(f.q.validate(f.mem).ok());
  }
}

TEST_CASE("chain reader and writer cross segment boundaries", "[virtio][queue]") {
  Fixture f;
  f.desc(0, Fixture::kData, 3, kDescFlagNext, 1);
  f.desc(1, Fixture::kData + 100, 5, kDescFlagNext, 2);
  f.desc(2, Fixture::kData + 200, 4, kDescFlagWrite | kDescFlagNext, 3);
  f.desc(3, Fixture::kData + 300, 4, kDescFlagWrite);
  std::memcpy(f.mem.ptr(Fixture::kData, 3), "abc", 3);
  std::memcpy(f.mem.ptr(Fixture::kData + 100, 5), "defgh", 5);
  f.avail(0, 0);
  f.avail_idx(1);
  auto c = f.q.pop(f.mem);
  REQUIRE(c.ok());
  const DescChain& chain = **c;
  ChainReader r(f.mem, chain);
  char buf[9] = {};
  REQUIRE(r.read(buf, 8));
  CHECK(std::string(buf) == "abcdefgh");
  CHECK_FALSE(r.read(buf, 1));
  ChainWriter w(f.mem, chain);
  REQUIRE(w.write("12345678", 8));
  CHECK(std::memcmp(f.mem.ptr(Fixture::kData + 200, 4), "1234", 4) == 0);
  CHECK(std::memcmp(f.mem.ptr(Fixture::kData + 300, 4), "5678", 4) == 0);
  CHECK_FALSE(w.write("x", 1));
}
