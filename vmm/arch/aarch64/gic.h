// The in-kernel GICv3 (KVM_DEV_TYPE_ARM_VGIC_V3) and interrupt numbering.
#pragma once

#include <cstdint>

#include "base/fd.h"
#include "vmm/kvm/kvm.h"

namespace spore::vmm::aarch64 {

class Gic {
 public:
  // Creates the distributor and redistributors at the board's addresses.
  // Must run after all vCPUs exist and before any runs: it also initialises.
  static Result<Gic> create(kvm::Vm& vm, uint32_t vcpus);
  int fd() const { return fd_.get(); }
  UniqueFd take_fd() { return std::move(fd_); }

  // KVM_IRQ_LINE encoding of a shared peripheral interrupt.
  static uint32_t spi_irq_line(uint32_t spi);
  // irqfd GSI of an SPI (KVM's default routing maps GSI n to SPI n).
  static uint32_t spi_gsi(uint32_t spi) { return spi; }

 private:
  UniqueFd fd_;
};

}  // namespace spore::vmm::aarch64
