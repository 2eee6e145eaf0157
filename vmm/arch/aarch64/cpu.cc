#include "vmm/arch/aarch64/cpu.h"

#include <asm/kvm.h>
#include <sys/ioctl.h>

#include <cstddef>

namespace spore::vmm::aarch64 {

uint64_t core_reg_id(uint64_t byte_offset) {
  return KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | (byte_offset / sizeof(uint32_t));
}

uint64_t pc_reg_id() { return core_reg_id(offsetof(kvm_regs, regs.pc)); }

Result<CpuTemplate> preferred_cpu(const kvm::Vm& vm) {
  kvm_vcpu_init init{};
  if (::ioctl(vm.fd(), KVM_ARM_PREFERRED_TARGET, &init) < 0) return errno_error("KVM_ARM_PREFERRED_TARGET");
  CpuTemplate t;
  t.target = init.target;
  t.features0 = 1u << KVM_ARM_VCPU_PSCI_0_2;
  return t;
}

Status init_vcpu(const kvm::Vcpu& vcpu, const CpuTemplate& tmpl, bool boot_cpu) {
  kvm_vcpu_init init{};
  init.target = tmpl.target;
  init.features[0] = tmpl.features0;
  if (!boot_cpu) init.features[0] |= 1u << KVM_ARM_VCPU_POWER_OFF;
  if (::ioctl(vcpu.fd(), KVM_ARM_VCPU_INIT, &init) < 0) return errno_error("KVM_ARM_VCPU_INIT");
  return ok_status();
}

Status set_boot_regs(const kvm::Vcpu& vcpu, uint64_t entry, uint64_t fdt) {
  // KVM_ARM_VCPU_INIT already reset PSTATE to EL1h with DAIF masked.
  uint64_t zero = 0;
  SPORE_TRY(vcpu.set_one_reg(core_reg_id(offsetof(kvm_regs, regs.regs[0])), &fdt));
  for (int i = 1; i <= 3; i++)
    SPORE_TRY(vcpu.set_one_reg(core_reg_id(offsetof(kvm_regs, regs.regs) + 8 * i), &zero));
  SPORE_TRY(vcpu.set_one_reg(pc_reg_id(), &entry));
  return ok_status();
}

}  // namespace spore::vmm::aarch64
