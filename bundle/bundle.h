// The sidecar bundle (doc/bundle-format.md): sections addressed by digest,
// zstd-compressed where it pays, a table, and a footer at the end of the
// file. The digest of the table names the whole bundle.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "base/sha256.h"
#include "vmm/spore/chunk_store.h"

namespace spore::bundle {

inline constexpr uint32_t kFormatVersion = 1;
inline constexpr size_t kFooterSize = 64;

enum class SectionType : uint32_t {
  kConfig = 1,
  kKernel = 2,
  kInitramfs = 3,
  kRootfs = 4,
  kSporeManifest = 5,
  kSporeState = 6,
  kSporeMemoryIndex = 7,
  kChunk = 8,
};

inline constexpr uint32_t kSectionZstd = 1;  // stored as one zstd frame

struct Section {
  SectionType type = SectionType::kConfig;
  uint32_t flags = 0;
  uint64_t offset = 0;       // of the stored bytes in the file
  uint64_t stored_size = 0;  // bytes in the file
  uint64_t size = 0;         // bytes after decompression
  Digest sha256{};           // of the uncompressed content
};

const char* section_name(SectionType t);

// Reads and verifies a bundle. Opening checks the footer, the table's
// digest and every section's placement; a section's content is checked
// against its digest when it is read.
class Reader {
 public:
  static Result<std::unique_ptr<Reader>> open(const std::string& path);

  const std::string& path() const { return path_; }
  const Digest& digest() const { return digest_; }  // SHA-256 of the table: the bundle's name
  const std::vector<Section>& sections() const { return sections_; }
  const Section* find(SectionType type) const;
  const Section* find_chunk(const Digest& d) const;
  bool has_spore() const { return find(SectionType::kSporeManifest) != nullptr; }

  // The whole section, decompressed and verified (up to max bytes).
  Result<std::string> read(const Section& s, uint64_t max) const;
  // Streams the section into path (atomic), verifying as it goes.
  Status extract(const Section& s, const std::string& path) const;
  int fd() const { return fd_.get(); }

 private:
  Reader() = default;
  std::string path_;
  UniqueFd fd_;
  uint64_t file_size_ = 0;
  Digest digest_{};
  std::vector<Section> sections_;
  std::unordered_map<std::string, size_t> chunks_;  // digest bytes -> index
};

// RAM chunks served from a bundle.
class BundleChunks final : public vmm::ChunkSource {
 public:
  explicit BundleChunks(const Reader& r) : r_(r) {}
  Status get(const Digest& d, uint8_t* out, size_t len) const override;

 private:
  const Reader& r_;
};

// Writes a bundle to path atomically: everything goes to a temporary file
// (created new: O_EXCL|O_NOFOLLOW) that becomes path only in finish().
// Destroying an unfinished writer removes the temporary file.
class Writer {
 public:
  // The temporary file is tmp, or by default path.tmp-<random>.
  static Result<std::unique_ptr<Writer>> create(const std::string& path, const std::string& tmp = "");
  ~Writer();
  const std::string& temp_path() const { return tmp_; }

  // The zstd level of add and add_file (1-19; default kDefaultLevel).
  static constexpr int kDefaultLevel = 12;
  void set_level(int level) { level_ = level < 1 ? 1 : level > 19 ? 19 : level; }
  // Called with the bytes add_file has read so far, per MiB.
  void set_progress(std::function<void(uint64_t)> fn) { progress_ = std::move(fn); }

  // compress: try zstd and keep it only if it saves at least 1/16.
  Status add(SectionType type, std::string_view data, bool compress);
  Status add_file(SectionType type, const std::string& file, bool compress);
  // A chunk already stored as a zstd frame (from a chunk store or a bundle).
  Status add_stored_chunk(const Digest& d, uint64_t size, std::string_view zstd_frame);
  // Copies a section of another bundle as it is stored (no recompression).
  Status copy_from(const Reader& r, const Section& s);
  // Table, footer, fsync, rename. Returns the bundle digest.
  Result<Digest> finish();
  // The same without the rename: the complete bundle stays at temp_path()
  // for the caller to move into place (spore-pack commits it from its
  // supervising process).
  Result<Digest> finish_temp();

 private:
  Writer() = default;
  Status append(const void* data, size_t len);
  std::string path_, tmp_;
  UniqueFd fd_;
  uint64_t offset_ = 0;
  std::vector<Section> sections_;
  bool finished_ = false;
  int level_ = kDefaultLevel;
  std::function<void(uint64_t)> progress_;
};

}  // namespace spore::bundle
