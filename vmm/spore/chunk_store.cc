#include "vmm/spore/chunk_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <vector>

#include "base/fd.h"
#include "base/files.h"
#include "base/strings.h"

namespace spore::vmm {
Result<ChunkStore> ChunkStore::open(const std::string& dir, bool create) {
  if (create) SPORE_TRY(make_dirs(dir));
  struct stat st;
  if (::stat(dir.c_str(), &st) < 0) return errno_error("chunk store " + dir);
  if (!S_ISDIR(st.st_mode)) return make_error(ErrorKind::kCorrupt, "chunk store " + dir + " is not a directory");
  return ChunkStore(dir);
}

std::string ChunkStore::path_for(const Digest& d) const {
  std::string hex = digest_hex(d);
  return dir_ + "/" + hex.substr(0, 2) + "/" + hex;
}

bool ChunkStore::contains(const Digest& d) const { return ::access(path_for(d).c_str(), F_OK) == 0; }

Result<uint64_t> ChunkStore::put(const Digest& d, const uint8_t* data, size_t len, int level) {
  std::string path = path_for(d);
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) return static_cast<uint64_t>(st.st_size);
  std::string sub = path.substr(0, path.rfind('/'));
  if (::mkdir(sub.c_str(), 0755) < 0 && errno != EEXIST) return errno_error("mkdir " + sub);

  std::vector<uint8_t> out(ZSTD_compressBound(len));
  size_t n = ZSTD_compress(out.data(), out.size(), data, len, level);
  if (ZSTD_isError(n)) return make_error(ErrorKind::kInternal, std::string("zstd: ") + ZSTD_getErrorName(n));
  std::string tmp = temp_name_for(path);
  {
    SPORE_ASSIGN_OR_RETURN(UniqueFd fd, create_new_file(tmp, 0444));
    auto w = write_all(fd.get(), out.data(), n);
    if (!w.ok()) {
      ::unlink(tmp.c_str());
      return std::move(w).error().wrap(tmp);
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) < 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return errno_error("rename " + tmp, e);
  }
  return static_cast<uint64_t>(n);
}

Result<std::string> ChunkStore::read_stored(const Digest& d, uint64_t max) const {
  auto data = read_file(path_for(d), max);
  if (!data.ok()) return make_error(ErrorKind::kCorrupt, "chunk " + digest_hex(d) + " is missing from " + dir_);
  return data;
}

Status ChunkStore::get(const Digest& d, uint8_t* out, size_t len) const {
  std::string path = path_for(d);
  auto fd = open_file(path, O_RDONLY);
  if (!fd.ok()) return make_error(ErrorKind::kCorrupt, "chunk " + digest_hex(d) + " is missing from " + dir_);
  auto size = file_size(fd->get());
  if (!size.ok()) return std::move(size).error().wrap(path);
  // A chunk never compresses to more than its bound; anything larger is not ours.
  if (*size > ZSTD_compressBound(len))
    return make_error(ErrorKind::kCorrupt, "chunk " + digest_hex(d) + " is larger than any valid chunk");
  std::vector<uint8_t> in(*size);
  SPORE_TRY(pread_exact(fd->get(), in.data(), in.size(), 0));
  size_t n = ZSTD_decompress(out, len, in.data(), in.size());
  if (ZSTD_isError(n) || n != len)
    return make_error(ErrorKind::kCorrupt, "chunk " + digest_hex(d) + " is corrupt (does not decompress to " +
                                               std::to_string(len) + " bytes)");
  if (sha256(out, len) != d)
    return make_error(ErrorKind::kCorrupt, "chunk " + digest_hex(d) + " is corrupt (content does not match its name)");
  return ok_status();
}

}  // namespace spore::vmm
