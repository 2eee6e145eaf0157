// Builds tar archives in memory with libarchive (pax format; optionally
// gzip or zstd), for the seeds of the layer and archive targets.
#pragma once

#include <archive.h>
#include <archive_entry.h>

#include <string>
#include <utility>
#include <vector>

#include "fuzz/support/fuzz.h"

namespace spore::fuzz {

class MemTar {
 public:
  enum Filter { kNone, kGzip, kZstd };
  explicit MemTar(Filter f = kNone) : a_(archive_write_new()), buf_(8 << 20, '\0') {
    archive_write_set_format_pax_restricted(a_);
    if (f == kGzip) archive_write_add_filter_gzip(a_);
    if (f == kZstd) archive_write_add_filter_zstd(a_);
    archive_write_set_bytes_in_last_block(a_, 1);
    if (archive_write_open_memory(a_, buf_.data(), buf_.size(), &used_) != ARCHIVE_OK) fail("archive_write_open_memory");
  }
  ~MemTar() {
    if (a_) archive_write_free(a_);
  }

  MemTar& file(const std::string& path, const std::string& content, unsigned mode = 0644,
               std::vector<std::pair<std::string, std::string>> xattrs = {}) {
    archive_entry* e = entry(path, AE_IFREG, mode);
    archive_entry_set_size(e, static_cast<la_int64_t>(content.size()));
    for (const auto& [k, v] : xattrs) archive_entry_xattr_add_entry(e, k.c_str(), v.data(), v.size());
    return write(e, content);
  }
  MemTar& dir(const std::string& path, unsigned mode = 0755) { return write(entry(path, AE_IFDIR, mode), ""); }
  MemTar& symlink(const std::string& path, const std::string& target) {
    archive_entry* e = entry(path, AE_IFLNK, 0777);
    archive_entry_set_symlink(e, target.c_str());
    return write(e, "");
  }
  MemTar& hardlink(const std::string& path, const std::string& target) {
    archive_entry* e = entry(path, AE_IFREG, 0644);
    archive_entry_set_hardlink(e, target.c_str());
    archive_entry_set_size(e, 0);
    return write(e, "");
  }
  MemTar& fifo(const std::string& path) { return write(entry(path, AE_IFIFO, 0600), ""); }
  MemTar& device(const std::string& path) {
    archive_entry* e = entry(path, AE_IFCHR, 0600);
    archive_entry_set_rdevmajor(e, 1);
    archive_entry_set_rdevminor(e, 3);
    return write(e, "");
  }
  // data at offset 0, then a hole up to size.
  MemTar& sparse(const std::string& path, uint64_t size, const std::string& data) {
    archive_entry* e = entry(path, AE_IFREG, 0644);
    archive_entry_set_size(e, static_cast<la_int64_t>(size));
    archive_entry_sparse_add_entry(e, 0, static_cast<la_int64_t>(data.size()));
    return write(e, data);
  }
  std::string finish() {
    if (archive_write_close(a_) != ARCHIVE_OK) fail("archive_write_close", archive_error_string(a_));
    archive_write_free(a_);
    a_ = nullptr;
    return buf_.substr(0, used_);
  }

 private:
  archive_entry* entry(const std::string& path, unsigned type, unsigned mode) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, path.c_str());
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, mode);
    archive_entry_set_mtime(e, 1700000000, 0);
    return e;
  }
  MemTar& write(archive_entry* e, const std::string& content) {
    if (archive_write_header(a_, e) != ARCHIVE_OK) fail("archive_write_header", archive_error_string(a_));
    archive_entry_free(e);
    if (!content.empty() && archive_write_data(a_, content.data(), content.size()) != la_ssize_t(content.size()))
      fail("archive_write_data");
    return *this;
  }

  archive* a_;
  std::string buf_;
  size_t used_ = 0;
};

}  // namespace spore::fuzz
