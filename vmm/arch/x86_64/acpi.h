// The board's ACPI tables: the least a guest needs to power itself off and
// reset cleanly. RSDP -> XSDT -> FADT (hardware-reduced, with a sleep
// control register and a reset register) -> DSDT (just \_S5). No MADT: the
// MP table describes CPUs and interrupts, for kernels with or without ACPI.
// Host-independent so it is unit-tested anywhere.
#pragma once

#include <cstdint>
#include <vector>

#include "base/result.h"

namespace spore::vmm::x86_64 {

struct AcpiTables {
  uint64_t rsdp_addr = 0;      // where the RSDP sits (the start of bytes)
  std::vector<uint8_t> bytes;  // every table, to be written at rsdp_addr
};

// The tables laid out from addr (16-byte aligned, in the BIOS area).
Result<AcpiTables> build_acpi_tables(uint64_t addr);

// The value a guest writes to the sleep control register to enter S5
// (SLP_TYP from \_S5, SLP_EN).
uint8_t acpi_s5_request();

}  // namespace spore::vmm::x86_64
