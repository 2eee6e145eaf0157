// open_image(): picks the source from the IMAGE argument's transport prefix.
#include <sys/stat.h>

#include <cstdlib>
#include <string_view>

#include "base/strings.h"
#include "packer/image.h"
#include "packer/source/docker_archive.h"
#include "packer/source/manifest.h"
#include "packer/source/oci_layout.h"
#include "packer/source/reference.h"
#include "packer/source/registry.h"

namespace spore::pack {
namespace {

// $XDG_CACHE_HOME/spore/blobs, else ~/.cache/spore/blobs. Never a shared
// directory (/tmp, /var/tmp): another user could plant blobs there.
Result<std::string> default_blob_cache() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/spore/blobs";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/spore/blobs";
  return make_error(ErrorKind::kUsage,
                    "no place for the blob cache: set XDG_CACHE_HOME (or HOME) to a directory of your own");
}

Result<Image> open_dir(const std::string& path, const std::string& original) {
  struct stat st;
  if (path.empty() || ::stat(path.c_str(), &st) < 0 || !S_ISDIR(st.st_mode))
    return make_error(ErrorKind::kNotFound, original + ": " + path + " is not a directory");
  char* real = ::realpath(path.c_str(), nullptr);
  Image image;
  image.reference = original;
  image.rootfs_dir = real ? real : path;
  std::free(real);
  return image;
}

}  // namespace

Result<Image> open_image(const std::string& ref, const SourceOptions& in) {
  SourceOptions opts = in;
  SPORE_TRY(parse_platform(opts.platform));

  std::string_view s = ref;
  auto strip = [&](std::string_view prefix) {
    if (!starts_with(s, prefix)) return false;
    s.remove_prefix(prefix.size());
    return true;
  };
  if (strip("oci:")) {
    std::string dir, tag;
    split_oci_arg(std::string(s), &dir, &tag);
    return open_oci_layout(dir, tag, ref, opts);
  }
  if (strip("docker-archive:")) {
    std::string file, selector;
    split_archive_arg(std::string(s), &file, &selector);
    return open_docker_archive(file, selector, ref, opts);
  }
  if (strip("dir:")) return open_dir(std::string(s), ref);
  for (std::string_view other : {"oci-archive:", "docker-daemon:", "containers-storage:"}) {
    if (starts_with(s, other))
      return make_error(ErrorKind::kUsage,
                        ref + ": the " + std::string(other.substr(0, other.size() - 1)) +
                            " transport is not supported (use a registry, oci:, docker-archive: or dir:)");
  }
  SPORE_ASSIGN_OR_RETURN(Reference parsed, parse_reference(s));
  // Only pulls need the cache.
  if (opts.blob_cache.empty()) {
    SPORE_ASSIGN_OR_RETURN(opts.blob_cache, default_blob_cache());
  }
  return pull_image(parsed, ref, opts);
}

}  // namespace spore::pack
