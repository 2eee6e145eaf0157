// The Intel MultiProcessor Specification 1.4 table: how a guest kernel
// finds the vCPUs' local APICs, the IOAPIC and how ISA interrupts reach
// it, without ACPI's MADT. Host-independent so it is unit-tested anywhere.
#pragma once

#include <cstdint>
#include <vector>

#include "base/result.h"

namespace spore::vmm::x86_64 {

// The floating pointer structure followed by the configuration table, to
// be written at addr (16-byte aligned): APIC IDs 0..vcpus-1 (vCPU 0 is the
// bootstrap processor), one ISA bus, the IOAPIC with every pin routed from
// the ISA IRQ of the same number (edge, active high), ExtINT on LINT0 and
// NMI on LINT1 of every local APIC.
Result<std::vector<uint8_t>> build_mptable(uint32_t vcpus, uint64_t addr);

}  // namespace spore::vmm::x86_64
