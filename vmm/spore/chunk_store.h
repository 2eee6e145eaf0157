// A content-addressed store of RAM chunks: each chunk is a file named by the
// SHA-256 of its uncompressed bytes, holding one zstd frame. Many spores
// share one store; each chunk is stored once. Every read is verified against
// the name before the bytes are used.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "base/sha256.h"

namespace spore::vmm {

// Where RAM chunks come from: a store directory or a bundle.
class ChunkSource {
 public:
  virtual ~ChunkSource() = default;
  // Reads chunk d into out (exactly len bytes after decompression) and
  // verifies its digest. Corrupt, truncated or missing chunks are errors.
  virtual Status get(const Digest& d, uint8_t* out, size_t len) const = 0;
};

class ChunkStore final : public ChunkSource {
 public:
  // Opens (and with create, makes) the store directory.
  static Result<ChunkStore> open(const std::string& dir, bool create);

  const std::string& dir() const { return dir_; }
  std::string path_for(const Digest& d) const;
  bool contains(const Digest& d) const;

  // Stores data under its digest unless already present (atomic: write to a
  // temporary name, then rename). Returns the bytes the chunk occupies.
  Result<uint64_t> put(const Digest& d, const uint8_t* data, size_t len, int level = 3);

  Status get(const Digest& d, uint8_t* out, size_t len) const override;
  // The chunk's file as stored (a zstd frame), for copying into a bundle.
  Result<std::string> read_stored(const Digest& d, uint64_t max) const;

 private:
  explicit ChunkStore(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace spore::vmm
