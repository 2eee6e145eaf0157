// The fixed aarch64 board: one small guest-visible machine. A spore records
// it; restore refuses anything else. doc/board-aarch64.md describes it.
#pragma once

#include <cstdint>

namespace spore::vmm::aarch64 {

inline constexpr uint32_t kBoardVersion = 1;

// Guest physical address map.
inline constexpr uint64_t kGicDistBase = 0x0800'0000;
inline constexpr uint64_t kGicDistSize = 0x1'0000;
inline constexpr uint64_t kGicRedistBase = 0x080a'0000;
inline constexpr uint64_t kGicRedistSizePerCpu = 0x2'0000;
inline constexpr uint64_t kUartBase = 0x0900'0000;
inline constexpr uint64_t kRtcBase = 0x0901'0000;
inline constexpr uint64_t kGenerationBase = 0x0902'0000;
inline constexpr uint64_t kPeriphSize = 0x1000;
inline constexpr uint64_t kVirtioBase = 0x0a00'0000;
inline constexpr uint64_t kVirtioStride = 0x200;
inline constexpr uint32_t kVirtioSlots = 32;
inline constexpr uint64_t kRamBase = 0x8000'0000;

// Shared peripheral interrupts (SPI numbers; GIC INTID = 32 + SPI).
inline constexpr uint32_t kUartSpi = 1;
inline constexpr uint32_t kRtcSpi = 2;
inline constexpr uint32_t kGenerationSpi = 3;
inline constexpr uint32_t kVirtioFirstSpi = 16;
inline constexpr uint32_t kGicNumIrqs = 128;  // INTIDs 0..127: SGIs, PPIs, 96 SPIs

// Arch timer PPIs (INTID - 16).
inline constexpr uint32_t kTimerSecurePpi = 13;
inline constexpr uint32_t kTimerNonSecurePpi = 14;
inline constexpr uint32_t kTimerVirtualPpi = 11;
inline constexpr uint32_t kTimerHypPpi = 10;

// Redistributors must end below the UART.
inline constexpr uint32_t kMaxVcpus = 32;
static_assert(kGicRedistBase + kMaxVcpus * kGicRedistSizePerCpu <= kUartBase);

inline constexpr uint64_t kMinRamMiB = 64;
inline constexpr uint64_t kMaxRamMiB = 64 * 1024;
inline constexpr uint32_t kIpaBits = 40;
static_assert(kRamBase + (kMaxRamMiB << 20) <= (1ull << kIpaBits));

// Guest CID of the one vsock device.
inline constexpr uint64_t kGuestCid = 3;

// Where boot payloads go inside RAM.
inline constexpr uint64_t kFdtMaxSize = 0x20'0000;  // 2 MiB, aligned slot at the end of RAM

inline constexpr uint64_t virtio_mmio_base(uint32_t slot) { return kVirtioBase + slot * kVirtioStride; }
inline constexpr uint32_t virtio_spi(uint32_t slot) { return kVirtioFirstSpi + slot; }
// MPIDR KVM assigns to vCPU i (Aff0 = i % 16, Aff1 = i / 16).
inline constexpr uint64_t vcpu_mpidr(uint32_t i) { return ((i >> 4) << 8) | (i & 0xf); }

}  // namespace spore::vmm::aarch64
