// The firmware tables a guest kernel reads: the MP table and ACPI, checked
// the way a kernel walks them.
#include <catch2/catch.hpp>
#include <cstring>

#include "vmm/arch/x86_64/acpi.h"
#include "vmm/arch/x86_64/layout.h"
#include "vmm/arch/x86_64/mptable.h"

using namespace spore;
using namespace spore::vmm::x86_64;

namespace {

uint8_t sum(const uint8_t* p, size_t n) {
  uint8_t s = 0;
  for (size_t i = 0; i < n; i++) s = static_cast<uint8_t>(s + p[i]);
  return s;
}
template <class T>
T get(const std::vector<uint8_t>& b, size_t off) {
  REQUIRE(off + sizeof(T) <= b.size());
  T v;
  std::memcpy(&v, b.data() + off, sizeof v);
  return v;
}

}  // namespace

TEST_CASE("MP table: checksummed, one processor entry per vCPU, every IOAPIC pin routed from its ISA IRQ",
          "[x86tables]") {
  for (uint32_t vcpus : {1u, 2u, kMaxVcpus}) {
    INFO(vcpus << " vCPUs");
    auto t = build_mptable(vcpus, kMpTableAddr);
    REQUIRE(t.ok());
    const std::vector<uint8_t>& b = *t;
    CHECK(b.size() <= kMpTableMax);
    // Floating pointer.
    CHECK(std::memcmp(b.data(), "_MP_", 4) == 0);
    CHECK(get<uint32_t>(b, 4) == kMpTableAddr + 16);
    CHECK(b[9] == 4);
    CHECK(sum(b.data(), 16) == 0);
    // Configuration table.
    const size_t base = 16;
    CHECK(std::memcmp(b.data() + base, "PCMP", 4) == 0);
    uint16_t len = get<uint16_t>(b, base + 4);
    REQUIRE(base + len == b.size());
    CHECK(sum(b.data() + base, len) == 0);
    CHECK(get<uint32_t>(b, base + 36) == kLapicBase);
    uint16_t count = get<uint16_t>(b, base + 34);
    CHECK(count == vcpus + 1 + 1 + kIoApicPins + 2);

    size_t off = base + 44;
    uint32_t cpus = 0, pins = 0, lints = 0, buses = 0, ioapics = 0;
    for (uint16_t i = 0; i < count; i++) {
      REQUIRE(off < b.size());
      switch (b[off]) {
        case 0:  // processor
          CHECK(b[off + 1] == cpus);                    // APIC ID = vCPU index
          CHECK((b[off + 3] & 1) == 1);                 // enabled
          CHECK(((b[off + 3] & 2) != 0) == (cpus == 0));  // only vCPU 0 boots
          cpus++;
          off += 20;
          break;
        case 1:
          CHECK(std::memcmp(b.data() + off + 2, "ISA   ", 6) == 0);
          buses++;
          off += 8;
          break;
        case 2:
          CHECK(b[off + 1] == kIoApicId);
          CHECK(get<uint32_t>(b, off + 4) == kIoApicBase);
          ioapics++;
          off += 8;
          break;
        case 3:
          CHECK(b[off + 5] == b[off + 7]);  // ISA IRQ n -> pin n
          CHECK(b[off + 6] == kIoApicId);
          CHECK(b[off + 7] == pins);
          pins++;
          off += 8;
          break;
        case 4:
          CHECK(b[off + 6] == 0xff);  // every local APIC
          CHECK(b[off + 7] == lints);
          CHECK(b[off + 1] == (lints == 0 ? 3 : 1));  // ExtINT on LINT0, NMI on LINT1
          lints++;
          off += 8;
          break;
        default:
          FAIL("unknown MP entry type " << int(b[off]));
      }
    }
    CHECK(off == b.size());
    CHECK(cpus == vcpus);
    CHECK(pins == kIoApicPins);
    CHECK(lints == 2);
    CHECK(buses == 1);
    CHECK(ioapics == 1);
  }
  CHECK_FALSE(build_mptable(0, kMpTableAddr).ok());
  CHECK_FALSE(build_mptable(kMaxVcpus + 1, kMpTableAddr).ok());
}

TEST_CASE("ACPI: RSDP to XSDT to a hardware-reduced FADT with sleep and reset registers, and a DSDT with the S5 sleep object",
          "[x86tables]") {
  auto t = build_acpi_tables(kAcpiAddr);
  REQUIRE(t.ok());
  const std::vector<uint8_t>& b = t->bytes;
  REQUIRE(t->rsdp_addr == kAcpiAddr);
  auto at = [&](uint64_t gpa) {
    REQUIRE(gpa >= kAcpiAddr);
    REQUIRE(gpa - kAcpiAddr < b.size());
    return static_cast<size_t>(gpa - kAcpiAddr);
  };
  auto check_table = [&](size_t off, const char* sig) {
    INFO(sig);
    CHECK(std::memcmp(b.data() + off, sig, 4) == 0);
    uint32_t len = get<uint32_t>(b, off + 4);
    REQUIRE(off + len <= b.size());
    CHECK(sum(b.data() + off, len) == 0);
    return len;
  };

  CHECK(std::memcmp(b.data(), "RSD PTR ", 8) == 0);
  CHECK(sum(b.data(), 20) == 0);
  CHECK(sum(b.data(), 36) == 0);
  CHECK(b[15] == 2);
  size_t xsdt = at(get<uint64_t>(b, 24));
  uint32_t xlen = check_table(xsdt, "XSDT");
  REQUIRE(xlen == 36 + 8);
  size_t fadt = at(get<uint64_t>(b, xsdt + 36));
  CHECK(check_table(fadt, "FACP") == 276);
  uint32_t flags = get<uint32_t>(b, fadt + 112);
  CHECK((flags & (1u << 20)) != 0);  // HW_REDUCED_ACPI
  CHECK((flags & (1u << 10)) != 0);  // RESET_REG_SUP
  // Reset register: one byte of I/O space at 0xcf9, value 6.
  CHECK(b[fadt + 116] == 1);
  CHECK(get<uint64_t>(b, fadt + 120) == kResetControlPort);
  CHECK(b[fadt + 128] == 6);
  // Sleep control and status: one byte each, in I/O space.
  CHECK(b[fadt + 244] == 1);
  CHECK(b[fadt + 245] == 8);
  CHECK(get<uint64_t>(b, fadt + 248) == kSleepControlPort);
  CHECK(get<uint64_t>(b, fadt + 260) == kSleepStatusPort);
  // No CMOS RTC, no VGA, no 8042.
  CHECK(get<uint16_t>(b, fadt + 109) == ((1u << 2) | (1u << 3) | (1u << 5)));
  size_t dsdt = at(get<uint64_t>(b, fadt + 140));
  CHECK(get<uint32_t>(b, fadt + 40) == get<uint64_t>(b, fadt + 140));
  uint32_t dlen = check_table(dsdt, "DSDT");
  // Name (_S5, Package (4) { 5, 0, 0, 0 })
  const uint8_t s5[] = {0x08, '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0a, kS5SleepType, 0, 0, 0};
  REQUIRE(dlen == 36 + sizeof s5);
  CHECK(std::memcmp(b.data() + dsdt + 36, s5, sizeof s5) == 0);
  // What Linux writes to enter S5: SLP_TYP = 5 in bits 2..4, SLP_EN.
  CHECK(acpi_s5_request() == ((5 << 2) | 0x20));

  CHECK_FALSE(build_acpi_tables(kAcpiAddr + 1).ok());
}
