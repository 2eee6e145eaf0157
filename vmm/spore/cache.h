// The per-user cache of materialised spore RAM and verified file digests.
// $SPORE_CACHE_DIR, else $XDG_CACHE_HOME/spore, else ~/.cache/spore.
// Entries are written atomically and may be deleted at any time. The
// directory must be private to the user (Cache::open refuses one that
// another user owns or can write), and an entry is used only while it is
// the very file the cache vouched for when it wrote it.
#pragma once

#include <string>

#include "base/result.h"
#include "base/sha256.h"
#include "vmm/spore/memory.h"

namespace spore::vmm {

class Cache {
 public:
  static Result<Cache> open();
  static Result<Cache> open_at(const std::string& dir);
  const std::string& dir() const { return dir_; }

  // The RAM file for a memory index (keyed by the index's digest, so forks
  // of one spore share it), materialising it from the store the first time.
  // Concurrent first callers serialise on a lock; one writes, all use it.
  Result<std::string> ram_file(const MemoryIndex& idx, const Digest& index_digest, const ChunkSource& store,
                               bool* materialized = nullptr);
  // Where the RAM file for index_digest lives (it may not exist).
  std::string ram_path(const Digest& index_digest) const;
  // The pages resumes of that RAM touch (vmm/spore/working_set.h), if known.
  std::string working_set_path(const Digest& index_digest) const { return ram_path(index_digest) + ".ws"; }
  // Where a file extracted from a bundle lives, named by its content so
  // every bundle with the same kernel, initramfs or rootfs shares it:
  // sections/<sha256>.<kind> (the folder is made by open).
  std::string section_path(const Digest& content, const std::string& kind) const {
    return dir_ + "/sections/" + digest_hex(content) + "." + kind;
  }

  // SHA-256 of a file, remembered per (path, device, inode, size, mtime,
  // ctime) so an unchanged file is hashed once.
  Result<Digest> file_digest(const std::string& path);
  // Records a digest the caller has just verified while writing the file
  // (for a RAM file: the digest of the index it was made from).
  void remember_digest(const std::string& path, const Digest& d);
  // True when remember_digest(path, d) was called for the file as it is now
  // (same inode, size, mtime and ctime); reads only the stamp.
  bool vouched(const std::string& path, const Digest& d) const;

 private:
  explicit Cache(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace spore::vmm
