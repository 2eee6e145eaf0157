// Pulls images from registries speaking the Registry HTTP API v2 (the OCI
// distribution spec): Docker Hub, ghcr.io, quay.io, a local registry.
//
// Anonymous pulls only: a Bearer challenge gets an anonymous token; a
// registry that wants a login is reported as such. Every manifest and blob
// is checked against its digest while it streams in; blobs land in
// <blob_cache>/sha256/<hex> through a temporary file and a rename, so the
// cache only ever holds verified content and is reused on the next pull.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "packer/image.h"
#include "packer/source/reference.h"

namespace spore::pack {

// `original` is what the user typed (Image.reference). Plain HTTP only with
// opts.insecure. An index is resolved to opts.platform; Image.digest is the
// digest the reference resolved to (the index's, when there is one), as
// docker reports it: NAME@DIGEST with the same platform pulls the same image.
Result<Image> pull_image(const Reference& ref, const std::string& original, const SourceOptions& opts);

// A WWW-Authenticate challenge: `Bearer realm="...",service="...",scope="..."`.
struct AuthChallenge {
  std::string scheme;  // "bearer", "basic" (lower case)
  std::string realm, service, scope;
};
std::optional<AuthChallenge> parse_www_authenticate(std::string_view header);

}  // namespace spore::pack
