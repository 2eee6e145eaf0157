// `oci:DIR[:tag]`: an OCI image layout directory (index.json, blobs/sha256/),
// as written by skopeo, buildah, `docker save` since Docker 25, or by hand.
#pragma once

#include <string>

#include "base/result.h"
#include "packer/image.h"

namespace spore::pack {

// Picks the image tagged `tag` (annotation org.opencontainers.image.ref.name,
// or io.containerd.image.name), or the only image when tag is empty; nested
// indexes are resolved to opts.platform. Every blob used is verified against
// its digest and size; the layers stay where they are (Image.layers point
// into DIR/blobs).
Result<Image> open_oci_layout(const std::string& dir, const std::string& tag, const std::string& original,
                              const SourceOptions& opts);

// Splits "DIR[:tag]" the way skopeo does: at the first ':', unless the whole
// string names an existing directory.
void split_oci_arg(const std::string& arg, std::string* dir, std::string* tag);

}  // namespace spore::pack
