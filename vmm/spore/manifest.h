// manifest.json: what a spore is (doc/spore-format.md). The spore's digest
// is the SHA-256 of these bytes; the manifest in turn pins the state file
// and the memory index by digest, and they pin every RAM chunk.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "vmm/spore/platform.h"

namespace spore::vmm {

inline constexpr const char* kManifestFormat = "spore/1";

struct FileRef {
  std::string file;    // relative to the spore directory
  std::string sha256;  // hex
  uint64_t size = 0;
};

struct SporeManifest {
  std::string id;      // 32 hex digits: this spore's identity; new for every fork
  std::string parent;  // manifest digest of the spore this was forked from, or empty
  std::string created; // RFC 3339, UTC
  uint64_t generation = 0;  // of the guest when captured
  PlatformFacts platform;

  struct Machine {
    uint32_t vcpus = 1;
    uint64_t mem_mib = 0;
    std::string cmdline;
  } machine;

  struct Rootfs {
    std::string path;  // absolute path of the image attached at capture
    uint64_t size = 0;
    std::string sha256;
  };
  std::optional<Rootfs> rootfs;

  FileRef state;         // state.bin
  FileRef memory_index;  // memory.idx

  struct Memory {
    uint32_t chunk_size = 0;
    uint64_t ram_size = 0;
    uint64_t chunks = 0;        // non-zero chunks (the rest of RAM is zero)
    uint64_t stored_bytes = 0;  // their compressed size
    std::string chunk_store;    // directory, relative to the spore directory or absolute
  } memory;
};

std::string manifest_to_json(const SporeManifest& m);
// Parses and validates: every field present, well-typed and in range.
Result<SporeManifest> parse_manifest(std::string_view json);

// A fresh 128-bit identity as 32 hex digits.
Result<std::string> new_spore_id();
std::string utc_now_rfc3339();

}  // namespace spore::vmm
