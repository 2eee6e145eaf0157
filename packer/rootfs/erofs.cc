// The EROFS writer. doc/rootfs-format.md describes what it produces and
// why; the on-disk structures are those of Linux's fs/erofs/erofs_fs.h
// (6.1, the guest kernel), written field by field in little-endian.
//
// Two passes: plan_image() walks the tree once and decides every inode's
// place, layout and data blocks (all sizes are known from the tree alone,
// so nothing is back-patched); emit() then streams the image front to back:
// metadata through a buffer, then file contents copied from the spool by
// the kernel. Only the superblock is written out of order, at the very
// end, because it carries a hash of the rest.
#include "packer/rootfs/erofs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <numeric>
#include <set>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/fd.h"
#include "base/files.h"
#include "base/log.h"
#include "base/sha256.h"

namespace spore::pack {
namespace {

constexpr uint32_t kMagic = 0xE0F5E1E2;
constexpr uint64_t kSuperOffset = 1024;
constexpr uint32_t kSuperSize = 128;
constexpr uint32_t kBlockBits = 12;
constexpr uint32_t kBlockSize = 1u << kBlockBits;
// nid = byte offset / 32 from meta_blkaddr, which is 0: the inodes start
// right after the superblock, in block 0, as mkfs.erofs does.
constexpr uint32_t kSlotBits = 5;
constexpr uint32_t kSlotSize = 1u << kSlotBits;
constexpr uint32_t kCompactSize = 32, kExtendedSize = 64;
constexpr uint32_t kDirentSize = 12;
constexpr uint32_t kXattrHeaderSize = 12;
constexpr uint32_t kNullAddr = 0xffffffff;
constexpr size_t kMaxName = 255;
// Linux refuses longer symlink targets (PATH_MAX includes the NUL).
constexpr size_t kMaxSymlink = 4095;
constexpr uint32_t kCompatSbChksum = 0x1;
// "Extended inodes carry mtime" (what mkfs.erofs sets too; 6.1 reads it so).
constexpr uint32_t kCompatMtime = 0x2;
constexpr uint16_t kLayoutFlatPlain = 0, kLayoutFlatInline = 2;
constexpr uint8_t kFtRegular = 1, kFtDir = 2, kFtFifo = 5, kFtSymlink = 7;
constexpr size_t kVolumeNameMax = 15;  // the kernel wants a NUL within the 16-byte field
constexpr size_t kBufferSize = 1 << 20;

void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
void put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// CRC32C as the kernel's crc32c(~0, ...) computes it: reflected, seeded
// with all ones, no final inversion.
uint32_t crc32c(uint32_t crc, const uint8_t* p, size_t n) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  while (n--) crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return crc;
}

struct Dirent {
  std::string_view name;
  uint32_t inode;  // index into Plan::inodes
};

struct Inode {
  const Node* node = nullptr;
  // Where the first link was found: for paths in messages.
  uint32_t parent = 0;
  std::string_view name;
  uint32_t nlink = 0;
  uint32_t subdirs = 0;
  uint64_t size = 0;    // i_size: file bytes, dirent bytes, target length
  std::string xattrs;   // the encoded inline xattr body, empty when none
  bool extended = false;
  bool inline_tail = false;
  uint64_t nid = 0;
  uint32_t blkaddr = kNullAddr;
  uint64_t nblocks = 0;             // data blocks outside the metadata area
  std::vector<Dirent> dirents;      // kDir: ".", ".." and the children, sorted
  std::vector<uint32_t> dir_blocks; // kDir: index of the first dirent of each block

