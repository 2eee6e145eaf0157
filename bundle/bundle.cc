#include "bundle/bundle.h"

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>

#include "base/codec.h"
#include "base/files.h"
#include "base/strings.h"

namespace spore::bundle {
namespace {

constexpr char kMagic[8] = {'S', 'P', 'O', 'R', 'B', 'N', 'D', 'L'};
constexpr uint64_t kHeaderSize = 16;
constexpr uint64_t kMaxTable = 64u << 20;
constexpr uint32_t kMaxSections = 1u << 22;

Error corrupt(const std::string& path, const std::string& what) {
  return make_error(ErrorKind::kCorrupt, path + ": " + what);
}

std::string key(const Digest& d) { return std::string(reinterpret_cast<const char*>(d.data()), d.size()); }

// Streams stored bytes [offset, offset+stored) through optional zstd
// decompression into sink, hashing the output, and checks size and digest.
template <class Sink>
Status stream_section(int fd, const std::string& path, const Section& s, Sink&& sink) {
  // Buffers sized to the section: the stub reads its small config on every
  // run, and each page a fresh process touches is a page fault.
  const bool z = s.flags & kSectionZstd;
  std::vector<uint8_t> in(static_cast<size_t>(std::clamp<uint64_t>(s.stored_size, 1, 1 << 20)));
  std::vector<uint8_t> out(z ? ZSTD_DStreamOutSize() : 0);
  Sha256 h;
  uint64_t produced = 0;
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(z ? ZSTD_createDCtx() : nullptr, ZSTD_freeDCtx);
  if (z && !dctx) return make_error(ErrorKind::kInternal, "ZSTD_createDCtx failed");
  size_t last = 0;
  for (uint64_t off = 0; off < s.stored_size;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(in.size(), s.stored_size - off));
    SPORE_TRY(pread_exact(fd, in.data(), n, s.offset + off));
    off += n;
    if (!z) {
      if (produced + n > s.size) return corrupt(path, std::string(section_name(s.type)) + " section is longer than recorded");
      h.update(in.data(), n);
      SPORE_TRY(sink(in.data(), n));
      produced += n;
      continue;
    }
    ZSTD_inBuffer ib{in.data(), n, 0};
    while (ib.pos < ib.size) {
      ZSTD_outBuffer ob{out.data(), out.size(), 0};
      last = ZSTD_decompressStream(dctx.get(), &ob, &ib);
      if (ZSTD_isError(last))
        return corrupt(path, std::string(section_name(s.type)) + " section does not decompress: " + ZSTD_getErrorName(last));
      if (produced + ob.pos > s.size) return corrupt(path, std::string(section_name(s.type)) + " section is longer than recorded");
      h.update(out.data(), ob.pos);
      SPORE_TRY(sink(out.data(), ob.pos));
      produced += ob.pos;
    }
  }
  if (z && last != 0) return corrupt(path, std::string(section_name(s.type)) + " section is truncated");
  if (produced != s.size || h.finish() != s.sha256)
    return corrupt(path, std::string(section_name(s.type)) + " section is corrupt (its digest does not match)");
  return ok_status();
}

}  // namespace

const char* section_name(SectionType t) {
  switch (t) {
    case SectionType::kConfig: return "config";
    case SectionType::kKernel: return "kernel";
    case SectionType::kInitramfs: return "initramfs";
    case SectionType::kRootfs: return "rootfs";
    case SectionType::kSporeManifest: return "spore manifest";
    case SectionType::kSporeState: return "spore state";
    case SectionType::kSporeMemoryIndex: return "spore memory index";
    case SectionType::kChunk: return "RAM chunk";
  }
  return "unknown";
}

// ---- reading ----

