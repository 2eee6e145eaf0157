// A deterministic, read-only EROFS image from a Tree: the guest's rootfs.
// Same tree in, same bytes out (no clocks, no randomness: the UUID is
// derived from the content).
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "packer/tree.h"

namespace spore::pack {

struct ErofsOptions {
  std::string volume_name = "spore";  // at most 16 bytes
};

struct ErofsStats {
  uint64_t inodes = 0;
  uint64_t blocks = 0;
  uint64_t bytes = 0;  // image size
};

// Writes the image to path atomically (temporary file, then rename).
Status write_erofs(const Tree& tree, const std::string& path, const ErofsOptions& opts, ErofsStats* stats = nullptr);

}  // namespace spore::pack