  uint32_t tail() const { return static_cast<uint32_t>(size % kBlockSize); }
};

struct Plan {
  std::vector<Inode> inodes;  // breadth first from the root (index 0)
  int64_t build_time = 0;
  uint32_t build_time_nsec = 0;
  uint64_t meta_end = 0;      // first byte after the metadata area (block aligned)
  uint64_t total_blocks = 0;
};

std::string path_of(const Plan& plan, uint32_t i) {
  std::string path;
  while (i != 0) {
    const Inode& ino = plan.inodes[i];
    path = "/" + std::string(ino.name) + path;
    i = ino.parent;
  }
  return path.empty() ? "/" : path;
}

Error corrupt(const Plan& plan, uint32_t i, const std::string& what) {
  return make_error(ErrorKind::kCorrupt, path_of(plan, i) + ": " + what);
}

// What is wrong with an entry name, or nullptr.
const char* bad_name(std::string_view name) {
  if (name.empty()) return "empty name";
  if (name.size() > kMaxName) return "name longer than 255 bytes (EROFS limit)";
  if (name == "." || name == "..") return "'.' and '..' cannot be entries";
  if (name.find('/') != std::string_view::npos) return "name contains '/'";
  if (name.find('\0') != std::string_view::npos) return "name contains a NUL byte";
  return nullptr;
}

// The namespaces the kernel's erofs xattr handlers know (erofs_fs.h name
// indexes); an entry stores the index and the rest of the name.
struct XattrPrefix {
  std::string_view prefix;
  uint8_t index;
  bool whole;  // the index stands for the entire name
};
constexpr XattrPrefix kXattrPrefixes[] = {
    {"user.", 1, false},
    {"system.posix_acl_access", 2, true},
    {"system.posix_acl_default", 3, true},
    {"trusted.", 4, false},
    {"security.", 6, false},
};

// Encodes node's xattrs as an inline body (header without shared xattrs,
// then 4-byte aligned entries), or "" when there are none to keep.
Result<std::string> encode_xattrs(const Plan& plan, uint32_t i) {
  const Node& node = *plan.inodes[i].node;
  std::string body;
  for (const auto& [name, value] : node.xattrs) {
    const XattrPrefix* pre = nullptr;
    for (const auto& p : kXattrPrefixes) {
      if (p.whole ? name == p.prefix : name.starts_with(p.prefix)) {
        pre = &p;
        break;
      }
    }
    std::string_view suffix = pre ? std::string_view(name).substr(pre->prefix.size()) : std::string_view();
    if (!pre || (!pre->whole && suffix.empty())) {
      // Nothing the guest kernel could return: not worth failing the image for.
      LOG_WARN("erofs: %s: dropping xattr '%s' (no EROFS namespace for it)", path_of(plan, i).c_str(),
               name.c_str());
      continue;
    }
    if (suffix.size() > kMaxName) return corrupt(plan, i, "xattr name longer than 255 bytes: " + name);
    if (value.size() > 0xffff) return corrupt(plan, i, "xattr value larger than 64 KiB - 1: " + name);
    if (body.empty()) body.assign(kXattrHeaderSize, '\0');
    uint8_t head[4];
    head[0] = static_cast<uint8_t>(suffix.size());
    head[1] = pre->index;
    put16(head + 2, static_cast<uint16_t>(value.size()));
    body.append(reinterpret_cast<const char*>(head), 4);
    body.append(suffix);
    body.append(value);
    body.resize(align_up(body.size(), 4), '\0');
  }
  return body;
}

uint16_t type_bits(Node::Kind kind) {
  switch (kind) {
    case Node::Kind::kFile: return S_IFREG;
    case Node::Kind::kDir: return S_IFDIR;
    case Node::Kind::kSymlink: return S_IFLNK;
    case Node::Kind::kFifo: return S_IFIFO;
  }
  return 0;
}

uint8_t file_type(Node::Kind kind) {
  switch (kind) {
    case Node::Kind::kFile: return kFtRegular;
    case Node::Kind::kDir: return kFtDir;
    case Node::Kind::kSymlink: return kFtSymlink;
    case Node::Kind::kFifo: return kFtFifo;
  }
  return 0;
}

// Splits a directory's sorted entries into dirent blocks (an entry never
// straddles two) and sets its size: whole blocks, then the used part of the
// last one, as the kernel's readdir expects.
void layout_dir(Inode& dir) {
  uint32_t used = 0;
  for (uint32_t k = 0; k < dir.dirents.size(); k++) {
    uint32_t need = kDirentSize + static_cast<uint32_t>(dir.dirents[k].name.size());
    if (k == 0 || used + need > kBlockSize) {
      dir.dir_blocks.push_back(k);
      used = 0;
    }
    used += need;
  }
  dir.size = (dir.dir_blocks.size() - 1) * uint64_t{kBlockSize} + used;
}

// Fills out (kBlockSize bytes) with dirent block b of dir; returns the bytes used.
uint32_t build_dir_block(const Plan& plan, const Inode& dir, size_t b, uint8_t* out) {
  uint32_t first = dir.dir_blocks[b];
  uint32_t end = b + 1 < dir.dir_blocks.size() ? dir.dir_blocks[b + 1] : static_cast<uint32_t>(dir.dirents.size());
  uint32_t nameoff = (end - first) * kDirentSize;
  std::memset(out, 0, kBlockSize);
  for (uint32_t k = first; k < end; k++) {
    const Dirent& d = dir.dirents[k];
    uint8_t* de = out + (k - first) * kDirentSize;
    put64(de, plan.inodes[d.inode].nid);
    put16(de + 8, static_cast<uint16_t>(nameoff));
    de[10] = file_type(plan.inodes[d.inode].node->kind);
    std::memcpy(out + nameoff, d.name.data(), d.name.size());
    nameoff += static_cast<uint32_t>(d.name.size());
  }
  return nameoff;
}

// Walks the tree breadth first (so a directory's children get neighbouring
// inodes), checks what the format cannot express, and numbers the inodes.
Status collect(const Tree& tree, Plan& plan) {
  std::unordered_map<const Node*, uint32_t> index;
  plan.inodes.push_back(Inode{.node = &tree.root()});
  index.emplace(&tree.root(), 0);
  for (uint32_t i = 0; i < plan.inodes.size(); i++) {
    if (plan.inodes[i].node->kind != Node::Kind::kDir) continue;
    const Node& dir = *plan.inodes[i].node;
    std::vector<Dirent> dirents;
    dirents.reserve(dir.children.size() + 2);
    dirents.push_back({".", i});
    dirents.push_back({"..", plan.inodes[i].parent});
    for (const auto& [name, child] : dir.children) {
      if (!child) return make_error(ErrorKind::kInternal, path_of(plan, i) + "/" + name + ": null tree node");
      if (const char* why = bad_name(name)) {
        std::string shown = name.substr(0, 64) + (name.size() > 64 ? "..." : "");
        return make_error(ErrorKind::kCorrupt, "entry '" + shown + "' in " + path_of(plan, i) + ": " + why);
      }
      auto [it, fresh] = index.emplace(child.get(), static_cast<uint32_t>(plan.inodes.size()));
      if (fresh) {
        plan.inodes.push_back(Inode{.node = child.get(), .parent = i, .name = name});
      } else if (child->kind == Node::Kind::kDir) {
        return make_error(ErrorKind::kCorrupt, path_of(plan, i) + "/" + name + ": a directory linked twice (to " +
                                                   path_of(plan, it->second) + ")");
      }
      plan.inodes[it->second].nlink++;
      if (child->kind == Node::Kind::kDir) plan.inodes[i].subdirs++;
      dirents.push_back({name, it->second});
    }
    // The kernel binary-searches names with unsigned byte comparison, "."
    // and ".." included; string_view's ordering is exactly that.
    std::sort(dirents.begin(), dirents.end(), [](const Dirent& a, const Dirent& b) { return a.name < b.name; });
    plan.inodes[i].dirents = std::move(dirents);
  }
  return ok_status();
}

// The superblock's build time stands in for the mtime of every compact
// inode, so the most common mtime makes the most inodes compact.
void pick_build_time(Plan& plan) {
  std::vector<std::pair<int64_t, uint32_t>> times;
  times.reserve(plan.inodes.size());
  for (const auto& ino : plan.inodes) times.emplace_back(ino.node->mtime, ino.node->mtime_nsec);
  std::sort(times.begin(), times.end());
  size_t best = 0, best_count = 0;
  for (size_t i = 0; i < times.size();) {
    size_t j = i;
    while (j < times.size() && times[j] == times[i]) j++;
    if (j - i > best_count) best = i, best_count = j - i;  // ties: the earliest time wins
    i = j;
  }
  plan.build_time = times[best].first;
  plan.build_time_nsec = times[best].second;
}

Status size_inodes(const Tree& tree, Plan& plan) {
  // Blocks are addressed with 32 bits: the image, and so any file, is
  // limited to 2^32 - 1 blocks (16 TiB).
  constexpr uint64_t kMaxFileSize = (uint64_t{kNullAddr} - 1) << kBlockBits;
  for (uint32_t i = 0; i < plan.inodes.size(); i++) {
    Inode& ino = plan.inodes[i];
    const Node& n = *ino.node;
    if (n.mtime_nsec >= 1000000000) return corrupt(plan, i, "mtime nanoseconds out of range");
    switch (n.kind) {
      case Node::Kind::kFile:
        if (n.size > kMaxFileSize) return corrupt(plan, i, "file larger than EROFS allows (16 TiB)");
        if (n.data_offset > tree.spool().size() || n.size > tree.spool().size() - n.data_offset)
          return make_error(ErrorKind::kInternal, path_of(plan, i) + ": contents beyond the end of the spool");
        ino.size = n.size;
        break;
      case Node::Kind::kDir:
        ino.nlink = 2 + ino.subdirs;
        layout_dir(ino);
        break;
      case Node::Kind::kSymlink:
        if (n.target.empty()) return corrupt(plan, i, "symlink with an empty target");
        if (n.target.size() > kMaxSymlink) return corrupt(plan, i, "symlink target longer than 4095 bytes");
        if (n.target.find('\0') != std::string::npos) return corrupt(plan, i, "symlink target contains a NUL byte");
        ino.size = n.target.size();
        break;
      case Node::Kind::kFifo: break;
    }
    SPORE_ASSIGN_OR_RETURN(ino.xattrs, encode_xattrs(plan, i));
    ino.extended = n.uid > 0xffff || n.gid > 0xffff || ino.nlink > 0xffff || ino.size > 0xffffffffu ||
                   n.mtime != plan.build_time || n.mtime_nsec != plan.build_time_nsec;
    uint32_t isize = ino.extended ? kExtendedSize : kCompactSize;
    if (isize + ino.xattrs.size() > kBlockSize)
      return corrupt(plan, i, "extended attributes too large (inode and xattrs must fit in 4 KiB)");
  }
  return ok_status();
}

// Places each inode, followed by its xattrs and, when they fit in the same
// block, the tail of its data (the last partial block: FLAT_INLINE), in
// 32-byte slots, never across a block boundary. Best fit: an inode goes
// into the fullest metadata block that still has room for it, so the gap a
// large inline tail leaves at the end of a block is filled by later, smaller
// inodes instead of being lost. Ties go to the lowest block: deterministic.
void place(Plan& plan) {
  std::vector<uint32_t> used = {static_cast<uint32_t>(align_up(kSuperOffset + kSuperSize, kSlotSize))};
  std::set<std::pair<uint32_t, uint32_t>> open = {{kBlockSize - used[0], 0}};  // (room, block)
  for (auto& ino : plan.inodes) {
    const uint32_t base = (ino.extended ? kExtendedSize : kCompactSize) + static_cast<uint32_t>(ino.xattrs.size());
    const uint32_t tail = ino.node->kind == Node::Kind::kFifo ? 0 : ino.tail();
    ino.inline_tail = tail && base + tail <= kBlockSize;
    const uint32_t need = base + (ino.inline_tail ? tail : 0);
    auto fit = open.lower_bound({need, 0});
    uint32_t b;
    if (fit == open.end()) {
      b = static_cast<uint32_t>(used.size());
      used.push_back(0);
    } else {
      b = fit->second;
      open.erase(fit);
    }
    ino.nid = (uint64_t{b} * kBlockSize + used[b]) >> kSlotBits;
    used[b] = static_cast<uint32_t>(align_up(used[b] + need, kSlotSize));
    if (used[b] + kCompactSize <= kBlockSize) open.insert({kBlockSize - used[b], b});
  }
  plan.meta_end = uint64_t{used.size()} << kBlockBits;

  uint64_t blk = plan.meta_end >> kBlockBits;
  for (auto& ino : plan.inodes) {
    ino.nblocks = ino.inline_tail ? ino.size >> kBlockBits : align_up(ino.size, kBlockSize) >> kBlockBits;
    if (ino.node->kind == Node::Kind::kFifo) ino.nblocks = 0;
    ino.blkaddr = ino.nblocks ? static_cast<uint32_t>(blk) : kNullAddr;  // checked below
    blk += ino.nblocks;
  }
  plan.total_blocks = blk;
}

Status plan_image(const Tree& tree, Plan& plan) {
  SPORE_TRY(collect(tree, plan));
  pick_build_time(plan);
  SPORE_TRY(size_inodes(tree, plan));
  place(plan);
  if (plan.total_blocks >= kNullAddr)
    return make_error(ErrorKind::kCorrupt, "the tree needs " + std::to_string(plan.total_blocks) +
                                               " blocks; EROFS addresses at most 2^32 - 2 (16 TiB)");
  if (plan.inodes[0].nid > 0xffff) return make_error(ErrorKind::kInternal, "root inode placed beyond nid 65535");
  return ok_status();
}

// Sequential output: metadata through a buffer, file contents straight
// from the spool. What the UUID covers is hashed as it goes by: everything
// written with write() (inodes, xattrs, dirent blocks, symlink targets) and
// inline tails, but neither padding nor file contents in data blocks (see
// emit()). The first block is kept for the superblock checksum.
class Writer {
 public:
  explicit Writer(int fd) : fd_(fd), buf_(kBufferSize) {}

