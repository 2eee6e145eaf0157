#include "vmm/devices/generation.h"

#include <sys/random.h>
#include <time.h>

#include <cstring>

namespace spore::vmm {
namespace {

enum : uint64_t {
  kRegMagic = 0x00,
  kRegVersion = 0x04,
  kRegGenLo = 0x08,
  kRegGenHi = 0x0c,
  kRegTimeLo = 0x10,
  kRegTimeHi = 0x14,
  kRegResumedLo = 0x18,
  kRegResumedHi = 0x1c,
  kRegSeed = 0x20,        // 32 bytes
  kRegInstanceId = 0x40,  // 16 bytes
  kRegSporeId = 0x50,     // 16 bytes
  kRegIntStatus = 0x60,
  kRegIntAck = 0x64,
};

uint64_t realtime_ns() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

Status fill_random(uint8_t* p, size_t n) {
  if (::getrandom(p, n, 0) != static_cast<ssize_t>(n)) return errno_error("getrandom");
  return ok_status();
}

// 32-bit word of a byte array at a register offset.
uint32_t word(const uint8_t* bytes, uint64_t off) {
  uint32_t v;
  std::memcpy(&v, bytes + off, 4);
  return v;
}

}  // namespace

Status GenerationDevice::init_fresh() {
  std::lock_guard<std::mutex> g(mu_);
  s_ = GenerationState{};
  s_.generation = 1;
  SPORE_TRY(fill_random(s_.seed.data(), s_.seed.size()));
  SPORE_TRY(fill_random(s_.instance_id.data(), s_.instance_id.size()));
  return ok_status();
}

Status GenerationDevice::resume_from(const GenerationState& saved, const std::array<uint8_t, 16>& spore_id) {
  std::lock_guard<std::mutex> g(mu_);
  s_ = saved;
  s_.generation = saved.generation + 1;
  s_.resumed_ns = realtime_ns();
  s_.spore_id = spore_id;
  s_.int_status |= 1;
  SPORE_TRY(fill_random(s_.seed.data(), s_.seed.size()));
  SPORE_TRY(fill_random(s_.instance_id.data(), s_.instance_id.size()));
  return ok_status();
}

void GenerationDevice::notify_guest() {
  if (irq_) irq_->trigger();
}

GenerationState GenerationDevice::state() const {
  std::lock_guard<std::mutex> g(mu_);
  return s_;
}

void GenerationDevice::save(Encoder& e, const GenerationState& s) {
  e.u64(s.generation);
  e.u64(s.resumed_ns);
  e.bytes(s.seed.data(), s.seed.size());
  e.bytes(s.instance_id.data(), s.instance_id.size());
  e.bytes(s.spore_id.data(), s.spore_id.size());
  e.u32(s.int_status);
}

Result<GenerationState> GenerationDevice::load(Decoder& d) {
  GenerationState s;
  s.generation = d.u64();
  s.resumed_ns = d.u64();
  d.bytes(s.seed.data(), s.seed.size());
  d.bytes(s.instance_id.data(), s.instance_id.size());
  d.bytes(s.spore_id.data(), s.spore_id.size());
  s.int_status = d.u32();
  if (!d.ok()) return make_error(ErrorKind::kCorrupt, "generation device state is truncated");
  return s;
}

void GenerationDevice::mmio_read(uint64_t offset, uint8_t* data, size_t len) {
  std::lock_guard<std::mutex> g(mu_);
  uint64_t v = 0;
  if (len == 8 && offset % 8 == 0 && offset < kRegSeed) {
    // Whole 64-bit registers in one access.
    switch (offset) {
      case kRegGenLo: v = s_.generation; break;
      case kRegTimeLo: v = realtime_ns(); break;
      case kRegResumedLo: v = s_.resumed_ns; break;
      default: v = static_cast<uint64_t>(kVersion) << 32 | kMagic; break;
    }
    mmio_fill(data, len, v);
    return;
  }
  if (len != 4 || offset % 4) {
    mmio_fill(data, len, 0);
    return;
  }
  switch (offset) {
    case kRegMagic: v = kMagic; break;
    case kRegVersion: v = kVersion; break;
    case kRegGenLo: v = static_cast<uint32_t>(s_.generation); break;
    case kRegGenHi: v = static_cast<uint32_t>(s_.generation >> 32); break;
    case kRegTimeLo:
      time_latch_ = realtime_ns();
      v = static_cast<uint32_t>(time_latch_);
      break;
    case kRegTimeHi: v = static_cast<uint32_t>(time_latch_ >> 32); break;
    case kRegResumedLo: v = static_cast<uint32_t>(s_.resumed_ns); break;
    case kRegResumedHi: v = static_cast<uint32_t>(s_.resumed_ns >> 32); break;
    case kRegIntStatus: v = s_.int_status; break;
    default:
      if (offset >= kRegSeed && offset < kRegSeed + 32) v = word(s_.seed.data(), offset - kRegSeed);
      else if (offset >= kRegInstanceId && offset < kRegInstanceId + 16)
        v = word(s_.instance_id.data(), offset - kRegInstanceId);
      else if (offset >= kRegSporeId && offset < kRegSporeId + 16) v = word(s_.spore_id.data(), offset - kRegSporeId);
      break;
  }
  mmio_fill(data, len, v);
}

void GenerationDevice::mmio_write(uint64_t offset, const uint8_t* data, size_t len) {
  if (offset != kRegIntAck || len != 4) return;
  std::lock_guard<std::mutex> g(mu_);
  s_.int_status &= ~static_cast<uint32_t>(mmio_value(data, len));
}

}  // namespace spore::vmm
