#include "vmm/arch/aarch64/gic.h"

#include <asm/kvm.h>
#include <sys/ioctl.h>

#include "vmm/arch/aarch64/layout.h"

namespace spore::vmm::aarch64 {
namespace {

Status set_attr(int fd, uint32_t group, uint64_t attr, const void* addr, const char* what) {
  kvm_device_attr a{};
  a.group = group;
  a.attr = attr;
  a.addr = reinterpret_cast<uint64_t>(addr);
  if (::ioctl(fd, KVM_SET_DEVICE_ATTR, &a) < 0) return errno_error(std::string("vGICv3 ") + what);
  return ok_status();
}

}  // namespace

Result<Gic> Gic::create(kvm::Vm& vm, uint32_t) {
  auto fd = vm.create_device(KVM_DEV_TYPE_ARM_VGIC_V3);
  if (!fd.ok())
    return Error{ErrorKind::kUnavailable, fd.error().sys_errno,
                 "this host's KVM has no in-kernel GICv3 (" + fd.error().message + ")"};
  Gic g;
  g.fd_ = std::move(*fd);
  uint64_t dist = kGicDistBase, redist = kGicRedistBase;
  uint32_t nirqs = kGicNumIrqs;
  SPORE_TRY(set_attr(g.fd(), KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_DIST, &dist, "distributor address"));
  SPORE_TRY(set_attr(g.fd(), KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_REDIST, &redist,
                     "redistributor address"));
  SPORE_TRY(set_attr(g.fd(), KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, &nirqs, "interrupt count"));
  SPORE_TRY(set_attr(g.fd(), KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT, nullptr, "init"));
  return g;
}

uint32_t Gic::spi_irq_line(uint32_t spi) {
  return (KVM_ARM_IRQ_TYPE_SPI << KVM_ARM_IRQ_TYPE_SHIFT) | (32 + spi);
}

}  // namespace spore::vmm::aarch64
