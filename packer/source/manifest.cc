#include "packer/source/manifest.h"

#include <fcntl.h>

#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "base/sha256.h"
#include "base/strings.h"
#include "packer/source/reference.h"

namespace spore::pack {
namespace {

using json = nlohmann::json;

Error corrupt(const std::string& what) { return make_error(ErrorKind::kCorrupt, what); }

std::string normalize_arch(std::string a) {
  if (a == "aarch64") return "arm64";
  if (a == "x86_64" || a == "x86-64") return "amd64";
  if (a == "armhf" || a == "armel") return "arm";
  return a;
}

std::string get_string(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

// Docker accepts either a JSON array of strings or a single string for
// Entrypoint and Cmd; null means unset.
Status get_strings(const json& j, const char* key, std::vector<std::string>* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return ok_status();
  if (it->is_string()) {
    out->push_back(it->get<std::string>());
    return ok_status();
  }
  if (!it->is_array()) return corrupt(std::string("image config: ") + key + " is not a list of strings");
  for (const auto& v : *it) {
    if (!v.is_string()) return corrupt(std::string("image config: ") + key + " is not a list of strings");
    out->push_back(v.get<std::string>());
  }
  return ok_status();
}

Result<Descriptor> parse_descriptor(const json& j, const char* where) {
  if (!j.is_object()) return corrupt(std::string(where) + ": descriptor is not an object");
  Descriptor d;
  d.media_type = get_string(j, "mediaType");
  d.digest = get_string(j, "digest");
  if (!is_sha256_digest(d.digest)) {
    if (d.digest.empty()) return corrupt(std::string(where) + ": descriptor without a digest");
    return corrupt(std::string(where) + ": unsupported digest \"" + d.digest + "\" (only sha256 is supported)");
  }
  auto size = j.find("size");
  if (size == j.end() || !size->is_number_unsigned())
    return corrupt(std::string(where) + ": descriptor " + d.digest + " has no valid size");
  d.size = size->get<uint64_t>();
  if (auto p = j.find("platform"); p != j.end() && p->is_object()) {
    d.has_platform = true;
    d.platform.os = get_string(*p, "os");
    d.platform.architecture = normalize_arch(get_string(*p, "architecture"));
    d.platform.variant = get_string(*p, "variant");
  }
  if (auto a = j.find("annotations"); a != j.end() && a->is_object()) {
    for (const auto& [k, v] : a->items())
      if (v.is_string()) d.annotations[k] = v.get<std::string>();
  }
  return d;
}

}  // namespace

std::string Platform::str() const {
  std::string s = os + "/" + architecture;
  if (!variant.empty()) s += "/" + variant;
  return s;
}

Result<Platform> parse_platform(std::string_view s) {
  auto parts = split(s, '/');
  if (parts.size() < 2 || parts.size() > 3 || parts[0].empty() || parts[1].empty())
    return make_error(ErrorKind::kUsage,
                      "invalid platform \"" + std::string(s) + "\" (expected os/arch[/variant], e.g. linux/arm64)");
  Platform p;
  p.os = parts[0];
  p.architecture = normalize_arch(parts[1]);
  if (parts.size() == 3) p.variant = parts[2];
  return p;
}

bool platform_matches(const Platform& want, const Platform& have) {
  if (want.os != have.os || want.architecture != normalize_arch(have.architecture)) return false;
  if (want.variant.empty() || have.variant.empty()) return true;
  return want.variant == have.variant;
}

Result<Manifest> parse_manifest(std::string_view text, std::string_view content_type) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return corrupt("manifest is not a JSON object");
  Manifest m;
  m.media_type = get_string(j, "mediaType");
  if (m.media_type.empty()) {
    // Content-Type may carry parameters ("...+json; charset=utf-8").
    m.media_type = std::string(content_type.substr(0, content_type.find(';')));
  }
  auto schema = j.find("schemaVersion");
  if (schema != j.end() && schema->is_number_integer() && schema->get<int>() == 1)
    return corrupt("schema 1 manifests (" + m.media_type + ") are not supported; the image is too old to pull");
  if (m.media_type == media::kOciIndex || m.media_type == media::kDockerList) {
    m.is_index = true;
  } else if (m.media_type == media::kOciManifest || m.media_type == media::kDockerManifest) {
    m.is_index = false;
  } else if (j.contains("manifests")) {
    m.is_index = true;
  } else if (j.contains("config") && j.contains("layers")) {
    m.is_index = false;
  } else {
    return corrupt("unsupported manifest type \"" + m.media_type + "\"");
  }
  if (m.is_index) {
    auto list = j.find("manifests");
    if (list == j.end() || !list->is_array()) return corrupt("index without a manifests list");
    for (const auto& e : *list) {
      SPORE_ASSIGN_OR_RETURN(Descriptor d, parse_descriptor(e, "index"));
      m.manifests.push_back(std::move(d));
    }
    return m;
  }
  auto config = j.find("config");
  if (config == j.end()) return corrupt("manifest without a config");
  SPORE_ASSIGN_OR_RETURN(m.config, parse_descriptor(*config, "manifest config"));
  auto layers = j.find("layers");
  if (layers == j.end() || !layers->is_array()) return corrupt("manifest without a layers list");
  for (const auto& e : *layers) {
    SPORE_ASSIGN_OR_RETURN(Descriptor d, parse_descriptor(e, "manifest layer"));
    m.layers.push_back(std::move(d));
  }
  return m;
}

Result<Descriptor> select_platform(const Manifest& index, const Platform& want, const std::string& what) {
  const Descriptor* best = nullptr;
  std::vector<std::string> available;
  for (const auto& d : index.manifests) {
    if (!d.has_platform || d.platform.os == "unknown") continue;
    available.push_back(d.platform.str());
    if (!platform_matches(want, d.platform)) continue;
    // An exact variant beats "any variant" (arm64 entries rarely differ, arm ones do).
    if (!best || (d.platform.variant == want.variant && best->platform.variant != want.variant)) best = &d;
  }
  if (best) return *best;
  // An index of one image that does not say its platform (hand-made
  // layouts): the config's platform is checked later anyway.
  if (available.empty() && index.manifests.size() == 1) return index.manifests[0];
  std::string list;
  for (const auto& a : available) list += (list.empty() ? "" : ", ") + a;
  if (list.empty()) list = "none with a platform";
  return make_error(ErrorKind::kNotFound, what + " has no image for " + want.str() + " (available: " + list +
                                              "); choose one with --platform");
}

Result<ImageConfig> parse_image_config(std::string_view text, std::vector<std::string>* diff_ids) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return corrupt("image config is not a JSON object");
  ImageConfig c;
  c.os = get_string(j, "os");
  c.architecture = normalize_arch(get_string(j, "architecture"));
  c.variant = get_string(j, "variant");
  // Docker writes "config"; some very old images only "container_config".
  auto cfg = j.find("config");
  if (cfg != j.end() && cfg->is_object()) {
    SPORE_TRY(get_strings(*cfg, "Entrypoint", &c.entrypoint));
    SPORE_TRY(get_strings(*cfg, "Cmd", &c.cmd));
    SPORE_TRY(get_strings(*cfg, "Env", &c.env));
    c.workdir = get_string(*cfg, "WorkingDir");
    c.user = get_string(*cfg, "User");
  }
  if (diff_ids) {
    diff_ids->clear();
    auto rootfs = j.find("rootfs");
    if (rootfs != j.end() && rootfs->is_object()) {
      auto ids = rootfs->find("diff_ids");
      if (ids != rootfs->end() && ids->is_array())
        for (const auto& v : *ids)
          diff_ids->push_back(v.is_string() ? v.get<std::string>() : std::string());  // keeps the positions
    }
  }
  return c;
}

