// Image manifests, OCI and Docker v2 (packer/source/manifest.cc): parsed
// with the media type a registry or an index gave for them, then each
// layer's media type checked and its diff_id looked up, as the image
// sources do. Input: a media type selector byte, then the JSON.
//
// Checked: the config and every layer have a valid sha256 digest; a layer
// either is a type we can apply or is refused; layer_diff_id only ever
// returns "" or a sha256 diff_id.
#include "fuzz/support/fuzz.h"
#include "fuzz/support/oci_samples.h"
#include "packer/source/manifest.h"
#include "packer/source/reference.h"

using namespace spore;
using namespace spore::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  static const char* const kTypes[] = {"", pack::media::kOciManifest, pack::media::kDockerManifest,
                                       "application/vnd.docker.distribution.manifest.v2+json; charset=utf-8",
                                       pack::media::kOciIndex, "application/json"};
  const char* ct = kTypes[in.u8() % 6];
  std::string text = in.rest();
  auto m = pack::parse_manifest(text, ct);
  if (!m.ok() || m->is_index) return 0;
  check(pack::is_sha256_digest(m->config.digest), "a config descriptor with a bad digest", m->config.digest);
  std::vector<std::string> diff_ids = {sample_digest('1'), "", "md5:xyz", sample_digest('3')};
  for (size_t i = 0; i < m->layers.size(); i++) {
    const auto& l = m->layers[i];
    check(pack::is_sha256_digest(l.digest), "a layer with a bad digest", l.digest);
    (void)pack::check_layer_media_type(l);
    std::string id = pack::layer_diff_id(diff_ids, i, l.digest);
    check(id.empty() || (id.rfind("sha256:", 0) == 0 && id != l.digest), "layer_diff_id returned something odd", id);
    (void)pack::digest_hex_part(l.digest);
  }
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  seeds.add("oci", std::string(1, '\1') + sample_manifest_json(false));
  seeds.add("docker", std::string(1, '\2') + sample_manifest_json(true));
  seeds.add("by_shape", std::string(1, '\0') + "{\"config\":{\"digest\":\"" + sample_digest('c') +
                            "\",\"size\":1},\"layers\":[]}");
  seeds.add("foreign_layer",
            std::string(1, '\2') + "{\"mediaType\":\"" + pack::media::kDockerManifest + "\",\"config\":{\"digest\":\"" +
                sample_digest('c') + "\",\"size\":1},\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs."
                "foreign.diff.tar.gzip\",\"digest\":\"" + sample_digest('d') + "\",\"size\":2}]}");
}
