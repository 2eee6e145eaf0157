// A spore on disk: a directory with manifest.json, state.bin, memory.idx and
// (by default) its chunk store. Opening verifies what it reads; writing is
// atomic; forking is metadata only.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/sha256.h"
#include "vmm/spore/chunk_store.h"
#include "vmm/spore/manifest.h"
#include "vmm/spore/memory.h"

namespace spore::vmm {

// Where a spore's files live: a directory, or sections of a bundle.
class SporeFiles {
 public:
  virtual ~SporeFiles() = default;
  // manifest.json, state.bin or memory.idx, whole (at most max bytes).
  virtual Result<std::string> read(const std::string& name, uint64_t max) const = 0;
  virtual Result<std::shared_ptr<const ChunkSource>> chunks(const SporeManifest& m) const = 0;
};

struct Spore {
  std::string dir;        // where it is, for messages (a directory or a bundle path)
  SporeManifest manifest;
  Digest digest{};        // SHA-256 of manifest.json: the spore's name
  std::string store_dir;  // chunk store, resolved (directory spores)
  std::shared_ptr<const SporeFiles> files;
};

Result<Spore> open_spore(const std::string& dir);
// A spore whose files come from elsewhere (a bundle); label names it in messages.
Result<Spore> open_spore_files(std::shared_ptr<const SporeFiles> files, const std::string& label);
// Reads a file the manifest pins (state.bin, memory.idx), checking its size
// and digest: a flipped byte is refused here.
Result<std::string> read_pinned(const Spore& spore, const FileRef& ref);
Result<MemoryIndex> load_memory_index(const Spore& spore, Digest* digest = nullptr);

// Builds a spore in a temporary sibling of dir and renames it into place on
// commit(); without commit (an error, a signal) nothing is left behind.
class SporeWriter {
 public:
  // store_dir empty: the spore keeps its chunks in dir/chunks.
  static Result<std::unique_ptr<SporeWriter>> begin(const std::string& dir, const std::string& store_dir);
  ~SporeWriter();

  ChunkStore& store() { return *store_; }
  // Fills in the file references and the chunk store path, writes, renames.
  Result<Spore> commit(SporeManifest manifest, const std::string& state, const std::string& memory_index);

 private:
  SporeWriter() = default;
  std::string dir_, tmp_, store_ref_;
  std::unique_ptr<ChunkStore> store_;
  bool committed_ = false;
};

// Mints count children of parent under out_dir/0 .. out_dir/<count-1>: new
// identities, the parent's state and memory by reference (hard links or
// small copies), the parent's chunk store. No RAM is copied.
Result<std::vector<Spore>> fork_spore(const Spore& parent, const std::string& out_dir, uint32_t count);

}  // namespace spore::vmm
