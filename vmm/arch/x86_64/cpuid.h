// The guest-visible CPUID: what KVM supports on this host, filtered through
// an allow-list per leaf and register and normalised, so the guest sees the
// same kind of CPU on every host that has the features, and nothing of the
// host's caches, topology, power management, PMU or model name. The policy
// is in doc/board-x86_64.md ("CPUID"). Host-independent: it works on plain
// entries so it is unit-tested anywhere.
#pragma once

#include <cstdint>
#include <vector>

#include "base/result.h"

namespace spore::vmm::x86_64 {

struct CpuidEntry {
  uint32_t function = 0;
  uint32_t index = 0;
  uint32_t flags = 0;  // kCpuidIndexSignificant when index selects a subleaf
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
  bool operator==(const CpuidEntry&) const = default;
};

// KVM_CPUID_FLAG_SIGNIFCANT_INDEX.
inline constexpr uint32_t kCpuidIndexSignificant = 1;

struct CpuidOptions {
  uint32_t vcpus = 1;
  bool tsc_deadline = false;  // KVM_CAP_TSC_DEADLINE_TIMER: the local APIC emulates it
};

// The board's CPUID from KVM_GET_SUPPORTED_CPUID's entries, for vCPU 0.
// Fails when the host lacks what the board needs (long mode, APIC, KVM's
// paravirtual leaves, XSAVE's basic state...).
Result<std::vector<CpuidEntry>> normalize_cpuid(const std::vector<CpuidEntry>& supported, const CpuidOptions& o);

// The same table for the vCPU with this APIC ID (leaf 1 and leaf 0xB name it).
std::vector<CpuidEntry> cpuid_for_vcpu(std::vector<CpuidEntry> table, uint32_t apic_id);

// The entry for (function, index), or nullptr.
const CpuidEntry* find_cpuid(const std::vector<CpuidEntry>& table, uint32_t function, uint32_t index = 0);

}  // namespace spore::vmm::x86_64
