// What an image source yields: the image config and its layers as local
// files (fetched, verified), or a plain root directory. spore-pack turns
// this into a Tree (packer/layers.h) and then a rootfs image.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "packer/tree.h"

namespace spore::pack {

// The parts of the OCI image config that matter at run time (docker semantics).
struct ImageConfig {
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;  // KEY=VALUE
  std::string workdir;
  std::string user;
  std::string os, architecture, variant;  // from the config (may be empty for dir:)
};

struct LayerBlob {
  std::string path;        // local file: a tar, possibly gzip- or zstd-compressed
  std::string media_type;  // as the manifest says (informational; the format is sniffed)
  std::string digest;      // "sha256:<hex>" of the blob as stored (verified when fetched)
  uint64_t size = 0;
  std::string diff_id;     // "sha256:<hex>" of the uncompressed tar, from the config; empty: no check needed
};

struct Image {
  std::string reference;  // what the user asked for, for messages and the bundle
  std::string digest;     // manifest digest when known ("sha256:..."), else empty
  ImageConfig config;
  std::vector<LayerBlob> layers;  // bottom first
  std::string rootfs_dir;         // dir: sources: the tree to import instead of layers
};

// Progress on a terminal (stderr); silent when stderr is not a terminal.
class Progress {
 public:
  static Progress& get();
  void set_enabled(bool on) { enabled_ = on; }
  bool enabled() const { return enabled_; }
  // One line per task, updated in place: "pulling sha256:abcd… 12.3/45.6 MiB".
  void start(const std::string& what, uint64_t total_bytes);
  void advance(uint64_t bytes);
  void finish(const std::string& note = "");
  // A line that stays.
  void note(const std::string& line);

 private:
  Progress();
  void draw(bool final);
  bool enabled_ = false;
  std::string what_;
  uint64_t total_ = 0, done_ = 0;
  int64_t last_draw_ms_ = 0;
};

struct SourceOptions {
  std::string platform = "linux/arm64";  // os/arch[/variant] to pick from an index
  bool insecure = false;                  // plain HTTP to the registry (localhost testing)
  std::string blob_cache;                 // where fetched blobs are kept, by digest
  std::string work_dir;                   // scratch space (e.g. unpacked docker archives)
  Limits limits;                          // what an untrusted archive may unpack to
  int stall_timeout_s = 60;               // a registry request that receives nothing this long fails
};

// IMAGE forms: "name[:tag]", "host[:port]/name[:tag]", "name@sha256:<hex>"
// (registry), "oci:DIR[:tag]", "docker-archive:FILE", "dir:PATH".
Result<Image> open_image(const std::string& ref, const SourceOptions& opts);

}  // namespace spore::pack
