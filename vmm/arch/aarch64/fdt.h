// Device tree for the aarch64 board, generated with libfdt. Plain data in,
// blob out, so it is unit-tested on any host.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"

namespace spore::vmm::aarch64 {

struct FdtConfig {
  uint32_t vcpus = 1;
  uint64_t ram_size = 0;
  std::string cmdline;
  uint64_t initrd_start = 0;  // 0: no initrd
  uint64_t initrd_end = 0;
  std::vector<uint32_t> virtio_slots;  // occupied virtio-mmio slots
  bool generation_device = false;
  std::vector<uint8_t> rng_seed;  // /chosen/rng-seed: early entropy for the guest
};

Result<std::vector<uint8_t>> build_fdt(const FdtConfig& config);

}  // namespace spore::vmm::aarch64
