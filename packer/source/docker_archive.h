// `docker-archive:FILE[:name:tag]`: what `docker save` writes. Both the
// classic layout (manifest.json, <id>/layer.tar, <hex>.json) and the
// OCI-style one of Docker 25+ (index.json, blobs/sha256/, and a
// manifest.json pointing into blobs/) are read.
#pragma once

#include <string>

#include "base/result.h"
#include "packer/image.h"

namespace spore::pack {

// Unpacks the archive's members into a fresh directory under opts.work_dir
// (the layers are then read from there), hashing each as it is written.
// What is content-addressed is verified: blobs/sha256/<hex> and <hex>.json
// by name, uncompressed layer tars against the config's diff_ids. With
// several images in the archive, `selector` picks one by RepoTag
// ("name:tag") or by position ("@0").
Result<Image> open_docker_archive(const std::string& file, const std::string& selector, const std::string& original,
                                  const SourceOptions& opts);

// Splits "FILE[:selector]": the whole string if it names a file, else at
// the first ':' whose prefix is an existing file.
void split_archive_arg(const std::string& arg, std::string* file, std::string* selector);

}  // namespace spore::pack