  uint64_t pos() const { return pos_; }

  Status write(const void* data, size_t len) {
    hash_.update(data, len);
    const auto* p = static_cast<const uint8_t*>(data);
    while (len) {
      size_t n = std::min(len, buf_.size() - used_);
      std::memcpy(buf_.data() + used_, p, n);
      SPORE_TRY(advance(n));
      p += n;
      len -= n;
    }
    return ok_status();
  }

  Status zeros(uint64_t len) {
    while (len) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(len, buf_.size() - used_));
      std::memset(buf_.data() + used_, 0, n);
      SPORE_TRY(advance(n));
      len -= n;
    }
    return ok_status();
  }

  Status pad_to(uint64_t offset) {
    if (offset < pos_) return make_error(ErrorKind::kInternal, "erofs writer went past a planned offset");
    return zeros(offset - pos_);
  }

  // Contents straight from the spool into the buffer: no second copy.
  Status copy(const Spool& spool, uint64_t offset, uint64_t len, bool hash) {
    while (len) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(len, buf_.size() - used_));
      SPORE_TRY(spool.read(offset, buf_.data() + used_, n));
      if (hash) hash_.update(buf_.data() + used_, n);
      SPORE_TRY(advance(n));
      offset += n;
      len -= n;
    }
    return ok_status();
  }

  // File contents, spool to image inside the kernel (copy_file_range):
  // one copy instead of two, and no trip through this process.
  Status copy_direct(const Spool& spool, uint64_t offset, uint64_t len) {
    SPORE_TRY(flush());
    while (len) {
      loff_t in = static_cast<loff_t>(offset);
      ssize_t n = ::copy_file_range(spool.fd(), &in, fd_, nullptr, std::min<uint64_t>(len, 1u << 30), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        if (n < 0 && errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
          return errno_error("copying file contents into the image");
        return copy(spool, offset, len, false);  // not supported here: through the buffer
      }
      offset += static_cast<uint64_t>(n);
      len -= static_cast<uint64_t>(n);
      pos_ += static_cast<uint64_t>(n);
      flushed_ += static_cast<uint64_t>(n);
    }
    return ok_status();
  }

  Status flush() {
    if (!used_) return ok_status();
    if (flushed_ < kBlockSize) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(kBlockSize - flushed_, used_));
      std::memcpy(head_.data() + flushed_, buf_.data(), n);
    }
    SPORE_TRY(write_all(fd_, buf_.data(), used_));
    flushed_ += used_;
    used_ = 0;
    return ok_status();
  }

  Sha256& hash() { return hash_; }
  std::array<uint8_t, kBlockSize>& head() { return head_; }

 private:
  Status advance(size_t n) {
    used_ += n;
    pos_ += n;
    return used_ == buf_.size() ? flush() : ok_status();
  }

  int fd_;
  std::vector<uint8_t> buf_;
  size_t used_ = 0;
  uint64_t pos_ = 0, flushed_ = 0;
  Sha256 hash_;
  std::array<uint8_t, kBlockSize> head_{};
};

