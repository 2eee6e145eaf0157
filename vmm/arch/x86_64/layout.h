// The fixed x86_64 board: one small guest-visible machine, a PC reduced to
// what Linux needs. doc/board-x86_64.md describes it.
#pragma once

#include <cstdint>

namespace spore::vmm::x86_64 {

inline constexpr uint32_t kBoardVersion = 1;

// ---- guest physical memory ------------------------------------------------

// Boot structures in the first 64 KiB (all inside low RAM, below the
// real-mode area Linux reserves for its SMP trampoline).
inline constexpr uint64_t kGdtAddr = 0x0500;
inline constexpr uint64_t kBootParamsAddr = 0x7000;  // the "zero page"
inline constexpr uint64_t kBootStackTop = 0x8ff0;
inline constexpr uint64_t kPml4Addr = 0x9000;
inline constexpr uint64_t kPdptAddr = 0xa000;
inline constexpr uint64_t kPdAddr = 0xb000;          // 4 page directories: 0xb000..0xefff
inline constexpr uint64_t kIdentityMapGiB = 4;       // the boot page tables map [0, 4 GiB)
inline constexpr uint64_t kSetupDataAddr = 0xf000;   // setup_data chain (the RNG seed)
inline constexpr uint64_t kCmdlineAddr = 0x2'0000;
inline constexpr uint64_t kCmdlineMax = 0x1'0000;    // 64 KiB, the buffer's size

// Low RAM ends where the BIOS's extended data area would start; the MP
// table sits in its first KiB, where Linux looks for one.
inline constexpr uint64_t kLowRamEnd = 0x9'fc00;
inline constexpr uint64_t kMpTableAddr = 0x9'fc00;
inline constexpr uint64_t kMpTableMax = 0x400;
// ACPI tables, in the BIOS area Linux scans for the RSDP.
inline constexpr uint64_t kAcpiAddr = 0xe'0000;
inline constexpr uint64_t kAcpiMax = 0x1'0000;
inline constexpr uint64_t kBiosEnd = 0x10'0000;

// The kernel's protected-mode part is loaded at 1 MiB; it moves itself to
// its preferred address to decompress.
inline constexpr uint64_t kKernelAddr = 0x10'0000;

// RAM up to 3 GiB sits at 0; the rest continues at 4 GiB, past the MMIO hole.
inline constexpr uint64_t kMmioHoleStart = 0xc000'0000;
inline constexpr uint64_t kHighRamStart = 0x1'0000'0000;

// Devices in the MMIO hole.
inline constexpr uint64_t kVirtioBase = 0xd000'0000;
inline constexpr uint64_t kVirtioStride = 0x1000;
inline constexpr uint64_t kGenerationBase = 0xd010'0000;
inline constexpr uint64_t kPeriphSize = 0x1000;
inline constexpr uint64_t kIoApicBase = 0xfec0'0000;  // KVM's in-kernel IOAPIC
inline constexpr uint64_t kLapicBase = 0xfee0'0000;   // KVM's in-kernel local APICs
// Pages KVM needs on Intel hosts (real-mode TSS and identity map): unused
// on AMD, harmless there, and outside everything else.
inline constexpr uint64_t kIdentityMapPage = 0xfffb'c000;
inline constexpr uint64_t kTssAddr = 0xfffb'd000;

// ---- port I/O ---------------------------------------------------------------

inline constexpr uint16_t kCom1Port = 0x3f8;
inline constexpr uint16_t kUartPorts = 8;
inline constexpr uint16_t kI8042DataPort = 0x60;
inline constexpr uint16_t kI8042CommandPort = 0x64;
inline constexpr uint16_t kPostPort = 0x80;         // I/O delay writes: ignored
inline constexpr uint16_t kResetControlPort = 0xcf9;
// ACPI hardware-reduced sleep registers (one byte each): writing SLP_EN
// with the \_S5 sleep type powers the machine off.
inline constexpr uint16_t kSleepControlPort = 0x600;
inline constexpr uint16_t kSleepStatusPort = 0x601;
inline constexpr uint8_t kS5SleepType = 5;

// ---- interrupts (IOAPIC pins = GSIs) --------------------------------------

inline constexpr uint32_t kIoApicPins = 24;  // KVM_IOAPIC_NUM_PINS
inline constexpr uint32_t kPitGsi = 0;
inline constexpr uint32_t kCom1Gsi = 4;
inline constexpr uint32_t kAcpiSciGsi = 9;   // declared in the FADT; never raised (hardware-reduced)
// The PCI half of the IOAPIC: no legacy driver claims these.
inline constexpr uint32_t kGenerationGsi = 16;
inline constexpr uint32_t kVirtioFirstGsi = 17;
inline constexpr uint32_t kVirtioSlots = kIoApicPins - kVirtioFirstGsi;  // 7

// ---- CPUs and sizes ----------------------------------------------------------

// APIC ID i for vCPU i; xAPIC IDs fit 8 bits, and the MP table too.
inline constexpr uint32_t kMaxVcpus = 32;
inline constexpr uint8_t kIoApicId = kMaxVcpus;  // after every local APIC ID

inline constexpr uint64_t kMinRamMiB = 64;
inline constexpr uint64_t kMaxRamMiB = 64 * 1024;

// Guest CID of the one vsock device.
inline constexpr uint64_t kGuestCid = 3;

inline constexpr uint64_t virtio_mmio_base(uint32_t slot) { return kVirtioBase + slot * kVirtioStride; }
inline constexpr uint32_t virtio_gsi(uint32_t slot) { return kVirtioFirstGsi + slot; }

static_assert(kVirtioBase + kVirtioSlots * kVirtioStride <= kGenerationBase);
static_assert(kGenerationBase + kPeriphSize <= kIoApicBase);
static_assert(kPdAddr + kIdentityMapGiB * 0x1000 <= kSetupDataAddr);

}  // namespace spore::vmm::x86_64
