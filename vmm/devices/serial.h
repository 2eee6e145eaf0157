// ARM PL011 UART, output only: enough of the register file for Linux's
// amba-pl011 driver and earlycon. Bytes the guest writes go to a sink.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>

#include "base/codec.h"
#include "base/result.h"
#include "vmm/devices/mmio_bus.h"

namespace spore::vmm {

struct SerialState {
  uint32_t ibrd = 0, fbrd = 0, lcr_h = 0, cr = 0x300, ifls = 0x12;
  uint32_t imsc = 0, ris = 0, dmacr = 0;
};

class Pl011 final : public MmioDevice {
 public:
  using Sink = std::function<void(const char* data, size_t len)>;
  using LevelIrq = std::function<void(bool level)>;

  Pl011(Sink sink, LevelIrq irq) : sink_(std::move(sink)), irq_(std::move(irq)) {}

  void mmio_read(uint64_t offset, uint8_t* data, size_t len) override;
  void mmio_write(uint64_t offset, const uint8_t* data, size_t len) override;

  SerialState state() const;
  // Puts the registers back and re-drives the interrupt line to match.
  void restore(const SerialState& s);

  static void save(Encoder& e, const SerialState& s);
  static Result<SerialState> load(Decoder& d);

 private:
  void update_irq();  // with mu_ held

  std::mutex mu_;
  Sink sink_;
  LevelIrq irq_;
  SerialState s_;
  bool level_ = false;
};

}  // namespace spore::vmm
