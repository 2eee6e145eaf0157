#include "packer/source/oci_layout.h"

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "base/strings.h"
#include "packer/source/manifest.h"
#include "packer/source/reference.h"

namespace spore::pack {
namespace {

constexpr size_t kMaxJsonBytes = 32 << 20;
constexpr int kMaxIndexDepth = 4;
constexpr const char* kRefName = "org.opencontainers.image.ref.name";
constexpr const char* kContainerdName = "io.containerd.image.name";

bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

class Layout {
 public:
  Layout(std::string dir, std::string what) : dir_(std::move(dir)), what_(std::move(what)) {}

  std::string blob_path(const Descriptor& d) const { return dir_ + "/blobs/sha256/" + digest_hex_part(d.digest); }

  // The blob, verified, as a path.
  Result<std::string> blob(const Descriptor& d) const {
    std::string path = blob_path(d);
    struct stat st;
    if (::stat(path.c_str(), &st) < 0)
      return make_error(ErrorKind::kNotFound, what_ + ": blob " + d.digest + " is missing (" + path + ")");
    auto v = verify_file(path, d.digest, d.size);
    if (!v.ok()) return std::move(v).error().wrap(what_);
    return path;
  }

  Result<std::string> small_blob(const Descriptor& d) const {
    if (d.size > kMaxJsonBytes)
      return make_error(ErrorKind::kCorrupt, what_ + ": " + d.digest + " is too large for JSON");
    SPORE_ASSIGN_OR_RETURN(std::string path, blob(d));
    return read_file(path, kMaxJsonBytes);
  }

 private:
  std::string dir_, what_;
};

// Whether an index.json entry carries this name: the bare tag skopeo
// writes, or a full reference as containerd and docker write.
bool has_name(const Descriptor& d, const std::string& tag) {
  for (const char* key : {kRefName, kContainerdName}) {
    auto it = d.annotations.find(key);
    if (it == d.annotations.end()) continue;
    if (it->second == tag) return true;
    auto a = parse_reference(it->second), b = parse_reference(tag);
    if (a.ok() && b.ok() && a->str() == b->str() && tag.find(':') != std::string::npos) return true;
  }
  return false;
}

std::string names_of(const Manifest& index) {
  std::string out;
  for (const auto& d : index.manifests) {
    auto it = d.annotations.find(kRefName);
    if (it != d.annotations.end()) out += (out.empty() ? "" : ", ") + it->second;
  }
  return out.empty() ? "none tagged" : out;
}

}  // namespace

void split_oci_arg(const std::string& arg, std::string* dir, std::string* tag) {
  size_t colon = arg.find(':');
  if (colon == std::string::npos || is_dir(arg)) {
    *dir = arg;
    tag->clear();
    return;
  }
  *dir = arg.substr(0, colon);
  *tag = arg.substr(colon + 1);
}

Result<Image> open_oci_layout(const std::string& dir, const std::string& tag, const std::string& original,
                              const SourceOptions& opts) {
  SPORE_ASSIGN_OR_RETURN(Platform want, parse_platform(opts.platform));
  std::string what = original;
  if (!is_dir(dir)) return make_error(ErrorKind::kNotFound, what + ": " + dir + " is not a directory");
  auto index_text = read_file(dir + "/index.json", kMaxJsonBytes);
  if (!index_text.ok())
    return make_error(ErrorKind::kNotFound, what + ": " + dir + " is not an OCI image layout (no readable index.json)");
  auto index = parse_manifest(*index_text, media::kOciIndex);
  if (!index.ok()) return std::move(index).error().wrap(what + ": index.json");
  if (!index->is_index) return make_error(ErrorKind::kCorrupt, what + ": index.json is not an image index");

  // Narrow index.json to the image asked for.
  Manifest candidates;
  candidates.is_index = true;
  for (const auto& d : index->manifests)
    if (tag.empty() || has_name(d, tag)) candidates.manifests.push_back(d);
  if (candidates.manifests.empty()) {
    if (!tag.empty())
      return make_error(ErrorKind::kNotFound,
                        what + ": no image tagged \"" + tag + "\" in " + dir + " (tags: " + names_of(*index) + ")");
    return make_error(ErrorKind::kNotFound, what + ": " + dir + " holds no images");
  }
  Descriptor top;
  if (candidates.manifests.size() == 1) {
    top = candidates.manifests[0];
  } else {
    bool all_platforms = true;
    for (const auto& d : candidates.manifests) all_platforms &= d.has_platform;
    if (!all_platforms)
      return make_error(ErrorKind::kUsage, what + ": " + dir + " holds several images; name one as oci:" + dir +
                                               ":TAG (tags: " + names_of(*index) + ")");
    SPORE_ASSIGN_OR_RETURN(top, select_platform(candidates, want, what));
  }

  Layout layout(dir, what);
  Image image;
  image.reference = original;
  image.digest = top.digest;
  Descriptor d = top;
  Manifest m;
  for (int depth = 0;; depth++) {
    if (depth == kMaxIndexDepth) return make_error(ErrorKind::kCorrupt, what + ": indexes nested too deeply");
    SPORE_ASSIGN_OR_RETURN(std::string text, layout.small_blob(d));
    auto parsed = parse_manifest(text, d.media_type);
    if (!parsed.ok()) return std::move(parsed).error().wrap(what + ": " + d.digest);
    m = std::move(*parsed);
    if (!m.is_index) break;
    SPORE_ASSIGN_OR_RETURN(d, select_platform(m, want, what));
  }

  SPORE_ASSIGN_OR_RETURN(std::string config_text, layout.small_blob(m.config));
  std::vector<std::string> diff_ids;
  auto config = parse_image_config(config_text, &diff_ids);
  if (!config.ok()) return std::move(config).error().wrap(what);
  image.config = std::move(*config);
  SPORE_TRY(check_config_platform(image.config, want, what));
  if (!diff_ids.empty() && diff_ids.size() != m.layers.size())
    return make_error(ErrorKind::kCorrupt, strfmt("%s: the config lists %zu layers, the manifest %zu", what.c_str(),
                                                  diff_ids.size(), m.layers.size()));
  for (size_t i = 0; i < m.layers.size(); i++) {
    const Descriptor& l = m.layers[i];
    SPORE_TRY(check_layer_media_type(l));
    SPORE_ASSIGN_OR_RETURN(std::string path, layout.blob(l));
    image.layers.push_back(LayerBlob{path, l.media_type, l.digest, l.size, layer_diff_id(diff_ids, i, l.digest)});
  }
  return image;
}

}  // namespace spore::pack
