#include "vmm/devices/rtc.h"

#include <catch2/catch.hpp>
#include <climits>
#include <cstring>
#include <ctime>

using namespace spore;
using namespace spore::vmm;

namespace {

std::string encoded(int64_t offset_s) {
  RtcState s;
  s.offset_s = offset_s;
  Encoder e;
  Pl031::save(e, s);
  return e.take();
}

uint32_t read_reg(Pl031& rtc, uint64_t off) {
  uint8_t d[4];
  rtc.mmio_read(off, d, 4);
  uint32_t v;
  std::memcpy(&v, d, 4);
  return v;
}

}  // namespace

TEST_CASE("rtc: a spore's clock offset beyond what the guest could have set is refused", "[rtc]") {
  for (int64_t bad : {INT64_MAX, INT64_MIN, (int64_t{1} << 32) + 1, -(int64_t{1} << 32) - 1}) {
    std::string bytes = encoded(bad);
    Decoder d(bytes);
    auto s = Pl031::load(d);
    INFO("offset " << bad);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().kind == ErrorKind::kCorrupt);
  }
}

TEST_CASE("rtc: offsets the guest can set survive a save and load, and the counter follows them", "[rtc]") {
  Pl031 rtc;
  // The guest sets the clock to 0 and to the counter's top (32-bit seconds).
  for (uint32_t set : {0u, 0xffffffffu, 1000u}) {
    uint8_t d[4];
    std::memcpy(d, &set, 4);
    rtc.mmio_write(0x08, d, 4);  // LR
    std::string bytes;
    {
      Encoder e;
      Pl031::save(e, rtc.state());
      bytes = e.take();
    }
    Decoder d2(bytes);
    auto s = Pl031::load(d2);
    REQUIRE(s.ok());
    Pl031 restored;
    restored.restore(*s);
    uint32_t now = read_reg(restored, 0x00);  // DR
    CHECK(static_cast<uint32_t>(now - set) < 60);
  }
}
