// Registry image references ("alpine", "ghcr.io/o/app:1.2",
// "localhost:5000/demo@sha256:...") parsed the way docker does, so the
// same string names the same image in spore-pack and in docker.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace spore::pack {

struct Reference {
  std::string domain;      // "docker.io", "ghcr.io", "127.0.0.1:5000"
  std::string repository;  // "library/alpine"
  std::string tag;         // "latest" when neither tag nor digest was given
  std::string digest;      // "sha256:<64 hex>", or empty

  // Where the Registry HTTP API lives: docker.io is served by registry-1.docker.io.
  std::string registry_host() const;
  // What to ask /v2/<repo>/manifests/ for: the digest wins over the tag.
  std::string manifest_ref() const { return digest.empty() ? tag : digest; }
  // Fully qualified: "docker.io/library/alpine:latest[@sha256:...]".
  std::string str() const;
};

// Accepts an optional "docker://" prefix. The first path component is a
// registry host if it contains '.' or ':', is "localhost", or has upper
// case letters (docker's rule); otherwise the image is on docker.io, where
// one-component names get the "library/" prefix.
Result<Reference> parse_reference(std::string_view ref);

// A digest we can verify: "sha256:" and 64 lower-case hex digits.
bool is_sha256_digest(std::string_view digest);

}  // namespace spore::pack