std::string layer_diff_id(const std::vector<std::string>& diff_ids, size_t i, const std::string& blob_digest) {
  if (i >= diff_ids.size() || diff_ids[i] == blob_digest) return "";
  // Only SHA-256 is checked; it is what every builder writes. Anything
  // else is left to the blob digest, which was verified when fetched.
  if (diff_ids[i].rfind("sha256:", 0) != 0) return "";
  return diff_ids[i];
}

Status check_config_platform(const ImageConfig& config, const Platform& want, const std::string& what) {
  if (config.os.empty() || config.architecture.empty()) return ok_status();
  Platform have{config.os, config.architecture, config.variant};
  if (platform_matches(want, have)) return ok_status();
  return make_error(ErrorKind::kNotFound,
                    what + " is an image for " + have.str() + ", not " + want.str() + "; choose one with --platform");
}

Status check_layer_media_type(const Descriptor& layer) {
  const std::string& t = layer.media_type;
  // Empty: OCI layouts written by hand; the format is sniffed anyway.
  if (t.empty()) return ok_status();
  static const char* const kKnown[] = {
      "application/vnd.oci.image.layer.v1.tar",
      "application/vnd.oci.image.layer.v1.tar+gzip",
      "application/vnd.oci.image.layer.v1.tar+zstd",
      "application/vnd.docker.image.rootfs.diff.tar",
      "application/vnd.docker.image.rootfs.diff.tar.gzip",
      "application/vnd.docker.image.rootfs.diff.tar.zstd",
      // Non-distributable layers are ordinary tars that registries may decline to serve.
      "application/vnd.oci.image.layer.nondistributable.v1.tar",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
  };
  for (const char* k : kKnown)
    if (t == k) return ok_status();
  if (t == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")
    return make_error(ErrorKind::kUnavailable,
                      "layer " + layer.digest + " is a foreign (Windows) layer; only Linux images can be packed");
  return make_error(ErrorKind::kCorrupt, "layer " + layer.digest + " has unsupported media type \"" + t + "\"");
}

std::string digest_hex_part(const std::string& digest) { return digest.substr(digest.find(':') + 1); }

Status verify_file(const std::string& path, const std::string& digest, uint64_t size) {
  if (!is_sha256_digest(digest)) return corrupt("unsupported digest \"" + digest + "\"");
  if (size) {
    SPORE_ASSIGN_OR_RETURN(UniqueFd fd, open_file(path, O_RDONLY));
    SPORE_ASSIGN_OR_RETURN(uint64_t have, file_size(fd.get()));
    if (have != size)
      return corrupt(path + ": " + std::to_string(have) + " bytes where " + digest + " has " + std::to_string(size));
  }
  SPORE_ASSIGN_OR_RETURN(Digest d, sha256_file(path));
  if ("sha256:" + digest_hex(d) != digest)
    return corrupt(path + ": content does not match its digest " + digest + " (got sha256:" + digest_hex(d) + ")");
  return ok_status();
}

std::string sha256_digest_of(std::string_view bytes) { return "sha256:" + digest_hex(sha256(bytes)); }

std::string human_bytes(uint64_t n) {
  if (n < 1024) return std::to_string(n) + " B";
  if (n < (1u << 20)) return strfmt("%.1f KiB", static_cast<double>(n) / 1024);
  if (n < (1u << 30)) return strfmt("%.1f MiB", static_cast<double>(n) / (1 << 20));
  return strfmt("%.2f GiB", static_cast<double>(n) / (1u << 30));
}

}  // namespace spore::pack
