// A small, strict EROFS reader for images our writer made (the layouts in
// doc/rootfs-format.md: 4 KiB blocks, FLAT_PLAIN and FLAT_INLINE, compact
// and extended inodes, inline xattrs). Written from the format, separately
// from the writer, so that a round trip through both checks the writer
// against the format and not against itself. Anything it cannot make sense
// of is a finding: the writer produced an image the kernel would misread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace spore::fuzz {

struct ErofsSuper {
  uint32_t feature_compat = 0, feature_incompat = 0;
  uint16_t root_nid = 0;
  uint64_t inos = 0;
  uint64_t build_time = 0;
  uint32_t build_time_nsec = 0;
  uint32_t blocks = 0;
};

struct ErofsInode {
  uint64_t nid = 0;
  bool extended = false;
  uint16_t layout = 0;  // 0 FLAT_PLAIN, 2 FLAT_INLINE
  uint16_t mode = 0;
  uint32_t nlink = 0;
  uint64_t size = 0;
  uint32_t raw_blkaddr = 0;
  uint32_t ino = 0;
  uint32_t uid = 0, gid = 0;
  uint64_t mtime = 0;
  uint32_t mtime_nsec = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;  // full names
};

struct ErofsDirent {
  std::string name;
  uint64_t nid = 0;
  uint8_t file_type = 0;
};

class ErofsReader {
 public:
  // Checks the superblock (magic, block size, checksum, size); fail()s on
  // anything wrong.
  explicit ErofsReader(const std::string& image);

  const ErofsSuper& super() const { return sb_; }
  ErofsInode inode(uint64_t nid) const;
  // All of the inode's data (file contents, symlink target, dirent blocks).
  std::string data(const ErofsInode& ino) const;
  // A directory's entries in on-disk order (checked to be sorted).
  std::vector<ErofsDirent> dirents(const ErofsInode& dir) const;

 private:
  const std::string& img_;
  ErofsSuper sb_;
};

}  // namespace spore::fuzz
