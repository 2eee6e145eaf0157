#include "vmm/spore/cache.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "base/fd.h"
#include "base/strings.h"

namespace spore::vmm {
namespace {

Status mkdir_p(const std::string& dir) {
  std::string cur;
  for (const auto& part : split(dir, '/')) {
    cur += part;
    if (!cur.empty() && ::mkdir(cur.c_str(), 0700) < 0 && errno != EEXIST) return errno_error("mkdir " + cur);
    cur += '/';
  }
  return ok_status();
}

Status write_file_atomic(const std::string& path, const std::string& data) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    SPORE_ASSIGN_OR_RETURN(UniqueFd fd, open_file(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644));
    SPORE_TRY(write_all(fd.get(), data.data(), data.size()));
  }
  if (::rename(tmp.c_str(), path.c_str()) < 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return errno_error("rename " + tmp, e);
  }
  return ok_status();
}

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
  SPORE_TRY(mkdir_p(dir + "/ram"));
  SPORE_TRY(mkdir_p(dir + "/verified"));
  return Cache(dir);
}

std::string Cache::ram_path(const Digest& index_digest) const {
  return dir_ + "/ram/" + digest_hex(index_digest) + ".ram";
}

Result<std::string> Cache::ram_file(const MemoryIndex& idx, const Digest& index_digest, const ChunkSource& store,
                                    bool* materialized) {
  if (materialized) *materialized = false;
  std::string path = ram_path(index_digest);
  auto ready = [&] {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) == idx.ram_size;
  };
  if (ready()) return path;
  SPORE_ASSIGN_OR_RETURN(UniqueFd lock, open_file(path + ".lock", O_RDWR | O_CREAT, 0600));
  while (::flock(lock.get(), LOCK_EX) < 0)
    if (errno != EINTR) return errno_error("flock " + path + ".lock");
  if (ready()) return path;  // another process made it while we waited
  auto s = materialize_memory(idx, store, path);
  if (!s.ok()) return std::move(s).error().wrap("materialising spore RAM");
  if (materialized) *materialized = true;
  return path;
}

Result<Digest> Cache::file_digest(const std::string& path) {
  char real[PATH_MAX];
  if (!::realpath(path.c_str(), real)) return errno_error(path);
  struct stat st;
  if (::stat(real, &st) < 0) return errno_error(path);
  std::string key = strfmt("%s\n%llu %llu %lld %lld.%09ld %lld.%09ld", real, static_cast<unsigned long long>(st.st_dev),
                           static_cast<unsigned long long>(st.st_ino), static_cast<long long>(st.st_size),
                           static_cast<long long>(st.st_mtim.tv_sec), st.st_mtim.tv_nsec,
                           static_cast<long long>(st.st_ctim.tv_sec), st.st_ctim.tv_nsec);
  std::string stamp = dir_ + "/verified/" + digest_hex(sha256(key));
  if (auto text = read_file(stamp, 128); text.ok()) {
    if (auto d = parse_digest_hex(*text)) return *d;
  }
  SPORE_ASSIGN_OR_RETURN(Digest d, sha256_file(real));
  (void)write_file_atomic(stamp, digest_hex(d));  // only an optimisation
  return d;
}

}  // namespace spore::vmm
