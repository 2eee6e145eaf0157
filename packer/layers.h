// Applies image layers (tar archives, optionally compressed) and plain
// directories to a Tree, with OCI whiteout semantics.
//
// What is kept, neutralised or skipped (never an error, never outside the tree):
//   - absolute names ("/etc/x") and "./" prefixes are taken relative to the
//     image root (neutralised, as tar does);
//   - names or hard-link targets with a ".." component are skipped: such an
//     entry has no place inside the image, and guessing one would be wrong;
//   - names that pass through a symlink are resolved inside the tree (the
//     link is followed as the guest would see it, ".." stops at the root);
//   - character and block devices are skipped (the guest's /dev is a
//     devtmpfs), as are sockets (they mean nothing in a file);
//   - hard links to a missing target or to a directory are skipped.
// Every skip is counted by reason in LayerStats and logged (details at info,
// one summary per layer at warning). A corrupt or truncated archive is an
// error, and so is going past the tree's Limits (bytes, entries, depth,
// path length): the pack stops there, before the disk fills.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/result.h"
#include "packer/tree.h"

namespace spore::pack {

struct LayerStats {
  uint64_t entries = 0;    // archive entries (or directory entries) read
  uint64_t bytes = 0;      // file contents written to the spool
  uint64_t whiteouts = 0;  // ".wh.NAME" and opaque markers applied
  uint64_t hardlinks = 0;
  std::map<std::string, uint64_t> skipped;    // reason -> count
  std::vector<std::string> skipped_examples;  // the first few "path: reason"

  uint64_t skipped_total() const;
};

// Applies one layer (1-based index, bottom first) on top of the tree. The
// compression (none, gzip, zstd, xz, bzip2) is sniffed, not taken from the
// media type. Whiteouts hide lower layers only (OCI), whatever the order of
// the entries: `.wh.NAME` removes what lower layers put at NAME and below
// it, `.wh..wh..opq` what they put below its directory; entries this layer
// adds there (hard links to older files included) stay.
// With diff_id ("sha256:<hex>"), the uncompressed stream must hash to it
// (an OCI config's rootfs.diff_ids): a mismatch is an error.
Status apply_layer(Tree& tree, const std::string& blob_path, uint32_t layer_index, LayerStats* stats = nullptr,
                   const std::string& diff_id = "");

// Imports a directory from the host as the whole tree (layer 1): lstat
// walk, symlinks kept as links, hard links shared, same skip rules as
// layers. Whiteout names have no meaning here and are kept as plain files.
// The host's SELinux labels (security.selinux) are not copied.
Status import_dir(Tree& tree, const std::string& root_dir, LayerStats* stats = nullptr);

}  // namespace spore::pack
