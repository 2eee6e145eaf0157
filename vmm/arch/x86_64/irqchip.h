// The interrupt controllers: KVM's in-kernel PIC pair, IOAPIC and local
// APICs (KVM_CREATE_IRQCHIP), and its in-kernel PIT. doc/board-x86_64.md
// says why in-kernel rather than split.
#pragma once

#include <cstdint>

#include "base/result.h"
#include "vmm/kvm/kvm.h"

namespace spore::vmm::x86_64 {

// Creates the irqchip and the PIT, and places KVM's private pages (the
// real-mode TSS and identity map Intel hosts need). Before any vCPU exists.
Status create_irqchip(kvm::Vm& vm);

// KVM_IRQ_LINE and irqfd GSIs: with KVM's default routing, GSI n is IOAPIC
// pin n (and, below 16, the PIC's input n too).
inline uint32_t gsi_irq_line(uint32_t gsi) { return gsi; }

}  // namespace spore::vmm::x86_64
