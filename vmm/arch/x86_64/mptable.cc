#include "vmm/arch/x86_64/mptable.h"

#include <cstring>

#include "base/strings.h"
#include "vmm/arch/x86_64/layout.h"

namespace spore::vmm::x86_64 {
namespace {

enum : uint8_t { kEntryProcessor = 0, kEntryBus = 1, kEntryIoApic = 2, kEntryIoInterrupt = 3, kEntryLocalInterrupt = 4 };
enum : uint8_t { kIntTypeInt = 0, kIntTypeNmi = 1, kIntTypeExtInt = 3 };
constexpr uint8_t kCpuEnabled = 1, kCpuBootstrap = 2;
constexpr uint8_t kLapicVersion = 0x14;  // what KVM's local APIC reports
constexpr uint8_t kIoApicVersion = 0x11;
constexpr uint8_t kIsaBusId = 0;
constexpr uint32_t kCpuidFeaturesFpuApic = (1u << 0) | (1u << 9);
constexpr size_t kFloatingSize = 16;

class Bytes {
 public:
  void u8(uint8_t v) { b_.push_back(v); }
  void u16(uint16_t v) { raw(&v, 2); }
  void u32(uint32_t v) { raw(&v, 4); }
  void str(const char* s, size_t n) {  // space-padded, not terminated
    size_t len = std::strlen(s);
    for (size_t i = 0; i < n; i++) b_.push_back(i < len ? static_cast<uint8_t>(s[i]) : ' ');
  }
  void raw(const void* p, size_t n) {
    auto* c = static_cast<const uint8_t*>(p);
    b_.insert(b_.end(), c, c + n);
  }
  std::vector<uint8_t>& v() { return b_; }

 private:
  std::vector<uint8_t> b_;
};

uint8_t checksum(const uint8_t* p, size_t n) {
  uint8_t sum = 0;
  for (size_t i = 0; i < n; i++) sum = static_cast<uint8_t>(sum + p[i]);
  return static_cast<uint8_t>(-sum);
}

}  // namespace

Result<std::vector<uint8_t>> build_mptable(uint32_t vcpus, uint64_t addr) {
  if (vcpus < 1 || vcpus > kMaxVcpus) return make_error(ErrorKind::kInternal, "MP table: bad vCPU count");
  if (addr % 16 || addr + kMpTableMax > 0x10'0000) return make_error(ErrorKind::kInternal, "MP table: bad address");

  // The configuration table, header first (checksums and sizes filled in last).
  Bytes t;
  t.raw("PCMP", 4);
  t.u16(0);  // base table length
  t.u8(4);   // specification revision 1.4
  t.u8(0);   // checksum
  t.str("SPORE", 8);
  t.str("SPORE-VM", 12);
  t.u32(0);  // OEM table pointer
  t.u16(0);  // OEM table size
  t.u16(0);  // entry count
  t.u32(static_cast<uint32_t>(kLapicBase));
  t.u16(0);  // extended table length
  t.u8(0);   // extended table checksum
  t.u8(0);
  uint16_t entries = 0;

  for (uint32_t i = 0; i < vcpus; i++) {
    t.u8(kEntryProcessor);
    t.u8(static_cast<uint8_t>(i));  // local APIC ID
    t.u8(kLapicVersion);
    t.u8(kCpuEnabled | (i == 0 ? kCpuBootstrap : 0));
    t.u32(0x600);  // CPU signature: family 6 (informational; Linux reads CPUID)
    t.u32(kCpuidFeaturesFpuApic);
    t.u32(0);
    t.u32(0);
    entries++;
  }
  t.u8(kEntryBus);
  t.u8(kIsaBusId);
  t.str("ISA", 6);
  entries++;
  t.u8(kEntryIoApic);
  t.u8(kIoApicId);
  t.u8(kIoApicVersion);
  t.u8(1);  // enabled
  t.u32(static_cast<uint32_t>(kIoApicBase));
  entries++;
  for (uint32_t pin = 0; pin < kIoApicPins; pin++) {
    t.u8(kEntryIoInterrupt);
    t.u8(kIntTypeInt);
    t.u16(0);  // polarity and trigger as the bus defines them: ISA, edge, active high
    t.u8(kIsaBusId);
    t.u8(static_cast<uint8_t>(pin));
    t.u8(kIoApicId);
    t.u8(static_cast<uint8_t>(pin));
    entries++;
  }
  for (auto [type, lint] : {std::pair<uint8_t, uint8_t>{kIntTypeExtInt, 0}, {kIntTypeNmi, 1}}) {
    t.u8(kEntryLocalInterrupt);
    t.u8(type);
    t.u16(0);
    t.u8(kIsaBusId);
    t.u8(0);
    t.u8(0xff);  // every local APIC
    t.u8(lint);
    entries++;
  }
  std::vector<uint8_t>& table = t.v();
  uint16_t len = static_cast<uint16_t>(table.size());
  std::memcpy(table.data() + 4, &len, 2);
  std::memcpy(table.data() + 34, &entries, 2);
  table[7] = checksum(table.data(), table.size());

  Bytes out;
  out.raw("_MP_", 4);
  out.u32(static_cast<uint32_t>(addr + kFloatingSize));  // the configuration table follows
  out.u8(1);  // length in 16-byte units
  out.u8(4);  // specification revision 1.4
  out.u8(0);  // checksum
  out.u8(0);  // feature 1: a configuration table is present
  out.u8(0);  // feature 2: virtual wire mode (no IMCR)
  out.u8(0);
  out.u8(0);
  out.u8(0);
  std::vector<uint8_t>& v = out.v();
  v[10] = checksum(v.data(), kFloatingSize);
  v.insert(v.end(), table.begin(), table.end());
  if (v.size() > kMpTableMax) return make_error(ErrorKind::kInternal, strfmt("MP table: %zu bytes", v.size()));
  return v;
}

}  // namespace spore::vmm::x86_64
