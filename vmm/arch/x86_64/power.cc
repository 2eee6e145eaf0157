#include "vmm/arch/x86_64/power.h"

#include <cstring>

#include "vmm/arch/x86_64/layout.h"

namespace spore::vmm::x86_64 {
namespace {

constexpr uint8_t kSleepEnable = 0x20;
constexpr uint8_t kSleepTypeMask = 0x1c;
constexpr uint8_t kResetCpu = 0x04;         // 0xcf9 bit 2: do the reset bit 1 selects
constexpr uint8_t kI8042PulseReset = 0xfe;  // pulse output line 0: the CPU's reset

}  // namespace

void PowerControl::mmio_read(uint64_t offset, uint8_t* data, size_t len) {
  // The keyboard controller reads as idle (no output, input buffer empty),
  // so a guest's reset path does not wait on it; the rest read as zero.
  std::memset(data, 0, len);
}

void PowerControl::mmio_write(uint64_t offset, const uint8_t* data, size_t len) {
  if (len == 0 || offset != 0) return;
  const uint8_t v = data[0];
  switch (port_) {
    case Port::kSleepControl:
      if ((v & kSleepEnable) && ((v & kSleepTypeMask) >> 2) == kS5SleepType) handler_(Event::kPowerOff);
      break;
    case Port::kResetControl:
      if (v & kResetCpu) handler_(Event::kReset);
      break;
    case Port::kI8042Command:
      if (v == kI8042PulseReset) handler_(Event::kReset);
      break;
    case Port::kSleepStatus:  // wake status: nothing ever wakes
    case Port::kI8042Data:
    case Port::kPost:
      break;
  }
}

}  // namespace spore::vmm::x86_64
