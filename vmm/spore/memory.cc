#include "vmm/spore/memory.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "base/codec.h"
#include "base/fd.h"
#include "base/files.h"
#include "base/strings.h"

namespace spore::vmm {
namespace {

constexpr char kIndexMagic[8] = {'S', 'P', 'O', 'R', 'M', 'E', 'M', '1'};
constexpr uint32_t kIndexVersion = 1;

bool all_zero(const uint8_t* p, size_t len) {
  // Word at a time; chunks are page-aligned and sized in pages.
  const uint64_t* w = reinterpret_cast<const uint64_t*>(p);
  for (size_t i = 0; i < len / 8; i++)
    if (w[i]) return false;
  return true;
}

}  // namespace

std::string encode_memory_index(const MemoryIndex& idx) {
  Encoder e;
  e.bytes(kIndexMagic, sizeof kIndexMagic);
  e.u32(kIndexVersion);
  e.u32(idx.chunk_size);
  e.u64(idx.ram_size);
  e.u64(idx.entries.size());
  for (const auto& c : idx.entries) {
    e.u32(c.index);
    e.u32(c.stored_size);
    e.bytes(c.digest.data(), c.digest.size());
  }
  return e.take();
}

Result<MemoryIndex> decode_memory_index(std::string_view data) {
  Decoder d(data);
  char magic[8];
  if (!d.bytes(magic, sizeof magic) || std::memcmp(magic, kIndexMagic, sizeof magic) != 0)
    return make_error(ErrorKind::kCorrupt, "memory index: bad magic");
  uint32_t version = d.u32();
  if (d.ok() && version != kIndexVersion)
    return make_error(ErrorKind::kCorrupt, strfmt("memory index: version %u is not supported", version));
  MemoryIndex idx;
  idx.chunk_size = d.u32();
  idx.ram_size = d.u64();
  uint64_t count = d.u64();
  if (!d.ok()) return make_error(ErrorKind::kCorrupt, "memory index: truncated header");
  const uint32_t cs = idx.chunk_size;
  if (cs < 4096 || (cs & (cs - 1)) || idx.ram_size == 0 || idx.ram_size % cs)
    return make_error(ErrorKind::kCorrupt, "memory index: bad chunk or RAM size");
  uint64_t max_chunks = idx.ram_size / cs;
  if (max_chunks > UINT32_MAX || count > max_chunks || count != d.remaining() / 40 || d.remaining() % 40)
    return make_error(ErrorKind::kCorrupt, "memory index: entry count does not match its size");
  idx.entries.resize(count);
  for (uint64_t i = 0; i < count; i++) {
    ChunkEntry& c = idx.entries[i];
    c.index = d.u32();
    c.stored_size = d.u32();
    d.bytes(c.digest.data(), c.digest.size());
    if (c.index >= max_chunks || (i > 0 && c.index <= idx.entries[i - 1].index))
      return make_error(ErrorKind::kCorrupt, "memory index: chunk numbers out of order or range");
  }
  if (!d.done()) return make_error(ErrorKind::kCorrupt, "memory index: trailing bytes");
  return idx;
}

Result<MemoryIndex> capture_memory(const uint8_t* ram, uint64_t ram_size, uint32_t chunk_size, ChunkStore& store,
                                   const std::function<bool(uint64_t)>& known_zero, CaptureStats* stats) {
  MemoryIndex idx;
  idx.chunk_size = chunk_size;
  idx.ram_size = ram_size;
  CaptureStats st;
  for (uint64_t i = 0; i < ram_size / chunk_size; i++) {
    if (known_zero && known_zero(i)) continue;
    const uint8_t* p = ram + i * chunk_size;
    if (all_zero(p, chunk_size)) continue;
    Digest d = sha256(p, chunk_size);
    bool had = store.contains(d);
    auto stored = store.put(d, p, chunk_size);
    if (!stored.ok()) return std::move(stored).error().wrap("storing RAM chunk");
    idx.entries.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(*stored), d});
    st.chunks++;
    st.new_chunks += had ? 0 : 1;
    st.stored_bytes += *stored;
  }
  if (stats) *stats = st;
  return idx;
}

Status materialize_memory(const MemoryIndex& idx, const ChunkSource& store, const std::string& path) {
  std::string tmp = temp_name_for(path);
  SPORE_ASSIGN_OR_RETURN(UniqueFd fd, open_file(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444));
  auto fail = [&](Error e) {
    ::unlink(tmp.c_str());
    return e;
  };
  if (::ftruncate(fd.get(), static_cast<off_t>(idx.ram_size)) < 0) return fail(errno_error("ftruncate " + tmp));
  std::vector<uint8_t> buf(idx.chunk_size);
  for (const auto& c : idx.entries) {
    if (auto s = store.get(c.digest, buf.data(), buf.size()); !s.ok()) return fail(s.error());
    uint64_t off = static_cast<uint64_t>(c.index) * idx.chunk_size;
    size_t done = 0;
    while (done < buf.size()) {
      ssize_t n = ::pwrite(fd.get(), buf.data() + done, buf.size() - done, static_cast<off_t>(off + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return fail(errno_error("write " + tmp));
      done += static_cast<size_t>(n);
    }
  }
  if (::fdatasync(fd.get()) < 0) return fail(errno_error("fdatasync " + tmp));
  if (::rename(tmp.c_str(), path.c_str()) < 0) return fail(errno_error("rename " + tmp));
  return ok_status();
}

}  // namespace spore::vmm