Result<std::unique_ptr<Reader>> Reader::open(const std::string& path) {
  std::unique_ptr<Reader> r(new Reader());
  r->path_ = path;
  auto fd = open_file(path, O_RDONLY);
  if (!fd.ok()) return std::move(fd).error();
  r->fd_ = std::move(*fd);
  SPORE_ASSIGN_OR_RETURN(r->file_size_, file_size(r->fd_.get()));
  if (r->file_size_ < kHeaderSize + kFooterSize) return corrupt(path, "too short to be a spore bundle");
  uint8_t foot[kFooterSize];
  SPORE_TRY(pread_exact(r->fd_.get(), foot, sizeof foot, r->file_size_ - kFooterSize));
  Decoder d(std::string_view(reinterpret_cast<char*>(foot), sizeof foot));
  char magic[8];
  d.bytes(magic, sizeof magic);
  if (std::memcmp(magic, kMagic, sizeof magic) != 0) return corrupt(path, "not a spore bundle (bad magic)");
  uint32_t version = d.u32();
  if (version != kFormatVersion)
    return make_error(ErrorKind::kCorrupt,
                      strfmt("%s: bundle format %u is not supported by this build (it reads format %u); repack it "
                             "with a matching spore-pack", path.c_str(), version, kFormatVersion));
  uint32_t reserved = d.u32();
  uint64_t table_off = d.u64(), table_size = d.u64();
  Digest table_sha;
  d.bytes(table_sha.data(), table_sha.size());
  if (reserved != 0) return corrupt(path, "bundle footer's reserved word is not 0");
  // The header repeats the magic and version, and nothing else is there.
  uint8_t head[kHeaderSize];
  SPORE_TRY(pread_exact(r->fd_.get(), head, sizeof head, 0));
  Decoder hd(std::string_view(reinterpret_cast<char*>(head), sizeof head));
  hd.bytes(magic, sizeof magic);
  uint32_t head_version = hd.u32(), head_reserved = hd.u32();
  if (std::memcmp(magic, kMagic, sizeof magic) != 0 || head_version != version || head_reserved != 0)
    return corrupt(path, "bundle header does not match its footer");
  uint64_t body_end = r->file_size_ - kFooterSize;
  if (table_size > kMaxTable || table_off < kHeaderSize || table_off > body_end || table_size != body_end - table_off)
    return corrupt(path, "bundle table is out of place (truncated file?)");
  std::string table(table_size, '\0');
  SPORE_TRY(pread_exact(r->fd_.get(), table.data(), table.size(), table_off));
  r->digest_ = sha256(table);
  if (r->digest_ != table_sha) return corrupt(path, "bundle table is corrupt (its digest does not match)");

  Decoder t(table);
  uint32_t count = t.u32();
  if (!t.ok() || count > kMaxSections) return corrupt(path, "bundle table is malformed");
  // Sections lie back to back from the end of the header; the table starts
  // where the last one ends. No byte of the file is unaccounted for.
  uint64_t prev_end = kHeaderSize;
  bool seen[9] = {};
  for (uint32_t i = 0; i < count; i++) {
    Section s;
    s.type = static_cast<SectionType>(t.u32());
    s.flags = t.u32();
    s.offset = t.u64();
    s.stored_size = t.u64();
    s.size = t.u64();
    t.bytes(s.sha256.data(), s.sha256.size());
    if (!t.ok()) return corrupt(path, "bundle table is truncated");
    uint32_t type = static_cast<uint32_t>(s.type);
    if (type < 1 || type > 8 || (s.flags & ~kSectionZstd) || (!(s.flags & kSectionZstd) && s.stored_size != s.size))
      return corrupt(path, strfmt("bundle section %u is malformed", i));
    if (s.offset != prev_end || s.stored_size > table_off - s.offset)
      return corrupt(path, strfmt("bundle section %u is out of place (not right after the %s)", i,
                                  i == 0 ? "header" : "previous section"));
    prev_end = s.offset + s.stored_size;
    if (s.type == SectionType::kChunk) {
      if (!r->chunks_.emplace(key(s.sha256), r->sections_.size()).second)
        return corrupt(path, strfmt("bundle section %u repeats RAM chunk %s", i, digest_hex(s.sha256).c_str()));
    } else if (seen[type]) {
      return corrupt(path, strfmt("bundle section %u is a second %s section", i, section_name(s.type)));
    }
    seen[type] = true;
    r->sections_.push_back(s);
  }
  if (!t.done()) return corrupt(path, "bundle table has trailing bytes");
  if (prev_end != table_off) return corrupt(path, "bundle table does not start where the last section ends");
  // A sealed spore is its manifest, state and memory index together (and
  // its chunks); any of them alone is a damaged bundle.
  auto has = [&](SectionType t) { return seen[static_cast<uint32_t>(t)]; };
  const bool any = has(SectionType::kSporeManifest) || has(SectionType::kSporeState) ||
                   has(SectionType::kSporeMemoryIndex) || has(SectionType::kChunk);
  const bool all = has(SectionType::kSporeManifest) && has(SectionType::kSporeState) &&
                   has(SectionType::kSporeMemoryIndex);
  if (any && !all)
    return corrupt(path, "bundle holds part of a spore (manifest, state and memory index go together)");
  return r;
}

