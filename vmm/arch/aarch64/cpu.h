// aarch64 vCPU bring-up and register access (KVM_ARM_* ioctls).
#pragma once

#include <cstdint>

#include "base/result.h"
#include "vmm/kvm/kvm.h"

namespace spore::vmm::aarch64 {

// Features every vCPU of the board gets: PSCI 0.2+, no SVE, no pointer
// authentication, no PMU. Normalised so a spore's CPUs look the same on
// every host of a class.
struct CpuTemplate {
  uint32_t target = 0;  // from KVM_ARM_PREFERRED_TARGET
  uint32_t features0 = 0;
};

Result<CpuTemplate> preferred_cpu(const kvm::Vm& vm);

// KVM_ARM_VCPU_INIT; secondaries start powered off until PSCI CPU_ON.
Status init_vcpu(const kvm::Vcpu& vcpu, const CpuTemplate& tmpl, bool boot_cpu);

// Boot register state per Documentation/arm64/booting.rst.
Status set_boot_regs(const kvm::Vcpu& vcpu, uint64_t entry, uint64_t fdt);

// ONE_REG id of a core register (struct kvm_regs member at byte offset off).
uint64_t core_reg_id(uint64_t byte_offset);
uint64_t pc_reg_id();

}  // namespace spore::vmm::aarch64
