// A 16550A UART (the PC's COM1), output only: enough of the register file
// for Linux's 8250 driver to detect a 16550A, print through it with THRE
// interrupts, and pass its probes (scratch, loopback, THRE re-assertion).
// Bytes the guest transmits go to a sink at once: the FIFO is infinitely
// fast, so the transmitter is always empty. Nothing is ever received.
//
// Registers are 8-bit, at offsets 0..7 from the base (x86 port I/O).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>

#include "base/codec.h"
#include "base/result.h"
#include "vmm/devices/mmio_bus.h"

namespace spore::vmm {

struct Uart8250State {
  uint8_t ier = 0, lcr = 0, mcr = 0, scr = 0, dll = 0x0c, dlm = 0;  // 9600 baud on a 1.8432 MHz clock
  bool fifo_enabled = false;
  bool thre_pending = false;  // THR empty was signalled and not yet read from IIR
  bool rx_ready = false;      // a byte looped back in loopback mode waits in RBR
  uint8_t rbr = 0;
};

class Uart8250 final : public MmioDevice {
 public:
  using Sink = std::function<void(const char* data, size_t len)>;
  using LevelIrq = std::function<void(bool level)>;

  // Register offsets and the bits the tests and the board name.
  enum : uint64_t { kRbrThr = 0, kIer = 1, kIirFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7 };
  static constexpr uint8_t kIerThri = 0x02;
  static constexpr uint8_t kIirNoInt = 0x01;
  static constexpr uint8_t kIirThri = 0x02;
  static constexpr uint8_t kIirRdi = 0x04;
  static constexpr uint8_t kIirFifo = 0xc0;
  static constexpr uint8_t kLcrDlab = 0x80;
  static constexpr uint8_t kMcrOut2 = 0x08;
  static constexpr uint8_t kMcrLoop = 0x10;
  static constexpr uint8_t kLsrDr = 0x01;
  static constexpr uint8_t kLsrThre = 0x20;
  static constexpr uint8_t kLsrTemt = 0x40;

  Uart8250(Sink sink, LevelIrq irq) : sink_(std::move(sink)), irq_(std::move(irq)) {}

  // Accesses wider than a byte touch only their first register.
  void mmio_read(uint64_t offset, uint8_t* data, size_t len) override;
  void mmio_write(uint64_t offset, const uint8_t* data, size_t len) override;

  Uart8250State state() const;
  // Puts the registers back and re-drives the interrupt line to match.
  void restore(const Uart8250State& s);

  static void save(Encoder& e, const Uart8250State& s);
  static Result<Uart8250State> load(Decoder& d);

 private:
  uint8_t iir() const;     // with mu_ held
  void update_irq();       // with mu_ held

  mutable std::mutex mu_;
  Sink sink_;
  LevelIrq irq_;
  Uart8250State s_;
  bool level_ = false;
};

}  // namespace spore::vmm
