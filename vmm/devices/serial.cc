#include "vmm/devices/serial.h"

namespace spore::vmm {
namespace {

enum : uint64_t {
  kDr = 0x000,
  kRsr = 0x004,
  kFr = 0x018,
  kIlpr = 0x020,
  kIbrd = 0x024,
  kFbrd = 0x028,
  kLcrH = 0x02c,
  kCr = 0x030,
  kIfls = 0x034,
  kImsc = 0x038,
  kRis = 0x03c,
  kMis = 0x040,
  kIcr = 0x044,
  kDmacr = 0x048,
  kPeriphId0 = 0xfe0,
};

constexpr uint32_t kFrRxEmpty = 1u << 4;
constexpr uint32_t kFrTxEmpty = 1u << 7;
constexpr uint32_t kIntTx = 1u << 5;
constexpr uint32_t kIntMask = 0x7ff;

// PL011 r1p5 peripheral id, then the PrimeCell id.
constexpr uint8_t kIds[8] = {0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1};

}  // namespace

SerialState Pl011::state() const {
  auto* self = const_cast<Pl011*>(this);
  std::lock_guard<std::mutex> g(self->mu_);
  return s_;
}

void Pl011::restore(const SerialState& s) {
  std::lock_guard<std::mutex> g(mu_);
  s_ = s;
  level_ = false;
  bool level = (s_.ris & s_.imsc) != 0;
  if (level && irq_) irq_(true);
  level_ = level;
}

void Pl011::save(Encoder& e, const SerialState& s) {
  for (uint32_t v : {s.ibrd, s.fbrd, s.lcr_h, s.cr, s.ifls, s.imsc, s.ris, s.dmacr}) e.u32(v);
}

Result<SerialState> Pl011::load(Decoder& d) {
  SerialState s;
  for (uint32_t* v : {&s.ibrd, &s.fbrd, &s.lcr_h, &s.cr, &s.ifls, &s.imsc, &s.ris, &s.dmacr}) *v = d.u32();
  if (!d.ok()) return make_error(ErrorKind::kCorrupt, "UART state is truncated");
  s.imsc &= 0x7ff;
  s.ris &= 0x7ff;
  return s;
}

void Pl011::update_irq() {
  bool level = (s_.ris & s_.imsc) != 0;
  if (level != level_) {
    level_ = level;
    if (irq_) irq_(level);
  }
}

void Pl011::mmio_read(uint64_t offset, uint8_t* data, size_t len) {
  std::lock_guard<std::mutex> g(mu_);
  uint32_t v = 0;
  switch (offset) {
    case kDr: v = 0; break;  // no input: reads see an empty FIFO
    case kRsr: v = 0; break;
    case kFr: v = kFrRxEmpty | kFrTxEmpty; break;
    case kIlpr: v = 0; break;
    case kIbrd: v = s_.ibrd; break;
    case kFbrd: v = s_.fbrd; break;
    case kLcrH: v = s_.lcr_h; break;
    case kCr: v = s_.cr; break;
    case kIfls: v = s_.ifls; break;
    case kImsc: v = s_.imsc; break;
    case kRis: v = s_.ris; break;
    case kMis: v = s_.ris & s_.imsc; break;
    case kDmacr: v = s_.dmacr; break;
    default:
      if (offset >= kPeriphId0 && offset < kPeriphId0 + 32 && offset % 4 == 0) v = kIds[(offset - kPeriphId0) / 4];
      break;
  }
  mmio_fill(data, len, v);
}

void Pl011::mmio_write(uint64_t offset, const uint8_t* data, size_t len) {
  uint32_t v = static_cast<uint32_t>(mmio_value(data, len));
  std::lock_guard<std::mutex> g(mu_);
  switch (offset) {
    case kDr: {
      char c = static_cast<char>(v & 0xff);
      if (sink_) sink_(&c, 1);
      // The byte left the (infinitely fast) FIFO at once: TX wants more.
      s_.ris |= kIntTx;
      break;
    }
    case kIbrd: s_.ibrd = v; break;
    case kFbrd: s_.fbrd = v; break;
    case kLcrH: s_.lcr_h = v; break;
    case kCr: s_.cr = v; break;
    case kIfls: s_.ifls = v; break;
    case kImsc: s_.imsc = v & kIntMask; break;
    case kIcr: s_.ris &= ~v; break;
    case kDmacr: s_.dmacr = v; break;
    default: break;
  }
  update_irq();
}

}  // namespace spore::vmm
