#include "vmm/spore/cache.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "base/fd.h"
#include "base/files.h"
#include "base/strings.h"

namespace spore::vmm {
namespace {

}  // namespace

Result<Cache> Cache::open() {
  std::string dir;
  if (const char* d = std::getenv("SPORE_CACHE_DIR"); d && *d) dir = d;
  else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) dir = std::string(x) + "/spore";
  else if (const char* h = std::getenv("HOME"); h && *h) dir = std::string(h) + "/.cache/spore";
  else return make_error(ErrorKind::kUnavailable, "no cache directory: set SPORE_CACHE_DIR or HOME");
  return open_at(dir);
}

Result<Cache> Cache::open_at(const std::string& dir) {
  // What is in here is trusted once vouched for (RAM files, extracted
  // kernels and rootfs images): no other user may write into it.
  for (const char* sub : {"", "/ram", "/verified", "/sections"})
    if (auto s = make_private_dir(dir + sub); !s.ok()) return std::move(s).error().wrap("the cache");
  return Cache(dir);
}

std::string Cache::ram_path(const Digest& index_digest) const {
  return dir_ + "/ram/" + digest_hex(index_digest) + ".ram";
}

Result<std::string> Cache::ram_file(const MemoryIndex& idx, const Digest& index_digest, const ChunkSource& store,
                                    bool* materialized) {
  if (materialized) *materialized = false;
  std::string path = ram_path(index_digest);
  // Present is not enough: only a file this cache vouched for when it wrote
  // it, unchanged since (a truncated, swapped or edited file is redone).
  auto ready = [&] {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) == idx.ram_size &&
           vouched(path, index_digest);
  };
  if (ready()) return path;
  SPORE_ASSIGN_OR_RETURN(UniqueFd lock, open_file(path + ".lock", O_RDWR | O_CREAT, 0600));
  while (::flock(lock.get(), LOCK_EX) < 0)
    if (errno != EINTR) return errno_error("flock " + path + ".lock");
  if (ready()) return path;  // another process made it while we waited
  auto s = materialize_memory(idx, store, path);
  if (!s.ok()) return std::move(s).error().wrap("materialising spore RAM");
  remember_digest(path, index_digest);  // under the lock: waiters see it at once
  if (materialized) *materialized = true;
  return path;
}

namespace {
// The stamp file for path as it is now; empty if it cannot be stat'ed.
std::string stamp_path(const std::string& dir, const std::string& path) {
  char real[PATH_MAX];
  if (!::realpath(path.c_str(), real)) return {};
  struct stat st;
  if (::stat(real, &st) < 0) return {};
  std::string key = strfmt("%s\n%llu %llu %lld %lld.%09ld %lld.%09ld", real, static_cast<unsigned long long>(st.st_dev),
                           static_cast<unsigned long long>(st.st_ino), static_cast<long long>(st.st_size),
                           static_cast<long long>(st.st_mtim.tv_sec), st.st_mtim.tv_nsec,
                           static_cast<long long>(st.st_ctim.tv_sec), st.st_ctim.tv_nsec);
  return dir + "/verified/" + digest_hex(sha256(key));
}
}  // namespace

Result<Digest> Cache::file_digest(const std::string& path) {
  std::string stamp = stamp_path(dir_, path);
  if (stamp.empty()) return errno_error(path);
  if (auto text = read_file(stamp, 128); text.ok()) {
    if (auto d = parse_digest_hex(*text)) return *d;
  }
  SPORE_ASSIGN_OR_RETURN(Digest d, sha256_file(path));
  (void)write_file_atomic(stamp, digest_hex(d));  // only an optimisation
  return d;
}

bool Cache::vouched(const std::string& path, const Digest& d) const {
  std::string stamp = stamp_path(dir_, path);
  if (stamp.empty()) return false;
  auto text = read_file(stamp, 128);
  if (!text.ok()) return false;
  auto got = parse_digest_hex(*text);
  return got && *got == d;
}

void Cache::remember_digest(const std::string& path, const Digest& d) {
  std::string stamp = stamp_path(dir_, path);
  if (!stamp.empty()) (void)write_file_atomic(stamp, digest_hex(d));
}

}  // namespace spore::vmm
