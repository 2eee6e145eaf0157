#include "vmm/devices/rtc.h"

#include <ctime>

namespace spore::vmm {
namespace {

enum : uint64_t { kDr = 0x00, kMr = 0x04, kLr = 0x08, kCr = 0x0c, kImsc = 0x10, kRis = 0x14, kMis = 0x18, kIcr = 0x1c };
constexpr uint64_t kPeriphId0 = 0xfe0;
// The guest sets the clock as a 32-bit count of seconds, so the offset from
// the host's clock never needs to reach 2^32 either way; a larger one in a
// spore was not written by us (and would overflow the arithmetic below).
constexpr int64_t kMaxOffsetS = int64_t{1} << 32;
constexpr uint8_t kIds[8] = {0x31, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1};

int64_t host_seconds() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec;
}

// The counter the guest reads: modulo 2^32 like the hardware's, computed
// without signed overflow whatever the offset.
uint32_t counter(int64_t offset_s) {
  return static_cast<uint32_t>(static_cast<uint64_t>(host_seconds()) + static_cast<uint64_t>(offset_s));
}

}  // namespace

RtcState Pl031::state() const {
  std::lock_guard<std::mutex> g(mu_);
  return s_;
}

void Pl031::restore(const RtcState& s) {
  std::lock_guard<std::mutex> g(mu_);
  s_ = s;
}

void Pl031::save(Encoder& e, const RtcState& s) {
  e.u64(static_cast<uint64_t>(s.offset_s));
  e.u32(s.match);
  e.u32(s.imsc);
  e.u32(s.ris);
}

Result<RtcState> Pl031::load(Decoder& d) {
  RtcState s;
  s.offset_s = static_cast<int64_t>(d.u64());
  s.match = d.u32();
  s.imsc = d.u32() & 1;
  s.ris = d.u32() & 1;
  if (!d.ok()) return make_error(ErrorKind::kCorrupt, "RTC state is truncated");
  if (s.offset_s > kMaxOffsetS || s.offset_s < -kMaxOffsetS)
    return make_error(ErrorKind::kCorrupt, "RTC state: the clock offset is out of range");
  return s;
}

void Pl031::mmio_read(uint64_t offset, uint8_t* data, size_t len) {
  std::lock_guard<std::mutex> g(mu_);
  uint32_t v = 0;
  switch (offset) {
    case kDr: v = counter(s_.offset_s); break;
    case kMr: v = s_.match; break;
    case kLr: v = counter(s_.offset_s); break;
    case kCr: v = 1; break;  // always running
    case kImsc: v = s_.imsc; break;
    case kRis: v = s_.ris; break;
    case kMis: v = s_.ris & s_.imsc; break;
    default:
      if (offset >= kPeriphId0 && offset < kPeriphId0 + 32 && offset % 4 == 0) v = kIds[(offset - kPeriphId0) / 4];
      break;
  }
  mmio_fill(data, len, v);
}

void Pl031::mmio_write(uint64_t offset, const uint8_t* data, size_t len) {
  uint32_t v = static_cast<uint32_t>(mmio_value(data, len));
  std::lock_guard<std::mutex> g(mu_);
  switch (offset) {
    case kMr: s_.match = v; break;  // alarms are not delivered; nothing on the board uses them
    case kLr: s_.offset_s = static_cast<int64_t>(v) - host_seconds(); break;
    case kImsc: s_.imsc = v & 1; break;
    case kIcr: s_.ris &= ~v; break;
    default: break;
  }
}

}  // namespace spore::vmm
