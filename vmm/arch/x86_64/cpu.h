// x86_64 vCPU bring-up: the CPUID table, boot MSRs, local APIC wiring and
// the register state of the 64-bit boot protocol (KVM's x86 ioctls).
#pragma once

#include <cstdint>
#include <vector>

#include "base/result.h"
#include "vmm/arch/x86_64/cpuid.h"
#include "vmm/kvm/kvm.h"

namespace spore::vmm::x86_64 {

// KVM_GET_SUPPORTED_CPUID: everything this host's KVM can show a guest.
Result<std::vector<CpuidEntry>> supported_cpuid(const kvm::Kvm& kvm);

// CPUID (the board's table with this vCPU's APIC ID), the boot MSRs, and
// LINT0 = ExtINT, LINT1 = NMI on its local APIC. vCPU i has APIC ID i.
Status init_vcpu(const kvm::Vcpu& vcpu, const std::vector<CpuidEntry>& cpuid);

// The bootstrap processor's state at the 64-bit entry point: long mode with
// the boot page tables and GDT, rip = entry, rsi = the zero page.
Status set_boot_regs(const kvm::Vcpu& vcpu, uint64_t entry, uint64_t boot_params);

}  // namespace spore::vmm::x86_64
