// Guest RAM in a spore: the memory index (which chunk holds which part of
// RAM), capturing RAM into chunks, and materialising a RAM file from them.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/sha256.h"
#include "vmm/spore/chunk_store.h"

namespace spore::vmm {

inline constexpr uint32_t kDefaultChunkSize = 256 << 10;

struct ChunkEntry {
  uint32_t index = 0;        // chunk number: RAM offset / chunk_size
  uint32_t stored_size = 0;  // bytes in the store (compressed)
  Digest digest{};
};

// memory.idx (doc/spore-format.md). Chunks absent from the index are zero.
struct MemoryIndex {
  uint32_t chunk_size = kDefaultChunkSize;
  uint64_t ram_size = 0;
  std::vector<ChunkEntry> entries;  // strictly increasing index
};

std::string encode_memory_index(const MemoryIndex& idx);
// Validates order, ranges and counts; hostile input gives an error.
Result<MemoryIndex> decode_memory_index(std::string_view data);

struct CaptureStats {
  uint64_t chunks = 0;       // non-zero chunks
  uint64_t new_chunks = 0;   // of which the store did not have yet
  uint64_t stored_bytes = 0;
};

// Cuts ram (ram_size bytes) into chunks, stores the non-zero ones and
// returns the index. skip(i) may say a chunk is known to be zero without
// reading it (pages the guest never touched).
Result<MemoryIndex> capture_memory(const uint8_t* ram, uint64_t ram_size, uint32_t chunk_size, ChunkStore& store,
                                   const std::function<bool(uint64_t chunk)>& known_zero, CaptureStats* stats);

// Writes the RAM image described by idx to path (sparse: zero chunks are
// holes), verifying every chunk. Atomic: a temporary file is renamed into
// place only when complete.
Status materialize_memory(const MemoryIndex& idx, const ChunkSource& store, const std::string& path);

}  // namespace spore::vmm
