// RAII for file descriptors and memory mappings, plus small I/O helpers that
// retry on EINTR and report errors as values.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "base/result.h"

namespace spore {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// An mmap()ed range, unmapped on destruction.
class Mapping {
 public:
  Mapping() = default;
  Mapping(void* addr, size_t len) : addr_(addr), len_(len) {}
  ~Mapping() { reset(); }
  Mapping(Mapping&& o) noexcept
      : addr_(std::exchange(o.addr_, nullptr)), len_(std::exchange(o.len_, 0)) {}
  Mapping& operator=(Mapping&& o) noexcept {
    if (this != &o) {
      reset();
      addr_ = std::exchange(o.addr_, nullptr);
      len_ = std::exchange(o.len_, 0);
    }
    return *this;
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  uint8_t* data() const { return static_cast<uint8_t*>(addr_); }
  size_t size() const { return len_; }
  bool valid() const { return addr_ != nullptr; }
  void reset();

  // Anonymous private read-write memory (MAP_NORESERVE).
  static Result<Mapping> anonymous(size_t len);
  // Splits at byte `at` (page-aligned, at most size()): this keeps [0, at),
  // the result owns [at, size()). Each unmaps only its own part.
  Mapping split_off(size_t at);

 private:
  void* addr_ = nullptr;
  size_t len_ = 0;
};

Result<UniqueFd> open_file(const std::string& path, int flags, mode_t mode = 0);
// Reads exactly len bytes at offset (EOF before that is an error).
Status pread_exact(int fd, void* buf, size_t len, uint64_t offset);
// Reads until len bytes or EOF; returns bytes read.
Result<size_t> read_full(int fd, void* buf, size_t len);
Status write_all(int fd, const void* buf, size_t len);
Result<std::string> read_file(const std::string& path, size_t max_bytes);
Result<uint64_t> file_size(int fd);
Status set_nonblocking(int fd, bool on = true);

}  // namespace spore
