#include "vmm/arch/x86_64/power.h"

#include <catch2/catch.hpp>
#include <vector>

#include "vmm/arch/x86_64/acpi.h"

using namespace spore::vmm::x86_64;
using Port = PowerControl::Port;
using Event = PowerControl::Event;

namespace {

std::vector<Event> after_writes(Port port, std::initializer_list<uint8_t> values) {
  std::vector<Event> events;
  PowerControl dev(port, [&events](Event e) { events.push_back(e); });
  for (uint8_t v : values) dev.mmio_write(0, &v, 1);
  return events;
}

}  // namespace

TEST_CASE("x86 power: S5 through the sleep control register powers off, other sleep states do nothing",
          "[x86power]") {
  CHECK(after_writes(Port::kSleepControl, {acpi_s5_request()}) == std::vector<Event>{Event::kPowerOff});
  // SLP_TYP 5 without SLP_EN, SLP_EN with S3's type, the status register.
  CHECK(after_writes(Port::kSleepControl, {5 << 2, (3 << 2) | 0x20, 0}).empty());
  CHECK(after_writes(Port::kSleepStatus, {0x80, acpi_s5_request()}).empty());
}

TEST_CASE("x86 power: 0xcf9 with RST_CPU and the keyboard controller's 0xfe reset, nothing else does",
          "[x86power]") {
  // Linux writes 0x02 (select a hard reset) and then 0x06 (do it).
  CHECK(after_writes(Port::kResetControl, {0x02, 0x06}) == std::vector<Event>{Event::kReset});
  CHECK(after_writes(Port::kResetControl, {0x00, 0x02, 0x08}).empty());
  CHECK(after_writes(Port::kI8042Command, {0xfe}) == std::vector<Event>{Event::kReset});
  CHECK(after_writes(Port::kI8042Command, {0xad, 0xa7, 0xff}).empty());
  CHECK(after_writes(Port::kI8042Data, {0xfe}).empty());
  CHECK(after_writes(Port::kPost, {0xfe, 0x06}).empty());
}

TEST_CASE("x86 power: the keyboard controller reads as idle so a reset never waits on it", "[x86power]") {
  PowerControl dev(Port::kI8042Command, [](Event) {});
  uint8_t status = 0xff;
  dev.mmio_read(0, &status, 1);
  CHECK((status & 0x02) == 0);  // input buffer empty
}
