// The OCI / Docker image formats shared by every image source: descriptors,
// manifests, indexes (manifest lists), image configs, platform selection and
// blob verification. Parsing never throws; malformed JSON is an error value.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "packer/image.h"

namespace spore::pack {

namespace media {
inline constexpr const char* kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr const char* kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr const char* kOciConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr const char* kDockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr const char* kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr const char* kDockerConfig = "application/vnd.docker.container.image.v1+json";
// What a registry is asked for, in order of preference.
inline constexpr const char* kManifestAccept =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";
}  // namespace media

struct Platform {
  std::string os, architecture, variant;
  std::string str() const;  // "linux/arm64/v8"
};

// "linux/arm64", "linux/arm/v7"; architecture aliases are normalised
// (aarch64 -> arm64, x86_64 -> amd64).
Result<Platform> parse_platform(std::string_view s);
// Whether an image built for `have` runs as `want`: os and architecture
// must match; the variant must match when both give one, where arm64's
// "v8" and no variant are the same thing.
bool platform_matches(const Platform& want, const Platform& have);

struct Descriptor {
  std::string media_type;
  std::string digest;  // "sha256:<hex>", validated
  uint64_t size = 0;
  bool has_platform = false;
  Platform platform;
  std::map<std::string, std::string> annotations;
};

// A manifest or an index (manifest list), told apart by media type or,
// when absent, by shape.
struct Manifest {
  bool is_index = false;
  std::string media_type;
  std::vector<Descriptor> manifests;  // index
  Descriptor config;                  // manifest
  std::vector<Descriptor> layers;     // manifest, bottom first
};

// content_type is the HTTP Content-Type or the referring descriptor's
// mediaType (may be empty).
Result<Manifest> parse_manifest(std::string_view json, std::string_view content_type);

// Picks the entry of an index for the platform; the error lists what the
// index offers. Entries for "unknown/unknown" (attestations) are ignored; a
// lone entry without a platform is taken as it is.
Result<Descriptor> select_platform(const Manifest& index, const Platform& want, const std::string& what);

// Fills the runtime config from an image config blob; diff_ids gets
// rootfs.diff_ids (the uncompressed layer digests) when given.
Result<ImageConfig> parse_image_config(std::string_view json, std::vector<std::string>* diff_ids = nullptr);
// What layer i's uncompressed tar must hash to, beyond the blob digest that
// was verified already: diff_ids[i], or "" when the config lists none or it
// is the blob digest itself (an uncompressed layer).
std::string layer_diff_id(const std::vector<std::string>& diff_ids, size_t i, const std::string& blob_digest);

// Checks the config is for a platform that runs as `want` (when the config says).
Status check_config_platform(const ImageConfig& config, const Platform& want, const std::string& what);

// Checks a layer's media type is one we can apply (tar, optionally gzip or zstd).
Status check_layer_media_type(const Descriptor& layer);

// The hex part of a validated "sha256:<hex>" digest.
std::string digest_hex_part(const std::string& digest);
// Whether the file has this size and SHA-256 (size 0 skips the size check).
Status verify_file(const std::string& path, const std::string& digest, uint64_t size);
// The digest of some bytes, as "sha256:<hex>".
std::string sha256_digest_of(std::string_view bytes);

// "12.3 MiB"
std::string human_bytes(uint64_t n);

}  // namespace spore::pack
