// Loading an arm64 Linux Image, initrd and device tree into guest RAM
// (Documentation/arm64/booting.rst). Host-independent so it is unit-tested.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "vmm/memory.h"

namespace spore::vmm::aarch64 {

struct ImageHeader {
  uint64_t text_offset = 0;
  uint64_t image_size = 0;  // bytes the kernel occupies including bss
  uint64_t flags = 0;
};

// Validates the 64-byte Image header (magic "ARM\x64").
Result<ImageHeader> parse_image_header(const uint8_t* data, size_t len);

struct BootLayout {
  uint64_t kernel_gpa = 0;  // where the Image is loaded (and entered)
  uint64_t kernel_end = 0;
  uint64_t initrd_gpa = 0;
  uint64_t initrd_size = 0;
  uint64_t fdt_gpa = 0;
};

// Loads kernel and (optional) initrd files into mem and returns where they
// went; the FDT slot is reserved at the top of RAM. Fails with a clear
// message when a file is missing, not an Image, or does not fit.
Result<BootLayout> load_kernel_and_initrd(const GuestMemory& mem, uint64_t ram_base, uint64_t ram_size,
                                          const std::string& kernel_path, const std::string& initrd_path);

}  // namespace spore::vmm::aarch64
