#include "vmm/arch/x86_64/acpi.h"

#include <cstring>

#include "vmm/arch/x86_64/layout.h"

namespace spore::vmm::x86_64 {
namespace {

// Where each table goes, relative to the RSDP.
constexpr uint64_t kXsdtOffset = 0x40;
constexpr uint64_t kFadtOffset = 0x80;
constexpr uint64_t kDsdtOffset = 0x200;
constexpr uint64_t kTablesSize = 0x280;

constexpr size_t kHeaderSize = 36;
constexpr size_t kFadtSize = 276;  // revision 6

// FADT flags.
constexpr uint32_t kFadtWbinvd = 1u << 0;
constexpr uint32_t kFadtPowerButton = 1u << 4;  // no fixed-feature power button
constexpr uint32_t kFadtSleepButton = 1u << 5;
constexpr uint32_t kFadtResetRegSup = 1u << 10;
constexpr uint32_t kFadtHwReduced = 1u << 20;
// IA-PC boot architecture flags: no VGA, no MSI, no CMOS RTC; the absent
// LEGACY_DEVICES and 8042 bits say there are no ISA devices or keyboard
// controller to probe.
constexpr uint16_t kBootArchNoVga = 1u << 2;
constexpr uint16_t kBootArchNoMsi = 1u << 3;
constexpr uint16_t kBootArchNoCmosRtc = 1u << 5;

constexpr uint8_t kSpaceSystemIo = 1;
constexpr uint8_t kAccessByte = 1;
constexpr uint8_t kResetValue = 0x06;  // 0xcf9: full reset, reset CPU
constexpr uint8_t kSleepEnable = 0x20;  // SLP_EN; SLP_TYP sits in bits 2..4

void put_bytes(std::vector<uint8_t>& b, size_t off, const void* p, size_t n) {
  std::memcpy(b.data() + off, p, n);
}
template <class T>
void put(std::vector<uint8_t>& b, size_t off, T v) {
  put_bytes(b, off, &v, sizeof v);
}

uint8_t checksum(const uint8_t* p, size_t n) {
  uint8_t sum = 0;
  for (size_t i = 0; i < n; i++) sum = static_cast<uint8_t>(sum + p[i]);
  return static_cast<uint8_t>(-sum);
}

// The standard header of a system description table at off.
void header(std::vector<uint8_t>& b, size_t off, const char* sig, uint32_t len, uint8_t rev) {
  put_bytes(b, off, sig, 4);
  put<uint32_t>(b, off + 4, len);
  b[off + 8] = rev;
  put_bytes(b, off + 10, "SPORE ", 6);
  put_bytes(b, off + 16, "SPOREVM ", 8);
  put<uint32_t>(b, off + 24, kBoardVersion);
  put_bytes(b, off + 28, "SPOR", 4);
  put<uint32_t>(b, off + 32, 1);
}

void seal(std::vector<uint8_t>& b, size_t off, size_t len) { b[off + 9] = checksum(b.data() + off, len); }

// A generic address structure: one byte of I/O port space.
void io_byte(std::vector<uint8_t>& b, size_t off, uint16_t port) {
  b[off] = kSpaceSystemIo;
  b[off + 1] = 8;  // register bit width
  b[off + 2] = 0;
  b[off + 3] = kAccessByte;
  put<uint64_t>(b, off + 4, port);
}

}  // namespace

uint8_t acpi_s5_request() { return static_cast<uint8_t>((kS5SleepType << 2) | kSleepEnable); }

Result<AcpiTables> build_acpi_tables(uint64_t addr) {
  if (addr % 16 || addr + kTablesSize > kAcpiAddr + kAcpiMax)
    return make_error(ErrorKind::kInternal, "ACPI tables: bad address");
  std::vector<uint8_t> b(kTablesSize, 0);
  const uint64_t xsdt = addr + kXsdtOffset, fadt = addr + kFadtOffset, dsdt = addr + kDsdtOffset;

  // RSDP, ACPI 2.0+: the first 20 bytes have their own checksum.
  put_bytes(b, 0, "RSD PTR ", 8);
  put_bytes(b, 9, "SPORE ", 6);
  b[15] = 2;                        // revision
  put<uint32_t>(b, 16, 0);          // no RSDT
  put<uint32_t>(b, 20, 36);         // length
  put<uint64_t>(b, 24, xsdt);
  b[8] = checksum(b.data(), 20);
  b[32] = checksum(b.data(), 36);

  // XSDT: one entry, the FADT.
  header(b, kXsdtOffset, "XSDT", kHeaderSize + 8, 1);
  put<uint64_t>(b, kXsdtOffset + kHeaderSize, fadt);
  seal(b, kXsdtOffset, kHeaderSize + 8);

  // FADT, revision 6, hardware-reduced.
  const size_t f = kFadtOffset;
  header(b, f, "FACP", kFadtSize, 6);
  put<uint32_t>(b, f + 40, static_cast<uint32_t>(dsdt));
  put<uint16_t>(b, f + 46, static_cast<uint16_t>(kAcpiSciGsi));
  put<uint16_t>(b, f + 109, kBootArchNoVga | kBootArchNoMsi | kBootArchNoCmosRtc);
  put<uint32_t>(b, f + 112, kFadtWbinvd | kFadtPowerButton | kFadtSleepButton | kFadtResetRegSup | kFadtHwReduced);
  io_byte(b, f + 116, kResetControlPort);
  b[f + 128] = kResetValue;
  b[f + 131] = 0;                   // minor version
  put<uint64_t>(b, f + 140, dsdt);  // X_DSDT
  io_byte(b, f + 244, kSleepControlPort);
  io_byte(b, f + 256, kSleepStatusPort);
  put_bytes(b, f + 268, "SPORE-VM", 8);  // hypervisor vendor identity
  seal(b, f, kFadtSize);

  // DSDT: Name (_S5, Package () { 5, 0, 0, 0 }), in AML.
  const uint8_t aml[] = {0x08, '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0a, kS5SleepType, 0x00, 0x00, 0x00};
  header(b, kDsdtOffset, "DSDT", static_cast<uint32_t>(kHeaderSize + sizeof aml), 2);
  put_bytes(b, kDsdtOffset + kHeaderSize, aml, sizeof aml);
  seal(b, kDsdtOffset, kHeaderSize + sizeof aml);

  static_assert(kFadtOffset + kFadtSize <= kDsdtOffset);
  static_assert(kDsdtOffset + kHeaderSize + 13 <= kTablesSize);
  return AcpiTables{addr, std::move(b)};
}

}  // namespace spore::vmm::x86_64
