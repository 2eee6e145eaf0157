// How an x86 guest turns itself off or resets: the ACPI sleep control
// register (hardware-reduced ACPI; SLP_EN with \_S5's type is power-off),
// the reset control register at 0xcf9, the keyboard controller's reset
// command, and the POST port, whose writes are only delays. One instance
// per port; the board decides what an event does.
#pragma once

#include <functional>

#include "vmm/devices/mmio_bus.h"

namespace spore::vmm::x86_64 {

class PowerControl final : public MmioDevice {
 public:
  enum class Event { kPowerOff, kReset };
  using Handler = std::function<void(Event)>;

  // The ports this device answers (each at offset 0 of its own bus range).
  enum class Port { kSleepControl, kSleepStatus, kResetControl, kI8042Data, kI8042Command, kPost };

  PowerControl(Port port, Handler handler) : port_(port), handler_(std::move(handler)) {}

  void mmio_read(uint64_t offset, uint8_t* data, size_t len) override;
  void mmio_write(uint64_t offset, const uint8_t* data, size_t len) override;

 private:
  Port port_;
  Handler handler_;
};

}  // namespace spore::vmm::x86_64