const Section* Reader::find(SectionType type) const {
  for (const auto& s : sections_)
    if (s.type == type) return &s;
  return nullptr;
}

const Section* Reader::find_chunk(const Digest& d) const {
  auto it = chunks_.find(key(d));
  return it == chunks_.end() ? nullptr : &sections_[it->second];
}

Result<std::string> Reader::read(const Section& s, uint64_t max) const {
  if (s.size > max) return corrupt(path_, std::string(section_name(s.type)) + " section is implausibly large");
  std::string out;
  out.reserve(s.size);
  SPORE_TRY(stream_section(fd_.get(), path_, s, [&](const uint8_t* p, size_t n) {
    out.append(reinterpret_cast<const char*>(p), n);
    return ok_status();
  }));
  return out;
}

Status Reader::extract(const Section& s, const std::string& path) const {
  std::string tmp = temp_name_for(path);
  SPORE_ASSIGN_OR_RETURN(UniqueFd out, create_new_file(tmp, 0444));
  auto st = stream_section(fd_.get(), path_, s, [&](const uint8_t* p, size_t n) { return write_all(out.get(), p, n); });
  if (st.ok() && ::fdatasync(out.get()) < 0) st = errno_error("fdatasync " + tmp);
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) < 0) st = errno_error("rename " + tmp);
  if (!st.ok()) ::unlink(tmp.c_str());
  return st;
}

Status BundleChunks::get(const Digest& d, uint8_t* out, size_t len) const {
  const Section* s = r_.find_chunk(d);
  if (!s) return make_error(ErrorKind::kCorrupt, "RAM chunk " + digest_hex(d) + " is missing from the bundle");
  if (s->size != len) return make_error(ErrorKind::kCorrupt, "RAM chunk " + digest_hex(d) + " has the wrong size");
  size_t at = 0;
  return stream_section(r_.fd(), r_.path(), *s, [&](const uint8_t* p, size_t n) {
    std::memcpy(out + at, p, n);  // bounded: stream_section stops past s->size == len
    at += n;
    return ok_status();
  });
}

// ---- writing ----

Result<std::unique_ptr<Writer>> Writer::create(const std::string& path, const std::string& tmp) {
  std::unique_ptr<Writer> w(new Writer());
  w->path_ = path;
  std::string name = tmp.empty() ? temp_name_for(path) : tmp;
  SPORE_ASSIGN_OR_RETURN(w->fd_, create_new_file(name, 0644));
  w->tmp_ = std::move(name);
  // 16-byte header: the magic (so tools can tell what the file is) and the version.
  Encoder h;
  h.bytes(kMagic, sizeof kMagic);
  h.u32(kFormatVersion);
  h.u32(0);
  std::string hdr = h.take();
  SPORE_TRY(w->append(hdr.data(), hdr.size()));
  return w;
}

Writer::~Writer() {
  if (!finished_ && !tmp_.empty()) ::unlink(tmp_.c_str());
}

Status Writer::append(const void* data, size_t len) {
  if (auto st = write_all(fd_.get(), data, len); !st.ok()) return std::move(st).error().wrap("writing " + tmp_);
  offset_ += len;
  return ok_status();
}

Status Writer::add(SectionType type, std::string_view data, bool compress) {
  Section s;
  s.type = type;
  s.offset = offset_;
  s.size = data.size();
  s.sha256 = sha256(data.data(), data.size());
  if (compress && !data.empty()) {
    std::string z(ZSTD_compressBound(data.size()), '\0');
    size_t n = ZSTD_compress(z.data(), z.size(), data.data(), data.size(), level_);
    if (!ZSTD_isError(n) && n < data.size() - data.size() / 16) {
      s.flags = kSectionZstd;
      s.stored_size = n;
      SPORE_TRY(append(z.data(), n));
      sections_.push_back(s);
      return ok_status();
    }
  }
  s.stored_size = data.size();
  SPORE_TRY(append(data.data(), data.size()));
  sections_.push_back(s);
  return ok_status();
}