void build_inode(const Inode& ino, uint32_t ino_number, uint8_t* out) {
  const Node& n = *ino.node;
  const uint16_t layout = ino.inline_tail ? kLayoutFlatInline : kLayoutFlatPlain;
  const uint16_t xattr_icount =
      ino.xattrs.empty() ? 0 : static_cast<uint16_t>((ino.xattrs.size() - kXattrHeaderSize) / 4 + 1);
  const uint16_t mode = static_cast<uint16_t>(type_bits(n.kind) | (n.mode & 07777));
  // Fifos carry a device number (0) where the others have a block address.
  const uint32_t i_u = n.kind == Node::Kind::kFifo ? 0 : ino.blkaddr;
  if (!ino.extended) {
    std::memset(out, 0, kCompactSize);
    put16(out + 0, static_cast<uint16_t>(layout << 1));
    put16(out + 2, xattr_icount);
    put16(out + 4, mode);
    put16(out + 6, static_cast<uint16_t>(ino.nlink));
    put32(out + 8, static_cast<uint32_t>(ino.size));
    put32(out + 16, i_u);
    put32(out + 20, ino_number);
    put16(out + 24, static_cast<uint16_t>(n.uid));
    put16(out + 26, static_cast<uint16_t>(n.gid));
  } else {
    std::memset(out, 0, kExtendedSize);
    put16(out + 0, static_cast<uint16_t>(layout << 1 | 1));
    put16(out + 2, xattr_icount);
    put16(out + 4, mode);
    put64(out + 8, ino.size);
    put32(out + 16, i_u);
    put32(out + 20, ino_number);
    put32(out + 24, n.uid);
    put32(out + 28, n.gid);
    put64(out + 32, static_cast<uint64_t>(n.mtime));
    put32(out + 40, n.mtime_nsec);
    put32(out + 44, ino.nlink);
  }
}

