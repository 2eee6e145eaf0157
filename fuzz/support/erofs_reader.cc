#include "fuzz/support/erofs_reader.h"

#include "fuzz/support/fuzz.h"

namespace spore::fuzz {
namespace {

constexpr uint64_t kBlock = 4096;
constexpr uint64_t kSuper = 1024;
constexpr uint32_t kMagic = 0xE0F5E1E2;
constexpr uint32_t kNullAddr = 0xffffffff;

uint64_t le(const std::string& b, uint64_t off, int bytes) {
  if (off > b.size() || static_cast<uint64_t>(bytes) > b.size() - off) fail("erofs: read past the end of the image");
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++) v |= static_cast<uint64_t>(static_cast<uint8_t>(b[off + i])) << (8 * i);
  return v;
}

// CRC32C, bit by bit (the writer uses a table): reflected polynomial
// 0x82F63B78, seed ~0, no final inversion, as the kernel's crc32c(~0, ...).
uint32_t crc32c(const std::string& b, uint64_t from, uint64_t to) {
  uint32_t crc = ~0u;
  for (uint64_t i = from; i < to; i++) {
    crc ^= static_cast<uint8_t>(b[i]);
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1)));
  }
  return crc;
}

const char* prefix_of(uint8_t index) {
  switch (index) {
    case 1: return "user.";
    case 2: return "system.posix_acl_access";
    case 3: return "system.posix_acl_default";
    case 4: return "trusted.";
    case 6: return "security.";
  }
  return nullptr;
}

}  // namespace

ErofsReader::ErofsReader(const std::string& image) : img_(image) {
  check(img_.size() >= kBlock && img_.size() % kBlock == 0, "erofs: image is not a whole number of blocks");
  check(le(img_, kSuper, 4) == kMagic, "erofs: bad magic");
  std::string block0 = img_.substr(0, kBlock);
  for (int i = 4; i < 8; i++) block0[kSuper + i] = 0;
  check(crc32c(block0, kSuper, kBlock) == le(img_, kSuper + 4, 4), "erofs: superblock checksum mismatch");
  check(le(img_, kSuper + 12, 1) == 12, "erofs: block size is not 4 KiB");
  sb_.feature_compat = static_cast<uint32_t>(le(img_, kSuper + 8, 4));
  sb_.root_nid = static_cast<uint16_t>(le(img_, kSuper + 14, 2));
  sb_.inos = le(img_, kSuper + 16, 8);
  sb_.build_time = le(img_, kSuper + 24, 8);
  sb_.build_time_nsec = static_cast<uint32_t>(le(img_, kSuper + 32, 4));
  sb_.blocks = static_cast<uint32_t>(le(img_, kSuper + 36, 4));
  sb_.feature_incompat = static_cast<uint32_t>(le(img_, kSuper + 80, 4));
  check(le(img_, kSuper + 40, 4) == 0 && le(img_, kSuper + 44, 4) == 0, "erofs: meta or xattr area not at 0");
  check(sb_.feature_incompat == 0, "erofs: incompatible features set");
  check(uint64_t{sb_.blocks} * kBlock == img_.size(), "erofs: superblock blocks disagree with the image size");
  for (uint64_t i = 0; i < kSuper; i++) check(img_[i] == 0, "erofs: the first 1024 bytes are not zero");
}

