#include "vmm/devices/uart8250.h"

namespace spore::vmm {
namespace {

constexpr uint8_t kIerRdi = 0x01;
constexpr uint8_t kIerMask = 0x0f;  // the 16550A has four enable bits; the rest read as zero
constexpr uint8_t kFcrEnable = 0x01;
constexpr uint8_t kFcrClearRx = 0x02;
constexpr uint8_t kMcrMask = 0x1f;
// Modem status: with loopback, the outputs fed back (DTR->DSR, RTS->CTS,
// OUT1->RI, OUT2->DCD); otherwise a modem that is always there and ready.
constexpr uint8_t kMsrCts = 0x10, kMsrDsr = 0x20, kMsrRi = 0x40, kMsrDcd = 0x80;

}  // namespace

Uart8250State Uart8250::state() const {
  std::lock_guard<std::mutex> g(mu_);
  return s_;
}

void Uart8250::restore(const Uart8250State& s) {
  std::lock_guard<std::mutex> g(mu_);
  s_ = s;
  level_ = false;
  update_irq();
}

void Uart8250::save(Encoder& e, const Uart8250State& s) {
  for (uint8_t v : {s.ier, s.lcr, s.mcr, s.scr, s.dll, s.dlm, s.rbr}) e.u8(v);
  e.u8(static_cast<uint8_t>((s.fifo_enabled ? 1 : 0) | (s.thre_pending ? 2 : 0) | (s.rx_ready ? 4 : 0)));
}

Result<Uart8250State> Uart8250::load(Decoder& d) {
  Uart8250State s;
  for (uint8_t* v : {&s.ier, &s.lcr, &s.mcr, &s.scr, &s.dll, &s.dlm, &s.rbr}) *v = d.u8();
  uint8_t flags = d.u8();
  if (!d.ok()) return make_error(ErrorKind::kCorrupt, "UART state is truncated");
  if (flags & ~7u) return make_error(ErrorKind::kCorrupt, "UART state has unknown flags");
  s.ier &= kIerMask;
  s.mcr &= kMcrMask;
  s.fifo_enabled = flags & 1;
  s.thre_pending = flags & 2;
  s.rx_ready = flags & 4;
  return s;
}

uint8_t Uart8250::iir() const {
  uint8_t fifo = s_.fifo_enabled ? kIirFifo : 0;
  if ((s_.ier & kIerRdi) && s_.rx_ready) return fifo | kIirRdi;
  if ((s_.ier & kIerThri) && s_.thre_pending) return fifo | kIirThri;
  return fifo | kIirNoInt;
}

void Uart8250::update_irq() {
  // A PC routes the interrupt through OUT2; in loopback it stays inside.
  bool level = !(iir() & kIirNoInt) && (s_.mcr & kMcrOut2) && !(s_.mcr & kMcrLoop);
  if (level != level_) {
    level_ = level;
    if (irq_) irq_(level);
  }
}

void Uart8250::mmio_read(uint64_t offset, uint8_t* data, size_t len) {
  std::lock_guard<std::mutex> g(mu_);
  const bool dlab = s_.lcr & kLcrDlab;
  uint8_t v = 0;
  switch (offset) {
    case kRbrThr:
      if (dlab) {
        v = s_.dll;
      } else {
        v = s_.rx_ready ? s_.rbr : 0;
        s_.rx_ready = false;
      }
      break;
    case kIer: v = dlab ? s_.dlm : s_.ier; break;
    case kIirFcr:
      v = iir();
      // Reading IIR acknowledges a THRE interrupt it reports.
      if ((v & 0x0f) == kIirThri) s_.thre_pending = false;
      break;
    case kLcr: v = s_.lcr; break;
    case kMcr: v = s_.mcr; break;
    case kLsr: v = kLsrThre | kLsrTemt | (s_.rx_ready ? kLsrDr : 0); break;
    case kMsr:
      if (s_.mcr & kMcrLoop) {
        v = ((s_.mcr & 0x01) ? kMsrDsr : 0) | ((s_.mcr & 0x02) ? kMsrCts : 0) | ((s_.mcr & 0x04) ? kMsrRi : 0) |
            ((s_.mcr & 0x08) ? kMsrDcd : 0);
      } else {
        v = kMsrDcd | kMsrDsr | kMsrCts;
      }
      break;
    case kScr: v = s_.scr; break;
    default: break;
  }
  for (size_t i = 0; i < len; i++) data[i] = i == 0 ? v : 0;
  update_irq();
}

void Uart8250::mmio_write(uint64_t offset, const uint8_t* data, size_t len) {
  if (len == 0) return;
  uint8_t v = data[0];
  std::lock_guard<std::mutex> g(mu_);
  const bool dlab = s_.lcr & kLcrDlab;
  switch (offset) {
    case kRbrThr:
      if (dlab) {
        s_.dll = v;
      } else {
        if (s_.mcr & kMcrLoop) {
          s_.rbr = v;
          s_.rx_ready = true;
        } else if (sink_) {
          char c = static_cast<char>(v);
          sink_(&c, 1);
        }
        // The byte left at once: the holding register is empty again.
        s_.thre_pending = true;
      }
      break;
    case kIer:
      if (dlab) {
        s_.dlm = v;
      } else {
        uint8_t old = s_.ier;
        s_.ier = v & kIerMask;
        // Enabling the THRE interrupt while the register is empty raises it
        // (Linux checks that a UART re-asserts it).
        if ((s_.ier & kIerThri) && !(old & kIerThri)) s_.thre_pending = true;
      }
      break;
    case kIirFcr:
      s_.fifo_enabled = v & kFcrEnable;
      if (v & kFcrClearRx) s_.rx_ready = false;
      break;
    case kLcr: s_.lcr = v; break;
    case kMcr: s_.mcr = v & kMcrMask; break;
    case kScr: s_.scr = v; break;
    default: break;  // LSR and MSR are read-only
  }
  update_irq();
}

}  // namespace spore::vmm