Status emit(const Tree& tree, const Plan& plan, const ErofsOptions& opts, int fd) {
  Writer w(fd);
  std::vector<uint8_t> block(kBlockSize);
  SPORE_TRY(w.zeros(kSuperOffset + kSuperSize));  // the superblock is written last

  // Metadata: inodes, their xattrs and inline tails, in the order of their
  // place in the image (best fit mixes it up).
  std::vector<uint32_t> by_nid(plan.inodes.size());
  std::iota(by_nid.begin(), by_nid.end(), 0);
  std::sort(by_nid.begin(), by_nid.end(),
            [&](uint32_t a, uint32_t b) { return plan.inodes[a].nid < plan.inodes[b].nid; });
  for (uint32_t i : by_nid) {
    const Inode& ino = plan.inodes[i];
    const Node& n = *ino.node;
    SPORE_TRY(w.pad_to(ino.nid << kSlotBits));
    uint8_t raw[kExtendedSize];
    build_inode(ino, i, raw);
    SPORE_TRY(w.write(raw, ino.extended ? kExtendedSize : kCompactSize));
    SPORE_TRY(w.write(ino.xattrs.data(), ino.xattrs.size()));
    if (!ino.inline_tail) continue;
    const uint64_t tail_at = ino.nblocks << kBlockBits;
    switch (n.kind) {
      case Node::Kind::kFile: SPORE_TRY(w.copy(tree.spool(), n.data_offset + tail_at, ino.tail(), true)); break;
      case Node::Kind::kDir: {
        uint32_t used = build_dir_block(plan, ino, ino.dir_blocks.size() - 1, block.data());
        SPORE_TRY(w.write(block.data(), used));
        break;
      }
      case Node::Kind::kSymlink: SPORE_TRY(w.write(n.target.data(), n.target.size())); break;
      case Node::Kind::kFifo: break;
    }
  }
  SPORE_TRY(w.pad_to(plan.meta_end));

  // Data blocks, in inode order.
  for (const Inode& ino : plan.inodes) {
    if (!ino.nblocks) continue;
    const Node& n = *ino.node;
    if (w.pos() != uint64_t{ino.blkaddr} << kBlockBits)
      return make_error(ErrorKind::kInternal, "erofs writer out of step with its plan");
    switch (n.kind) {
      case Node::Kind::kFile:
        SPORE_TRY(w.copy_direct(tree.spool(), n.data_offset, std::min(n.size, ino.nblocks << kBlockBits)));
        break;
      case Node::Kind::kDir:
        for (size_t b = 0; b < ino.nblocks; b++) {
          build_dir_block(plan, ino, b, block.data());
          SPORE_TRY(w.write(block.data(), kBlockSize));
        }
        break;
      case Node::Kind::kSymlink: SPORE_TRY(w.write(n.target.data(), n.target.size())); break;
      case Node::Kind::kFifo: break;
    }
    SPORE_TRY(w.pad_to(align_up(w.pos(), kBlockSize)));
  }
  SPORE_TRY(w.pad_to(plan.total_blocks << kBlockBits));
  SPORE_TRY(w.flush());

  // The superblock. Its UUID is a hash of the image's metadata (inodes,
  // xattrs, dirent blocks, symlink targets, inline tails) and of the
  // superblock's own fields. File contents in data blocks are left out: with
  // the portable SHA-256 they would make writing a large image several times
  // slower (doc/rootfs-format.md has the numbers), and a content change that
  // keeps a file's size and mtime is the only one that goes unnoticed.
  uint8_t sb[kSuperSize] = {};
  put32(sb + 0, kMagic);
  put32(sb + 8, kCompatSbChksum | kCompatMtime);
  sb[12] = kBlockBits;
  put16(sb + 14, static_cast<uint16_t>(plan.inodes[0].nid));
  put64(sb + 16, plan.inodes.size());
  put64(sb + 24, static_cast<uint64_t>(plan.build_time));
  put32(sb + 32, plan.build_time_nsec);
  put32(sb + 36, static_cast<uint32_t>(plan.total_blocks));
  // meta_blkaddr, xattr_blkaddr (no shared xattrs) and incompat features: 0.
  std::memcpy(sb + 64, opts.volume_name.data(), opts.volume_name.size());
  w.hash().update(sb, sizeof sb);
  Digest d = w.hash().finish();
  std::memcpy(sb + 48, d.data(), 16);
  sb[48 + 6] = static_cast<uint8_t>((sb[48 + 6] & 0x0f) | 0x80);  // RFC 9562 version 8 (custom)
  sb[48 + 8] = static_cast<uint8_t>((sb[48 + 8] & 0x3f) | 0x80);  // RFC 4122 variant

  // The checksum covers the rest of block 0 after offset 1024 (inodes too).
  auto& head = w.head();
  std::memcpy(head.data() + kSuperOffset, sb, sizeof sb);
  put32(sb + 4, crc32c(~0u, head.data() + kSuperOffset, kBlockSize - kSuperOffset));
  ssize_t n = ::pwrite(fd, sb, sizeof sb, kSuperOffset);
  if (n != static_cast<ssize_t>(sizeof sb)) return errno_error("writing the superblock");
  return ok_status();
}

