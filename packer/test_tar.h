// Test helper: writes tar layers with libarchive (plain, gzip, zstd), the
// way image builders do, including entries no sane builder writes.
#pragma once

#include <archive.h>
#include <archive_entry.h>

#include <stdlib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace spore::pack::testing {

enum class Compression { kNone, kGzip, kZstd, kXz };

// A fresh directory under /tmp, removed with everything in it.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/spore-pack-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    path = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

struct Meta {
  uint32_t mode = 0644;
  int64_t uid = 0, gid = 0;
  int64_t mtime = 1700000000;
  long mtime_nsec = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;
};

class TarWriter {
 public:
  TarWriter(const std::string& path, Compression c = Compression::kNone) : a_(archive_write_new()) {
    archive_write_set_format_pax_restricted(a_);
    switch (c) {
      case Compression::kNone: archive_write_add_filter_none(a_); break;
      case Compression::kGzip: archive_write_add_filter_gzip(a_); break;
      case Compression::kZstd: archive_write_add_filter_zstd(a_); break;
      case Compression::kXz: archive_write_add_filter_xz(a_); break;
    }
    REQUIRE(archive_write_open_filename(a_, path.c_str()) == ARCHIVE_OK);
  }
  ~TarWriter() { close(); }

  void file(const std::string& path, const std::string& content, Meta m = {}) {
    archive_entry* e = entry(path, AE_IFREG, m);
    archive_entry_set_size(e, static_cast<la_int64_t>(content.size()));
    write(e, content);
  }
  // A file of `size` bytes produced chunk by chunk, never whole in memory.
  void big_file(const std::string& path, uint64_t size,
                const std::function<void(uint64_t offset, std::string* chunk)>& gen) {
    archive_entry* e = entry(path, AE_IFREG, {});
    archive_entry_set_size(e, static_cast<la_int64_t>(size));
    REQUIRE(archive_write_header(a_, e) == ARCHIVE_OK);
    archive_entry_free(e);
    std::string chunk;
    for (uint64_t off = 0; off < size;) {
      gen(off, &chunk);
      if (chunk.size() > size - off) chunk.resize(size - off);
      REQUIRE(archive_write_data(a_, chunk.data(), chunk.size()) == static_cast<la_ssize_t>(chunk.size()));
      off += chunk.size();
    }
  }
  // A sparse file (pax 1.0 sparse format): `data` at offset 0, then a hole
  // up to `size`. Only the data is stored, whatever size it declares.
  void sparse_file(const std::string& path, uint64_t size, const std::string& data) {
    archive_entry* e = entry(path, AE_IFREG, {});
    archive_entry_set_size(e, static_cast<la_int64_t>(size));
    archive_entry_sparse_add_entry(e, 0, static_cast<la_int64_t>(data.size()));
    REQUIRE(archive_write_header(a_, e) == ARCHIVE_OK);
    archive_entry_free(e);
    REQUIRE(archive_write_data(a_, data.data(), data.size()) == static_cast<la_ssize_t>(data.size()));
  }
  void dir(const std::string& path, Meta m = {}) {
    if (m.mode == 0644) m.mode = 0755;
    write(entry(path, AE_IFDIR, m), "");
  }
  void symlink(const std::string& path, const std::string& target) {
    archive_entry* e = entry(path, AE_IFLNK, {0777});
    archive_entry_set_symlink(e, target.c_str());
    write(e, "");
  }
  void hardlink(const std::string& path, const std::string& target) {
    archive_entry* e = entry(path, AE_IFREG, {});
    archive_entry_set_hardlink(e, target.c_str());
    archive_entry_set_size(e, 0);
    write(e, "");
  }
  void device(const std::string& path, bool block, unsigned major, unsigned minor) {
    archive_entry* e = entry(path, block ? AE_IFBLK : AE_IFCHR, {0600});
    archive_entry_set_rdevmajor(e, major);
    archive_entry_set_rdevminor(e, minor);
    write(e, "");
  }
  void fifo(const std::string& path) { write(entry(path, AE_IFIFO, {0600}), ""); }
  void whiteout(const std::string& dir, const std::string& name) {
    file(dir.empty() ? ".wh." + name : dir + "/.wh." + name, "");
  }
  void opaque(const std::string& dir) { file(dir + "/.wh..wh..opq", ""); }

  void close() {
    if (!a_) return;
    REQUIRE(archive_write_close(a_) == ARCHIVE_OK);
    archive_write_free(a_);
    a_ = nullptr;
  }

 private:
  archive_entry* entry(const std::string& path, unsigned type, const Meta& m) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, path.c_str());
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, m.mode);
    archive_entry_set_uid(e, m.uid);
    archive_entry_set_gid(e, m.gid);
    archive_entry_set_mtime(e, m.mtime, m.mtime_nsec);
    for (const auto& [k, v] : m.xattrs) archive_entry_xattr_add_entry(e, k.c_str(), v.data(), v.size());
    return e;
  }
  void write(archive_entry* e, const std::string& content) {
    REQUIRE(archive_write_header(a_, e) == ARCHIVE_OK);
    archive_entry_free(e);
    if (!content.empty())
      REQUIRE(archive_write_data(a_, content.data(), content.size()) == static_cast<la_ssize_t>(content.size()));
  }

  archive* a_;
};

}  // namespace spore::pack::testing
