// The flattened image filesystem, in memory: what layers are applied to
// and what the rootfs writer serialises. File contents live in a spool
// file, not in memory, so large images fit.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace spore::pack {

// Append-only temporary file holding file contents (unlinked at creation).
class Spool {
 public:
  static Result<Spool> create(const std::string& dir);
  Result<uint64_t> append(const void* data, size_t len);  // returns the offset written at
  Status read(uint64_t offset, void* out, size_t len) const;
  uint64_t size() const { return size_; }
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  uint64_t size_ = 0;
};

struct Node {
  enum class Kind { kFile, kDir, kSymlink, kFifo };
  Kind kind = Kind::kFile;
  uint32_t mode = 0644;  // permission bits including setuid/setgid/sticky (07777)
  uint32_t uid = 0, gid = 0;
  int64_t mtime = 0;      // seconds since the epoch
  uint32_t mtime_nsec = 0;
  std::map<std::string, std::shared_ptr<Node>> children;  // kDir: by name, bytewise order
  std::string target;                                      // kSymlink
  uint64_t data_offset = 0, size = 0;                      // kFile: bytes in the spool
  std::vector<std::pair<std::string, std::string>> xattrs; // sorted by name
  uint32_t layer = 0;  // which layer created this entry (for opaque whiteouts)
};

// A tree rooted at "/" (a directory, 0755, root:root). Paths given to it are
// relative ("usr/bin/env"), already normalised: no empty, "." or ".."
// components. A hard link is one Node shared by several directory entries.
class Tree {
 public:
  explicit Tree(Spool spool);
  Node& root() { return *root_; }
  const Node& root() const { return *root_; }
  std::shared_ptr<Node> root_ptr() const { return root_; }
  Spool& spool() { return spool_; }
  const Spool& spool() const { return spool_; }

  // Looks a path up, following symlinks in intermediate components (and in
  // the last one with follow_last) but only ever inside the tree: ".."
  // never climbs above the root and absolute targets start at the root.
  // nullptr if it does not exist.
  std::shared_ptr<Node> lookup(std::string_view path, bool follow_last = false) const;
  // The directory that holds path's last component (created as 0755 dirs
  // where missing, like tar does; layers are numbered from 1), or nullptr
  // if a component is not a directory. Sets *name to the last component.
  std::shared_ptr<Node> parent_of(std::string_view path, std::string* name, uint32_t layer);

  // Counts entries and bytes (for progress and sizing).
  struct Stats {
    uint64_t files = 0, dirs = 0, symlinks = 0, other = 0, bytes = 0;
  };
  Stats stats() const;

 private:
  // Follows parts from the root; with create_layer != 0, creates missing
  // directories (tagged with that layer) instead of failing.
  std::shared_ptr<Node> walk(std::vector<std::string> parts, bool follow_last, uint32_t create_layer) const;
  Spool spool_;
  std::shared_ptr<Node> root_;
};

// Normalises an archive path: strips leading "/" and "./", drops "."
// components; fails on ".." (an entry that would climb out of the root).
Result<std::string> normalize_path(std::string_view path);

}  // namespace spore::pack
