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

// Caps on what an image may expand to (spore-pack's --max-* options). A
// layer is untrusted input: a sparse entry declaring a terabyte, a
// compression bomb, millions of entries or a deep path must end the pack
// with an error, not fill the disk or the memory, or overflow the stack.
struct Limits {
  static constexpr uint64_t kDefaultBytes = uint64_t{32} << 30;
  static constexpr uint64_t kDefaultEntries = 2'000'000;
  static constexpr uint32_t kDefaultDepth = 256;
  static constexpr uint32_t kDefaultPathLength = 4096;

  // File contents written to the spool (holes of sparse files included), and
  // separately the bytes layers decompress to; each summed over all layers.
  uint64_t max_bytes = kDefaultBytes;
  // Archive (or directory) entries read, all layers together.
  uint64_t max_entries = kDefaultEntries;
  // Directories from the root down to an entry, where it lands after symlinks.
  uint32_t max_depth = kDefaultDepth;
  // Bytes in an entry's name, a hard-link target or a symlink target.
  uint32_t max_path_length = kDefaultPathLength;
};

// Append-only temporary file holding file contents (unlinked at creation).
// Appends beyond its limit fail.
class Spool {
 public:
  static Result<Spool> create(const std::string& dir);
  Result<uint64_t> append(const void* data, size_t len);  // returns the offset written at
  Status read(uint64_t offset, void* out, size_t len) const;
  uint64_t size() const { return size_; }
  int fd() const { return fd_.get(); }
  void set_limit(uint64_t max_bytes) { limit_ = max_bytes; }
  uint64_t limit() const { return limit_; }
  // Fails, naming the limit, unless `more` bytes still fit.
  Status check_room(uint64_t more) const;

 private:
  UniqueFd fd_;
  std::string dir_;  // for messages
  uint64_t size_ = 0;
  uint64_t limit_ = Limits::kDefaultBytes;
};

struct Node {
  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  // Frees a subtree without recursion: the depth of a tree is the image's choice.
  ~Node();

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
  explicit Tree(Spool spool, Limits limits = {});
  const Limits& limits() const { return limits_; }
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
  // if a component is not a directory. Sets *name to the last component and
  // *depth (if given) to the directory's depth below the root (0: the root).
  std::shared_ptr<Node> parent_of(std::string_view path, std::string* name, uint32_t layer, size_t* depth = nullptr);

  // Counts against the limits; an error names the limit and its option.
  Status count_entry();                // one archive or directory entry read
  Status count_stream(uint64_t bytes);  // bytes a layer decompressed to
  Status check_depth(size_t depth, std::string_view path) const;
  Status check_path_length(std::string_view what, std::string_view path) const;

  // Counts entries and bytes (for progress and sizing), without recursion.
  struct Stats {
    uint64_t files = 0, dirs = 0, symlinks = 0, other = 0, bytes = 0;
  };
  Stats stats() const;

 private:
  // Follows parts from the root; with create_layer != 0, creates missing
  // directories (tagged with that layer) instead of failing.
  std::shared_ptr<Node> walk(std::vector<std::string> parts, bool follow_last, uint32_t create_layer,
                             size_t* depth) const;
  Spool spool_;
  Limits limits_;
  std::shared_ptr<Node> root_;
  uint64_t entries_ = 0, streamed_ = 0;
};

// Normalises an archive path: strips leading "/" and "./", drops "."
// components; fails on ".." (an entry that would climb out of the root).
Result<std::string> normalize_path(std::string_view path);

}  // namespace spore::pack
