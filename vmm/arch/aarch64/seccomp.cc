// The aarch64 backend's own calls once a machine runs (vmm/seccomp_policy.h).
#include <linux/kvm.h>

#include <sys/syscall.h>

#include "vmm/kvm/kvm.h"
#include "vmm/seccomp_policy.h"

namespace spore::vmm {

void add_arch_rules(seccomp::Policy& p, ThreadRole role, const PolicyFds& fds) {
  using seccomp::arg_eq;
  switch (role) {
    case ThreadRole::kVcpu:
      // The PL011's interrupt line, raised and lowered by the vCPU that
      // touched its registers (virtio devices use irqfds instead).
      p.allow_if(__NR_ioctl, {arg_eq(0, static_cast<uint32_t>(fds.vm)), arg_eq(1, KVM_IRQ_LINE)});
      break;
    case ThreadRole::kController:
      // Capturing a spore (arch/aarch64/snapshot.cc): read-only queries of
      // the paused vCPUs and of the vGIC.
      for (uint32_t req : {kvm::kGetRegList, KVM_GET_ONE_REG, KVM_GET_MP_STATE, KVM_GET_VCPU_EVENTS,
                           KVM_GET_DEVICE_ATTR})
        p.allow_if(__NR_ioctl, {arg_eq(1, req)});
      break;
    default:
      break;
  }
}

}  // namespace spore::vmm
