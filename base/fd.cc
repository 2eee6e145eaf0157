#include "base/fd.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

namespace spore {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);  // close() errors on a read-only or socket fd carry no information we can act on
  fd_ = fd;
}

void Mapping::reset() {
  if (addr_) ::munmap(addr_, len_);
  addr_ = nullptr;
  len_ = 0;
}

Result<Mapping> Mapping::anonymous(size_t len) {
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return errno_error("mmap " + std::to_string(len) + " bytes");
  return Mapping(p, len);
}

Mapping Mapping::split_off(size_t at) {
  if (at >= len_) return Mapping();
  Mapping tail(data() + at, len_ - at);
  len_ = at;
  return tail;
}

Result<UniqueFd> open_file(const std::string& path, int flags, mode_t mode) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno_error(path);
  return UniqueFd(fd);
}

Status pread_exact(int fd, void* buf, size_t len, uint64_t offset) {
  auto* p = static_cast<uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = ::pread(fd, p, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("read");
    }
    if (n == 0) return make_error(ErrorKind::kCorrupt, "unexpected end of file");
    p += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return ok_status();
}

Result<size_t> read_full(int fd, void* buf, size_t len) {
  auto* p = static_cast<uint8_t*>(buf);
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::read(fd, p + done, len - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("read");
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

Status write_all(int fd, const void* buf, size_t len) {
  auto* p = static_cast<const uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("write");
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return ok_status();
}

Result<std::string> read_file(const std::string& path, size_t max_bytes) {
  SPORE_ASSIGN_OR_RETURN(UniqueFd fd, open_file(path, O_RDONLY));
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(path);
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes)
      return make_error(ErrorKind::kCorrupt, path + ": larger than " + std::to_string(max_bytes) + " bytes");
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Result<uint64_t> file_size(int fd) {
  struct stat st;
  if (::fstat(fd, &st) < 0) return errno_error("fstat");
  if (S_ISBLK(st.st_mode)) {
    off_t end = ::lseek(fd, 0, SEEK_END);
    if (end < 0) return errno_error("lseek");
    return static_cast<uint64_t>(end);
  }
  if (!S_ISREG(st.st_mode)) return make_error(ErrorKind::kNotFound, "not a regular file");
  return static_cast<uint64_t>(st.st_size);
}

Status set_nonblocking(int fd, bool on) {
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) return errno_error("fcntl(F_GETFL)");
  fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
  if (::fcntl(fd, F_SETFL, fl) < 0) return errno_error("fcntl(F_SETFL)");
  return ok_status();
}

}  // namespace spore