// Removes the temporary image unless it was renamed into place.
class TempFile {
 public:
  explicit TempFile(std::string path) : path_(std::move(path)) {}
  ~TempFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  void release() { path_.clear(); }

 private:
  std::string path_;
};

}  // namespace

Status write_erofs(const Tree& tree, const std::string& path, const ErofsOptions& opts, ErofsStats* stats) {
  if (opts.volume_name.size() > kVolumeNameMax || opts.volume_name.find('\0') != std::string::npos)
    return make_error(ErrorKind::kUsage, "EROFS volume name must be at most 15 bytes without NULs: '" +
                                             opts.volume_name + "'");
  Plan plan;  // the root's ".." is the root: parent 0
  SPORE_TRY(plan_image(tree, plan));

  const std::string tmp = temp_name_for(path);
  SPORE_ASSIGN_OR_RETURN(UniqueFd fd, create_new_file(tmp, 0644));
  TempFile guard(tmp);
  auto st = emit(tree, plan, opts, fd.get());
  if (!st.ok()) return std::move(st).error().wrap("writing " + tmp);
  // Durable before it becomes visible: a crash leaves the old image or the new, never a torn one.
  if (::fdatasync(fd.get()) != 0) return errno_error("syncing " + tmp);
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) return errno_error("renaming " + tmp + " to " + path);
  guard.release();

  if (stats) {
    stats->inodes = plan.inodes.size();
    stats->blocks = plan.total_blocks;
    stats->bytes = plan.total_blocks << kBlockBits;
    stats->extended_inodes = stats->inline_tails = 0;
    for (const auto& ino : plan.inodes) {
      stats->extended_inodes += ino.extended;
      stats->inline_tails += ino.inline_tail;
    }
    stats->metadata_blocks = plan.meta_end >> kBlockBits;
  }
  return ok_status();
}

}  // namespace spore::pack
