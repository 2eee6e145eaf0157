// Well-formed OCI and Docker JSON documents, for seeds.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "packer/source/manifest.h"

namespace spore::fuzz {

inline std::string sample_digest(char c) { return "sha256:" + std::string(64, c); }

inline nlohmann::json sample_descriptor(const char* media_type, char c, uint64_t size) {
  return {{"mediaType", media_type}, {"digest", sample_digest(c)}, {"size", size}};
}

inline std::string sample_index(bool docker) {
  auto entry = [&](const char* arch, const char* variant, char c) {
    nlohmann::json d = sample_descriptor(docker ? pack::media::kDockerManifest : pack::media::kOciManifest, c, 1234);
    d["platform"] = {{"os", "linux"}, {"architecture", arch}};
    if (*variant) d["platform"]["variant"] = variant;
    return d;
  };
  nlohmann::json att = sample_descriptor(pack::media::kOciManifest, 'e', 99);
  att["platform"] = {{"os", "unknown"}, {"architecture", "unknown"}};
  att["annotations"] = {{"vnd.docker.reference.type", "attestation-manifest"}};
  nlohmann::json j = {{"schemaVersion", 2},
                      {"mediaType", docker ? pack::media::kDockerList : pack::media::kOciIndex},
                      {"manifests", {entry("amd64", "", 'a'), entry("arm64", "v8", 'b'), entry("arm", "v7", 'c'),
                                     entry("aarch64", "", 'd'), att}}};
  return j.dump(1);
}

inline std::string sample_manifest_json(bool docker) {
  nlohmann::json j = {
      {"schemaVersion", 2},
      {"mediaType", docker ? pack::media::kDockerManifest : pack::media::kOciManifest},
      {"config", sample_descriptor(docker ? pack::media::kDockerConfig : pack::media::kOciConfig, 'c', 1500)},
      {"layers",
       {sample_descriptor(docker ? "application/vnd.docker.image.rootfs.diff.tar.gzip"
                                 : "application/vnd.oci.image.layer.v1.tar+gzip",
                          '1', 30000000),
        sample_descriptor("application/vnd.oci.image.layer.v1.tar+zstd", '2', 100),
        sample_descriptor("application/vnd.oci.image.layer.v1.tar", '3', 10240)}},
      {"annotations", {{"org.opencontainers.image.created", "2026-11-26T00:00:00Z"}}}};
  return j.dump(1);
}

inline std::string sample_image_config() {
  nlohmann::json j = {
      {"architecture", "arm64"},
      {"variant", "v8"},
      {"os", "linux"},
      {"config",
       {{"Entrypoint", {"/docker-entrypoint.sh"}},
        {"Cmd", {"python3"}},
        {"Env", {"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"}},
        {"WorkingDir", "/srv"},
        {"User", "app:app"}}},
      {"rootfs", {{"type", "layers"}, {"diff_ids", {sample_digest('1'), sample_digest('2'), 42}}}},
      {"history", {{{"created_by", "RUN true"}}}}};
  return j.dump(1);
}

}  // namespace spore::fuzz