Status Writer::add_file(SectionType type, const std::string& file, bool compress) {
  // Sections are written whole; files here (kernel, initramfs, rootfs) are
  // read once. Large rootfs images are streamed through zstd.
  SPORE_ASSIGN_OR_RETURN(UniqueFd in, open_file(file, O_RDONLY));
  SPORE_ASSIGN_OR_RETURN(uint64_t size, file_size(in.get()));
  Section s;
  s.type = type;
  s.offset = offset_;
  s.size = size;
  Sha256 h;
  std::vector<uint8_t> buf(1 << 20);
  if (!compress) {
    for (uint64_t done = 0; done < size;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - done));
      SPORE_TRY(pread_exact(in.get(), buf.data(), n, done));
      h.update(buf.data(), n);
      SPORE_TRY(append(buf.data(), n));
      done += n;
      if (progress_) progress_(n);
    }
    s.stored_size = size;
  } else {
    std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
    ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level_);
    ZSTD_CCtx_setPledgedSrcSize(cctx.get(), size);
    std::vector<uint8_t> out(ZSTD_CStreamOutSize());
    uint64_t start = offset_;
    for (uint64_t done = 0;;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - done));
      if (n) SPORE_TRY(pread_exact(in.get(), buf.data(), n, done));
      h.update(buf.data(), n);
      done += n;
      if (progress_ && n) progress_(n);
      ZSTD_EndDirective mode = done == size ? ZSTD_e_end : ZSTD_e_continue;
      ZSTD_inBuffer ib{buf.data(), n, 0};
      size_t remaining;
      do {
        ZSTD_outBuffer ob{out.data(), out.size(), 0};
        remaining = ZSTD_compressStream2(cctx.get(), &ob, &ib, mode);
        if (ZSTD_isError(remaining)) return make_error(ErrorKind::kInternal, std::string("zstd: ") + ZSTD_getErrorName(remaining));
        SPORE_TRY(append(out.data(), ob.pos));
      } while (mode == ZSTD_e_end ? remaining != 0 : ib.pos < ib.size);
      if (mode == ZSTD_e_end) break;
    }
    s.flags = kSectionZstd;
    s.stored_size = offset_ - start;
  }
  s.sha256 = h.finish();
  sections_.push_back(s);
  return ok_status();
}

Status Writer::add_stored_chunk(const Digest& d, uint64_t size, std::string_view frame) {
  Section s;
  s.type = SectionType::kChunk;
  s.flags = kSectionZstd;
  s.offset = offset_;
  s.stored_size = frame.size();
  s.size = size;
  s.sha256 = d;
  SPORE_TRY(append(frame.data(), frame.size()));
  sections_.push_back(s);
  return ok_status();
}

Status Writer::copy_from(const Reader& r, const Section& src) {
  Section s = src;
  s.offset = offset_;
  std::vector<uint8_t> buf(1 << 20);
  for (uint64_t done = 0; done < src.stored_size;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), src.stored_size - done));
    SPORE_TRY(pread_exact(r.fd(), buf.data(), n, src.offset + done));
    SPORE_TRY(append(buf.data(), n));
    done += n;
  }
  sections_.push_back(s);
  return ok_status();
}

Result<Digest> Writer::finish() {
  SPORE_ASSIGN_OR_RETURN(Digest digest, finish_temp());
  if (::rename(tmp_.c_str(), path_.c_str()) < 0) {
    Error e = errno_error("rename " + tmp_ + " to " + path_);
    ::unlink(tmp_.c_str());
    return e;
  }
  return digest;
}

Result<Digest> Writer::finish_temp() {
  Encoder t;
  t.u32(static_cast<uint32_t>(sections_.size()));
  for (const auto& s : sections_) {
    t.u32(static_cast<uint32_t>(s.type));
    t.u32(s.flags);
    t.u64(s.offset);
    t.u64(s.stored_size);
    t.u64(s.size);
    t.bytes(s.sha256.data(), s.sha256.size());
  }
  std::string table = t.take();
  Digest digest = sha256(table);
  uint64_t table_off = offset_;
  SPORE_TRY(append(table.data(), table.size()));
  Encoder f;
  f.bytes(kMagic, sizeof kMagic);
  f.u32(kFormatVersion);
  f.u32(0);
  f.u64(table_off);
  f.u64(table.size());
  f.bytes(digest.data(), digest.size());
  std::string foot = f.take();
  foot.resize(kFooterSize, '\0');
  SPORE_TRY(append(foot.data(), foot.size()));
  if (::fsync(fd_.get()) < 0) return errno_error("fsync " + tmp_);
  fd_.reset();
  finished_ = true;
  return digest;
}

}  // namespace spore::bundle
