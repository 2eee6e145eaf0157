// The x86_64 backend's own calls once a machine runs (vmm/seccomp_policy.h).
#include <linux/kvm.h>

#include <sys/syscall.h>

#include "vmm/seccomp_policy.h"

namespace spore::vmm {

void add_arch_rules(seccomp::Policy& p, ThreadRole role, const PolicyFds& fds) {
  using seccomp::arg_eq;
  switch (role) {
    case ThreadRole::kVcpu:
      // The 16550A's interrupt line (IOAPIC pin 4), raised and lowered by
      // the vCPU whose port write changed it (virtio devices use irqfds).
      // Power-off and reset requests only end the machine (eventfd, tgkill).
      p.allow_if(__NR_ioctl, {arg_eq(0, static_cast<uint32_t>(fds.vm)), arg_eq(1, KVM_IRQ_LINE)});
      break;
    default:
      // No spores on x86_64 yet: the controller makes no KVM queries.
      break;
  }
}

}  // namespace spore::vmm