ErofsInode ErofsReader::inode(uint64_t nid) const {
  ErofsInode ino;
  ino.nid = nid;
  const uint64_t off = nid * 32;
  check(off >= kSuper + 128 && off < img_.size(), "erofs: nid outside the metadata", std::to_string(nid));
  const uint16_t format = static_cast<uint16_t>(le(img_, off, 2));
  check((format & ~0xfu) == 0, "erofs: unknown inode format bits");
  ino.extended = format & 1;
  ino.layout = static_cast<uint16_t>(format >> 1);
  check(ino.layout == 0 || ino.layout == 2, "erofs: unexpected data layout");
  const uint64_t isize = ino.extended ? 64 : 32;
  check(off % kBlock + isize <= kBlock, "erofs: inode straddles a block");
  const uint16_t icount = static_cast<uint16_t>(le(img_, off + 2, 2));
  ino.mode = static_cast<uint16_t>(le(img_, off + 4, 2));
  if (ino.extended) {
    ino.size = le(img_, off + 8, 8);
    ino.raw_blkaddr = static_cast<uint32_t>(le(img_, off + 16, 4));
    ino.ino = static_cast<uint32_t>(le(img_, off + 20, 4));
    ino.uid = static_cast<uint32_t>(le(img_, off + 24, 4));
    ino.gid = static_cast<uint32_t>(le(img_, off + 28, 4));
    ino.mtime = le(img_, off + 32, 8);
    ino.mtime_nsec = static_cast<uint32_t>(le(img_, off + 40, 4));
    ino.nlink = static_cast<uint32_t>(le(img_, off + 44, 4));
  } else {
    ino.nlink = static_cast<uint32_t>(le(img_, off + 6, 2));
    ino.size = le(img_, off + 8, 4);
    ino.raw_blkaddr = static_cast<uint32_t>(le(img_, off + 16, 4));
    ino.ino = static_cast<uint32_t>(le(img_, off + 20, 4));
    ino.uid = static_cast<uint32_t>(le(img_, off + 24, 2));
    ino.gid = static_cast<uint32_t>(le(img_, off + 26, 2));
    ino.mtime = sb_.build_time;
    ino.mtime_nsec = sb_.build_time_nsec;
  }
  if (icount) {
    const uint64_t xsize = 12 + 4 * uint64_t{icount - 1u};
    const uint64_t x = off + isize;
    check(x % kBlock + xsize <= kBlock, "erofs: xattrs leave the inode's block");
    check(le(img_, x + 4, 1) == 0, "erofs: shared xattrs where there are none");
    for (uint64_t p = x + 12; p < x + xsize;) {
      check(p + 4 <= x + xsize, "erofs: truncated xattr entry");
      uint8_t name_len = static_cast<uint8_t>(le(img_, p, 1));
      uint8_t index = static_cast<uint8_t>(le(img_, p + 1, 1));
      uint16_t value_size = static_cast<uint16_t>(le(img_, p + 2, 2));
      const char* prefix = prefix_of(index);
      check(prefix != nullptr, "erofs: xattr with an unknown name index");
      check(p + 4 + name_len + value_size <= x + xsize, "erofs: xattr entry overruns its body");
      std::string name = prefix + img_.substr(p + 4, name_len);
      ino.xattrs.emplace_back(name, img_.substr(p + 4 + name_len, value_size));
      p = (p + 4 + name_len + value_size + 3) / 4 * 4;
    }
  }
  return ino;
}

std::string ErofsReader::data(const ErofsInode& ino) const {
  const uint64_t off = ino.nid * 32;
  const uint64_t isize = ino.extended ? 64 : 32;
  const uint16_t icount = static_cast<uint16_t>(le(img_, off + 2, 2));
  const uint64_t xsize = icount ? 12 + 4 * uint64_t{icount - 1u} : 0;
  const uint64_t full = ino.layout == 2 ? ino.size / kBlock * kBlock : ino.size;
  std::string out;
  if (full) {
    check(ino.raw_blkaddr != kNullAddr, "erofs: data without a block address");
    const uint64_t at = uint64_t{ino.raw_blkaddr} * kBlock;
    check(at >= kBlock && at <= img_.size() && full <= img_.size() - at, "erofs: data blocks outside the image");
    out = img_.substr(at, full);
  } else if (ino.layout == 0) {
    check(ino.raw_blkaddr == kNullAddr, "erofs: an inode without data has a block address");
  }
  if (ino.layout == 2) {
    const uint64_t tail = ino.size % kBlock;
    check(tail > 0, "erofs: FLAT_INLINE without a tail");
    const uint64_t t = off + isize + xsize;
    check(t % kBlock + tail <= kBlock, "erofs: inline tail leaves the inode's block");
    out += img_.substr(t, tail);
  }
  return out;
}

std::vector<ErofsDirent> ErofsReader::dirents(const ErofsInode& dir) const {
  const std::string d = data(dir);
  std::vector<ErofsDirent> out;
  for (uint64_t b = 0; b < d.size(); b += kBlock) {
    const uint64_t used = std::min<uint64_t>(kBlock, d.size() - b);
    const uint64_t first_off = le(d, b + 8, 2);
    check(first_off >= 12 && first_off % 12 == 0 && first_off <= used, "erofs: bad first dirent");
    const uint64_t n = first_off / 12;
    for (uint64_t k = 0; k < n; k++) {
      ErofsDirent e;
      e.nid = le(d, b + 12 * k, 8);
      uint64_t name_off = le(d, b + 12 * k + 8, 2);
      e.file_type = static_cast<uint8_t>(le(d, b + 12 * k + 10, 1));
      uint64_t name_end = k + 1 < n ? le(d, b + 12 * (k + 1) + 8, 2) : used;
      check(name_off >= first_off && name_off < name_end && name_end <= used, "erofs: dirent name out of place");
      e.name = d.substr(b + name_off, name_end - name_off);
      if (k + 1 == n) e.name = e.name.substr(0, e.name.find('\0'));  // the last name runs to the padding
      check(!e.name.empty(), "erofs: empty dirent name");
      check(out.empty() || out.back().name < e.name, "erofs: dirents not in byte order");
      out.push_back(std::move(e));
    }
  }
  return out;
}

}  // namespace spore::fuzz
