// A deterministic, read-only EROFS image from a Tree: the guest's rootfs.
// Same tree in, same bytes out (no clocks, no randomness: the build time
// and UUID are derived from the tree). doc/rootfs-format.md has the layout.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "packer/tree.h"

namespace spore::pack {

struct ErofsOptions {
  std::string volume_name = "spore";  // at most 15 bytes (the kernel wants a NUL in the 16-byte field)
};

struct ErofsStats {
  uint64_t inodes = 0;
  uint64_t blocks = 0;
  uint64_t bytes = 0;            // image size
  uint64_t extended_inodes = 0;  // 64-byte inodes (the rest are 32-byte compact ones)
  uint64_t inline_tails = 0;     // files, dirs and symlinks whose last partial block sits after the inode
  uint64_t metadata_blocks = 0;  // superblock, inodes, xattrs and inline tails (the rest is data)
};

// Writes the image to path atomically (temporary file, then rename).
Status write_erofs(const Tree& tree, const std::string& path, const ErofsOptions& opts, ErofsStats* stats = nullptr);

}  // namespace spore::pack
