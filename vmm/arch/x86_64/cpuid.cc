#include "vmm/arch/x86_64/cpuid.h"

#include <algorithm>
#include <cstring>
#include <initializer_list>

#include "base/strings.h"

namespace spore::vmm::x86_64 {
namespace {

constexpr uint32_t bits(std::initializer_list<int> l) {
  uint32_t v = 0;
  for (int b : l) v |= 1u << b;
  return v;
}

// ---- the allow-lists (bit numbers as in the SDM / APM) ----------------------

// Leaf 1 ECX: SSE3, PCLMULQDQ, SSSE3, FMA, CX16, PCID, SSE4.1, SSE4.2,
// x2APIC, MOVBE, POPCNT, AES, XSAVE, AVX, F16C, RDRAND. Not: monitor/mwait,
// VMX/SMX, power and thermal, PDCM (no PMU), DCA, OSXSAVE (KVM derives it).
constexpr uint32_t kLeaf1Ecx = bits({0, 1, 9, 12, 13, 17, 19, 20, 21, 22, 23, 25, 26, 28, 29, 30});
constexpr uint32_t kTscDeadline = 1u << 24;
constexpr uint32_t kHypervisor = 1u << 31;
constexpr uint32_t kNeedsAvx1Ecx = bits({12, 28, 29});  // FMA, AVX, F16C
// Leaf 1 EDX: FPU VME DE PSE TSC MSR PAE CX8 APIC SEP MTRR PGE CMOV PAT
// PSE36 CLFSH MMX FXSR SSE SSE2. Not: MCE/MCA (no machine-check MSRs),
// PN, DS, ACPI thermal, SS, TM, PBE; HTT is set from the vCPU count.
constexpr uint32_t kLeaf1Edx = bits({0, 1, 2, 3, 4, 5, 6, 8, 9, 11, 12, 13, 15, 16, 17, 19, 23, 24, 25, 26});
constexpr uint32_t kHtt = 1u << 28;
// Leaf 6 EAX: ARAT only (the APIC timer keeps running in idle states).
constexpr uint32_t kLeaf6Eax = bits({2});
// Leaf 7.0 EBX: FSGSBASE BMI1 AVX2 FDP_EXCPTN_ONLY SMEP BMI2 ERMS INVPCID
// AVX512F/DQ RDSEED ADX SMAP AVX512IFMA CLFLUSHOPT CLWB AVX512PF/ER/CD SHA
// AVX512BW/VL. Not: TSX (HLE, RTM), MPX, processor trace, SGX.
constexpr uint32_t kLeaf7Ebx =
    bits({0, 3, 5, 6, 7, 8, 9, 10, 16, 17, 18, 19, 20, 21, 23, 24, 26, 27, 28, 29, 30, 31});
constexpr uint32_t kNeedsAvx7Ebx = bits({5});  // AVX2
constexpr uint32_t kAvx512Ebx = bits({16, 17, 21, 26, 27, 28, 30, 31});
// Leaf 7.0 ECX: AVX512VBMI UMIP AVX512_VBMI2 GFNI VAES VPCLMULQDQ
// AVX512_VNNI AVX512_BITALG AVX512_VPOPCNTDQ RDPID. Not: PKU/OSPKE,
// WAITPKG, LA57 (the boot page tables are 4-level), SGX.
constexpr uint32_t kLeaf7Ecx = bits({1, 2, 6, 8, 9, 10, 11, 12, 14, 22});
constexpr uint32_t kAvx512Ecx = bits({1, 6, 11, 12, 14});
constexpr uint32_t kNeedsAvx7Ecx = bits({9, 10});  // VAES, VPCLMULQDQ
// Leaf 7.0 EDX: AVX512_4VNNIW/4FMAPS FSRM AVX512_VP2INTERSECT MD_CLEAR
// SERIALIZE AVX512_FP16. Not: hybrid, AMX, the speculation-control MSRs
// (SPEC_CTRL, STIBP, L1D flush, ARCH/CORE_CAPABILITIES, SSBD): the guest
// kernel uses its software mitigations.
constexpr uint32_t kLeaf7Edx = bits({2, 3, 4, 8, 10, 14, 23});
constexpr uint32_t kAvx512Edx = bits({2, 3, 8, 23});
// XSAVE components: x87, SSE, AVX, and AVX-512's opmask, ZMM_Hi256,
// Hi16_ZMM. Not: MPX, PKRU, AMX, supervisor states.
constexpr uint64_t kXcr0Allowed = bits({0, 1, 2, 5, 6, 7});
constexpr uint64_t kXcr0Required = bits({0, 1});
// Leaf 0xD.1 EAX: XSAVEOPT XSAVEC XGETBV1. Not: XSAVES, XFD.
constexpr uint32_t kLeafDSub1Eax = bits({0, 1, 2});
// KVM leaf 0x40000001 EAX: kvmclock (both MSR sets), no I/O delay, the
// stable-clock bit. Not: async page faults, steal time, PV EOI, PV
// spinlocks and TLB flushes, PV IPIs (each brings guest memory the
// hypervisor writes into, or state a spore would have to carry).
constexpr uint32_t kKvmFeatures = bits({0, 1, 3, 24});
// Leaf 0x80000001 ECX: LAHF_LM, CmpLegacy (set from the vCPU count), ABM,
// SSE4A, misaligned SSE, 3DNowPrefetch, XOP, FMA4, TBM. Not: SVM, extended
// APIC space, OSVW, IBS, SKINIT, WDT, TOPOEXT, performance counters, MONITORX.
constexpr uint32_t kExt1Ecx = bits({0, 5, 6, 7, 8, 11, 16, 21});
constexpr uint32_t kCmpLegacy = 1u << 1;
constexpr uint32_t kNeedsAvxExt1Ecx = bits({11, 16});  // XOP, FMA4
// Leaf 0x80000001 EDX: AMD's copies of leaf 1's bits, SYSCALL, NX, MMXEXT,
// FXSR_OPT, PDPE1GB, RDTSCP, LM, 3DNow!.
constexpr uint32_t kExt1Edx = (kLeaf1Edx & bits({0, 1, 2, 3, 4, 5, 6, 8, 9, 12, 13, 15, 16, 17, 23, 24})) |
                              bits({11, 20, 22, 25, 26, 27, 29, 30, 31});
constexpr uint32_t kLongMode = 1u << 29;
// Leaf 0x80000007 EDX: invariant TSC only.
constexpr uint32_t kExt7Edx = bits({8});
// Leaf 0x80000008 EBX: XSAVE error pointers, WBNOINVD. Not: IBPB, IBRS,
// STIBP, SSBD and the rest of AMD's speculation controls.
constexpr uint32_t kExt8Ebx = bits({2, 9});

constexpr uint32_t kMaxBasicLeaf = 0xd;
constexpr uint32_t kMaxExtLeaf = 0x8000'0008;
constexpr uint32_t kKvmSignatureLeaf = 0x4000'0000;
constexpr uint32_t kKvmFeaturesLeaf = 0x4000'0001;
constexpr char kBrand[48] = "spore x86_64 vCPU";

// Bits needed to number n APIC IDs.
uint32_t id_bits(uint32_t n) {
  uint32_t b = 0;
  while ((1u << b) < n) b++;
  return b;
}

}  // namespace

const CpuidEntry* find_cpuid(const std::vector<CpuidEntry>& table, uint32_t function, uint32_t index) {
  for (const auto& e : table)
    if (e.function == function && (e.index == index || !(e.flags & kCpuidIndexSignificant))) return &e;
  return nullptr;
}

Result<std::vector<CpuidEntry>> normalize_cpuid(const std::vector<CpuidEntry>& in, const CpuidOptions& o) {
  if (o.vcpus < 1 || o.vcpus > 255) return make_error(ErrorKind::kInternal, "CPUID: bad vCPU count");
  auto need = [&in](uint32_t f, uint32_t i, const char* what) -> Result<CpuidEntry> {
    const CpuidEntry* e = find_cpuid(in, f, i);
    if (!e) return make_error(ErrorKind::kUnavailable, strfmt("this host's KVM offers no CPUID leaf 0x%x (%s)", f, what));
    return *e;
  };
  auto get = [&in](uint32_t f, uint32_t i) -> CpuidEntry {
    const CpuidEntry* e = find_cpuid(in, f, i);
    return e ? *e : CpuidEntry{};
  };
  std::vector<CpuidEntry> out;
  auto add = [&out](uint32_t f, uint32_t i, bool indexed, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
    out.push_back({f, i, indexed ? kCpuidIndexSignificant : 0u, a, b, c, d});
  };
  const uint32_t vcpus = o.vcpus;

  SPORE_ASSIGN_OR_RETURN(CpuidEntry l0, need(0, 0, "vendor"));
  SPORE_ASSIGN_OR_RETURN(CpuidEntry l1, need(1, 0, "features"));
  SPORE_ASSIGN_OR_RETURN(CpuidEntry e0, need(0x8000'0000, 0, "extended leaves"));
  SPORE_ASSIGN_OR_RETURN(CpuidEntry e1, need(0x8000'0001, 0, "extended features"));
  SPORE_ASSIGN_OR_RETURN(CpuidEntry kvm0, need(kKvmSignatureLeaf, 0, "KVM signature"));
  SPORE_ASSIGN_OR_RETURN(CpuidEntry kvm1, need(kKvmFeaturesLeaf, 0, "KVM paravirtual features"));
  if (l0.eax < kMaxBasicLeaf) return make_error(ErrorKind::kUnavailable, "this host's KVM offers no XSAVE leaf (0xd)");
  if (e0.eax < kMaxExtLeaf)
    return make_error(ErrorKind::kUnavailable, "this host's KVM offers no address-size leaf (0x80000008)");
  if (!(e1.edx & kLongMode)) return make_error(ErrorKind::kUnavailable, "this host's KVM offers no long mode");
  if (!(l1.edx & (1u << 9))) return make_error(ErrorKind::kUnavailable, "this host's KVM offers no local APIC");
  if (std::memcmp(&kvm0.ebx, "KVMK", 4) != 0)
    return make_error(ErrorKind::kUnavailable, "this host's hypervisor leaves are not KVM's");
  if (!(kvm1.eax & 1u << 3)) return make_error(ErrorKind::kUnavailable, "this host's KVM offers no kvmclock");

  // XSAVE first: which state components the guest gets decides which
  // instruction-set features it may see.
  SPORE_ASSIGN_OR_RETURN(CpuidEntry d0, need(0xd, 0, "XSAVE"));
  uint64_t xcr0 = ((static_cast<uint64_t>(d0.edx) << 32) | d0.eax) & kXcr0Allowed;
  if ((xcr0 & kXcr0Required) != kXcr0Required || !(l1.ecx & (1u << 26)))
    return make_error(ErrorKind::kUnavailable, "this host's KVM offers no XSAVE for x87 and SSE state");
  std::vector<CpuidEntry> comps;
  for (uint32_t i = 2; i < 64; i++) {
    CpuidEntry c = get(0xd, i);
    if (!(xcr0 & (1ull << i))) continue;
    if (c.eax == 0 || c.ebx < 576) {
      xcr0 &= ~(1ull << i);  // no size or offset given: not usable
      continue;
    }
    comps.push_back({0xd, i, kCpuidIndexSignificant, c.eax, c.ebx, c.ecx & 2, 0});  // ECX bit 1: 64-byte aligned when compacted
  }
  // AVX-512's three components come together, and only on top of AVX.
  constexpr uint64_t kAvxState = bits({2}), kAvx512State = bits({5, 6, 7});
  if (!(xcr0 & kAvxState) || (xcr0 & kAvx512State) != kAvx512State) xcr0 &= ~kAvx512State;
  std::erase_if(comps, [xcr0](const CpuidEntry& c) { return !(xcr0 & (1ull << c.index)); });
  const bool avx = xcr0 & kAvxState, avx512 = xcr0 & kAvx512State;
  uint32_t max_size = 576;  // legacy area + XSAVE header
  for (const auto& c : comps) max_size = std::max(max_size, c.ebx + c.eax);

  // Basic leaves: the vendor as it is (the guest kernel picks its code paths
  // by it), the highest leaf fixed.
  add(0, 0, false, kMaxBasicLeaf, l0.ebx, l0.ecx, l0.edx);
  // Leaf 1: the host's family/model/stepping (errata are keyed on them);
  // CLFLUSH line size kept; logical processor count = vCPUs; APIC ID per vCPU.
  uint32_t ecx1 = (l1.ecx & kLeaf1Ecx) | kHypervisor | (o.tsc_deadline ? kTscDeadline : 0);
  if (!avx) ecx1 &= ~kNeedsAvx1Ecx;
  uint32_t edx1 = (l1.edx & kLeaf1Edx) | (vcpus > 1 ? kHtt : 0);
  add(1, 0, false, l1.eax, (l1.ebx & 0xff00) | (vcpus << 16), ecx1, edx1);
  add(6, 0, false, get(6, 0).eax & kLeaf6Eax, 0, 0, 0);
  CpuidEntry l7 = get(7, 0);
  uint32_t ebx7 = l7.ebx & kLeaf7Ebx, ecx7 = l7.ecx & kLeaf7Ecx, edx7 = l7.edx & kLeaf7Edx;
  if (!avx) {
    ebx7 &= ~kNeedsAvx7Ebx;
    ecx7 &= ~kNeedsAvx7Ecx;
  }
  if (!avx512) {
    ebx7 &= ~kAvx512Ebx;
    ecx7 &= ~kAvx512Ecx;
    edx7 &= ~kAvx512Edx;
  }
  add(7, 0, true, 0, ebx7, ecx7, edx7);
  // Topology (leaf 0xB): one package, vCPUs cores of one thread each.
  add(0xb, 0, true, 0, 1, 1u << 8, 0);
  add(0xb, 1, true, id_bits(vcpus), vcpus, (2u << 8) | 1, 0);
  // EBX (the size XCR0 needs now) is KVM's to keep current; 576 is its value at reset.
  add(0xd, 0, true, static_cast<uint32_t>(xcr0), 576, max_size, static_cast<uint32_t>(xcr0 >> 32));
  add(0xd, 1, true, get(0xd, 1).eax & kLeafDSub1Eax, 0, 0, 0);
  out.insert(out.end(), comps.begin(), comps.end());

  // KVM's leaves: the signature, and kvmclock without the rest.
  add(kKvmSignatureLeaf, 0, false, kKvmFeaturesLeaf, kvm0.ebx, kvm0.ecx, kvm0.edx);
  add(kKvmFeaturesLeaf, 0, false, kvm1.eax & kKvmFeatures, 0, 0, 0);

  // Extended leaves.
  add(0x8000'0000, 0, false, kMaxExtLeaf, e0.ebx, e0.ecx, e0.edx);
  uint32_t ecx_e1 = (e1.ecx & kExt1Ecx & (avx ? ~0u : ~kNeedsAvxExt1Ecx)) | (vcpus > 1 ? kCmpLegacy : 0);
  add(0x8000'0001, 0, false, e1.eax, 0, ecx_e1, e1.edx & kExt1Edx);
  for (uint32_t i = 0; i < 3; i++) {
    uint32_t r[4];
    std::memcpy(r, kBrand + 16 * i, 16);
    add(0x8000'0002 + i, 0, false, r[0], r[1], r[2], r[3]);
  }
  add(0x8000'0005, 0, false, 0, 0, 0, 0);
  add(0x8000'0006, 0, false, 0, 0, 0, 0);
  add(0x8000'0007, 0, false, 0, 0, 0, get(0x8000'0007, 0).edx & kExt7Edx);
  CpuidEntry e8 = get(0x8000'0008, 0);
  // Address sizes as the host has them (a guest must not see more physical
  // bits than the host); core count for AMD's topology.
  add(0x8000'0008, 0, false, e8.eax & 0xffff, e8.ebx & kExt8Ebx, (id_bits(vcpus) << 12) | (vcpus - 1), 0);
  return out;
}

std::vector<CpuidEntry> cpuid_for_vcpu(std::vector<CpuidEntry> table, uint32_t apic_id) {
  for (auto& e : table) {
    if (e.function == 1) e.ebx = (e.ebx & 0x00ff'ffff) | (apic_id << 24);
    if (e.function == 0xb) e.edx = apic_id;
  }
  return table;
}

}  // namespace spore::vmm::x86_64
