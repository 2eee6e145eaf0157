#include "vmm/arch/x86_64/irqchip.h"

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include "vmm/arch/x86_64/layout.h"

namespace spore::vmm::x86_64 {

Status create_irqchip(kvm::Vm& vm) {
  for (long cap : {KVM_CAP_IRQCHIP, KVM_CAP_PIT2, KVM_CAP_SET_TSS_ADDR, KVM_CAP_SET_IDENTITY_MAP_ADDR}) {
    if (!vm.check_extension(cap))
      return make_error(ErrorKind::kUnavailable, "this host's KVM lacks an in-kernel interrupt controller or PIT");
  }
  if (::ioctl(vm.fd(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(kTssAddr)) < 0) return errno_error("KVM_SET_TSS_ADDR");
  uint64_t ident = kIdentityMapPage;
  if (::ioctl(vm.fd(), KVM_SET_IDENTITY_MAP_ADDR, &ident) < 0) return errno_error("KVM_SET_IDENTITY_MAP_ADDR");
  if (::ioctl(vm.fd(), KVM_CREATE_IRQCHIP, 0) < 0) return errno_error("KVM_CREATE_IRQCHIP");
  // The PC speaker's port (0x61) is handled in the kernel too, so the
  // guest's PIT calibration through channel 2 needs no exits.
  kvm_pit_config pit{};
  pit.flags = KVM_PIT_SPEAKER_DUMMY;
  if (::ioctl(vm.fd(), KVM_CREATE_PIT2, &pit) < 0) return errno_error("KVM_CREATE_PIT2");
  return ok_status();
}

}  // namespace spore::vmm::x86_64
