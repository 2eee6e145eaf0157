#include "vmm/arch/x86_64/cpu.h"

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

#include "base/strings.h"
#include "vmm/arch/x86_64/boot.h"
#include "vmm/arch/x86_64/layout.h"

namespace spore::vmm::x86_64 {
namespace {

// struct kvm_cpuid2 and struct kvm_msrs end in a flexible array declared
// with __DECLARE_FLEX_ARRAY, which C++ lays out differently from C (its
// empty struct takes a byte), so their sizeof, and the ioctl numbers built
// from it, are wrong in C++. These are the C layouts, spelled out.
struct CpuidHeader {
  uint32_t nent;
  uint32_t padding;
};
struct MsrsHeader {
  uint32_t nmsrs;
  uint32_t pad;
};
static_assert(sizeof(kvm_cpuid_entry2) == 40 && sizeof(kvm_msr_entry) == 16);
constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CpuidHeader);
constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, CpuidHeader);
constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, MsrsHeader);

constexpr uint32_t kMaxCpuidEntries = 256;

// MSRs set at boot: fast string operations on, and MTRRs enabled with
// write-back as the default memory type (what firmware leaves behind).
constexpr uint32_t kMsrMiscEnable = 0x1a0;
constexpr uint64_t kMiscEnableFastString = 1;
constexpr uint32_t kMsrMtrrDefType = 0x2ff;
constexpr uint64_t kMtrrEnableWriteBack = (1u << 11) | 6;

// Local APIC registers (offsets in struct kvm_lapic_state).
constexpr size_t kApicLvtLint0 = 0x350, kApicLvtLint1 = 0x360;
constexpr uint32_t kDeliveryExtInt = 7 << 8, kDeliveryNmi = 4 << 8;

int xioctl(int fd, unsigned long req, void* arg) {
  int r;
  do {
    r = ::ioctl(fd, req, arg);
  } while (r < 0 && errno == EINTR);
  return r;
}

// A kvm_cpuid2 (or kvm_msrs) in an 8-byte aligned buffer: header, then entries.
template <class Header, class Entry>
std::vector<uint64_t> flex_buffer(uint32_t n) {
  static_assert(sizeof(Header) == 8 && sizeof(Entry) % 8 == 0);
  std::vector<uint64_t> buf((sizeof(Header) + size_t{n} * sizeof(Entry)) / 8, 0);
  Header h{};
  std::memcpy(&h, &n, sizeof n);
  std::memcpy(buf.data(), &h, sizeof h);
  return buf;
}
template <class Entry>
Entry* flex_entries(std::vector<uint64_t>& buf) {
  return reinterpret_cast<Entry*>(buf.data() + 1);
}

Status set_cpuid(const kvm::Vcpu& vcpu, const std::vector<CpuidEntry>& table) {
  auto buf = flex_buffer<CpuidHeader, kvm_cpuid_entry2>(static_cast<uint32_t>(table.size()));
  auto* e = flex_entries<kvm_cpuid_entry2>(buf);
  for (size_t i = 0; i < table.size(); i++) {
    e[i] = kvm_cpuid_entry2{};
    e[i].function = table[i].function;
    e[i].index = table[i].index;
    e[i].flags = table[i].flags;
    e[i].eax = table[i].eax;
    e[i].ebx = table[i].ebx;
    e[i].ecx = table[i].ecx;
    e[i].edx = table[i].edx;
  }
  if (xioctl(vcpu.fd(), kSetCpuid2, buf.data()) < 0) return errno_error("KVM_SET_CPUID2");
  return ok_status();
}

Status set_msrs(const kvm::Vcpu& vcpu, const std::vector<std::pair<uint32_t, uint64_t>>& msrs) {
  auto buf = flex_buffer<MsrsHeader, kvm_msr_entry>(static_cast<uint32_t>(msrs.size()));
  auto* e = flex_entries<kvm_msr_entry>(buf);
  for (size_t i = 0; i < msrs.size(); i++) {
    e[i] = kvm_msr_entry{};
    e[i].index = msrs[i].first;
    e[i].data = msrs[i].second;
  }
  // KVM_SET_MSRS stops at the first MSR it refuses and returns how many it set.
  int n = xioctl(vcpu.fd(), kSetMsrs, buf.data());
  if (n < 0) return errno_error("KVM_SET_MSRS");
  if (static_cast<size_t>(n) != msrs.size())
    return make_error(ErrorKind::kUnavailable, strfmt("this host's KVM refused MSR 0x%x", msrs[static_cast<size_t>(n)].first));
  return ok_status();
}

