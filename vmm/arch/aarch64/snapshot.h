// Saving and restoring the aarch64 parts of a machine: vCPU registers and
// the in-kernel GICv3, plus the host facts the platform contract records.
// The restore order is written down once, in doc/spore-format.md.
#pragma once

#include "base/result.h"
#include "vmm/arch/aarch64/cpu.h"
#include "vmm/kvm/kvm.h"
#include "vmm/spore/platform.h"
#include "vmm/spore/state.h"

namespace spore::vmm::aarch64 {

// Every register KVM_GET_REG_LIST names, in that order, plus MP state and
// pending exception events. The vCPU must not be inside KVM_RUN.
Result<VcpuState> save_vcpu(const kvm::Vcpu& vcpu);
Status restore_vcpu(const kvm::Vcpu& vcpu, const VcpuState& state);

// Distributor, redistributors, CPU interfaces and SPI line levels. Every
// vCPU must be out of KVM_RUN.
Result<GicState> save_gic(int gic_fd, uint32_t vcpus);
Status restore_gic(int gic_fd, uint32_t vcpus, const GicState& state);

// What this host offers a VM built like ours (vm and vcpu0 created and
// initialised with tmpl, the vGIC created).
Result<PlatformFacts> host_platform(const kvm::Kvm& kvm, const kvm::Vm& vm, const kvm::Vcpu& vcpu0, int gic_fd,
                                    const CpuTemplate& tmpl, uint32_t ipa_bits);

}  // namespace spore::vmm::aarch64