Status wire_lapic(const kvm::Vcpu& vcpu) {
  kvm_lapic_state s{};
  if (xioctl(vcpu.fd(), KVM_GET_LAPIC, &s) < 0) return errno_error("KVM_GET_LAPIC");
  auto set_lvt = [&s](size_t off, uint32_t delivery) {
    uint32_t v;
    std::memcpy(&v, s.regs + off, 4);
    v = (v & ~0x700u) | delivery;
    std::memcpy(s.regs + off, &v, 4);
  };
  set_lvt(kApicLvtLint0, kDeliveryExtInt);
  set_lvt(kApicLvtLint1, kDeliveryNmi);
  if (xioctl(vcpu.fd(), KVM_SET_LAPIC, &s) < 0) return errno_error("KVM_SET_LAPIC");
  return ok_status();
}

kvm_segment flat_segment(uint16_t selector, uint8_t type, bool code) {
  kvm_segment s{};
  s.base = 0;
  s.limit = 0xffff'ffff;
  s.selector = selector;
  s.type = type;
  s.present = 1;
  s.dpl = 0;
  s.db = code ? 0 : 1;
  s.s = 1;
  s.l = code ? 1 : 0;
  s.g = 1;
  return s;
}

}  // namespace

Result<std::vector<CpuidEntry>> supported_cpuid(const kvm::Kvm& kvm) {
  auto buf = flex_buffer<CpuidHeader, kvm_cpuid_entry2>(kMaxCpuidEntries);
  if (xioctl(kvm.fd(), kGetSupportedCpuid, buf.data()) < 0) return errno_error("KVM_GET_SUPPORTED_CPUID");
  CpuidHeader h;
  std::memcpy(&h, buf.data(), sizeof h);
  if (h.nent > kMaxCpuidEntries) return make_error(ErrorKind::kInternal, "KVM_GET_SUPPORTED_CPUID: implausible count");
  const auto* e = flex_entries<kvm_cpuid_entry2>(buf);
  std::vector<CpuidEntry> out;
  for (uint32_t i = 0; i < h.nent; i++)
    out.push_back({e[i].function, e[i].index, e[i].flags, e[i].eax, e[i].ebx, e[i].ecx, e[i].edx});
  return out;
}

Status init_vcpu(const kvm::Vcpu& vcpu, const std::vector<CpuidEntry>& cpuid) {
  SPORE_TRY(set_cpuid(vcpu, cpuid_for_vcpu(cpuid, vcpu.index())));
  SPORE_TRY(set_msrs(vcpu, {{kMsrMiscEnable, kMiscEnableFastString}, {kMsrMtrrDefType, kMtrrEnableWriteBack}}));
  return wire_lapic(vcpu);
}

Status set_boot_regs(const kvm::Vcpu& vcpu, uint64_t entry, uint64_t boot_params) {
  kvm_sregs sregs{};
  if (xioctl(vcpu.fd(), KVM_GET_SREGS, &sregs) < 0) return errno_error("KVM_GET_SREGS");
  sregs.cs = flat_segment(kBootCodeSelector, 0xb, true);  // execute/read, accessed
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = flat_segment(kBootDataSelector, 0x3, false);  // read/write, accessed
  kvm_segment tr{};
  tr.selector = kBootTssSelector;
  tr.limit = 0x67;
  tr.type = 0xb;  // busy 64-bit TSS
  tr.present = 1;
  sregs.tr = tr;
  sregs.gdt.base = kGdtAddr;
  sregs.gdt.limit = kBootGdtLimit;
  sregs.idt.base = 0;
  sregs.idt.limit = 0;
  constexpr uint64_t kCr0Pe = 1, kCr0Et = 1 << 4, kCr0Ne = 1 << 5, kCr0Pg = 1ull << 31;
  constexpr uint64_t kCr4Pae = 1 << 5;
  constexpr uint64_t kEferLme = 1 << 8, kEferLma = 1 << 10;
  sregs.cr0 = kCr0Pe | kCr0Et | kCr0Ne | kCr0Pg;
  sregs.cr3 = kPml4Addr;
  sregs.cr4 = kCr4Pae;
  sregs.efer = kEferLme | kEferLma;
  if (xioctl(vcpu.fd(), KVM_SET_SREGS, &sregs) < 0) return errno_error("KVM_SET_SREGS");

  kvm_regs regs{};
  regs.rflags = 0x2;
  regs.rip = entry;
  regs.rsi = boot_params;
  regs.rsp = regs.rbp = kBootStackTop;
  if (xioctl(vcpu.fd(), KVM_SET_REGS, &regs) < 0) return errno_error("KVM_SET_REGS");

  kvm_fpu fpu{};
  fpu.fcw = 0x37f;
  fpu.mxcsr = 0x1f80;
  if (xioctl(vcpu.fd(), KVM_SET_FPU, &fpu) < 0) return errno_error("KVM_SET_FPU");
  return ok_status();
}

}  // namespace spore::vmm::x86_64
