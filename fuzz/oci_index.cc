// Image indexes and manifest lists (packer/source/manifest.cc): parsed as
// a registry's answer with a Content-Type, then searched for a platform
// the way every image source does. Input: a Content-Type selector byte,
// then the JSON.
//
// Checked: every descriptor parsed has a valid sha256 digest; the entry
// select_platform picks is one of the index's entries, for the platform
// asked for (or the index's only entry, when none says its platform).
#include "fuzz/support/fuzz.h"
#include "fuzz/support/oci_samples.h"
#include "packer/source/manifest.h"
#include "packer/source/reference.h"

using namespace spore;
using namespace spore::fuzz;

namespace {

const char* content_type(uint8_t sel) {
  static const char* const kTypes[] = {"", pack::media::kOciIndex, pack::media::kDockerList,
                                       "application/vnd.oci.image.index.v1+json; charset=utf-8",
                                       pack::media::kOciManifest, "text/plain"};
  return kTypes[sel % 6];
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  const char* ct = content_type(in.u8());
  std::string text = in.rest();
  auto m = pack::parse_manifest(text, ct);
  if (!m.ok()) return 0;
  for (const auto& d : m->manifests) check(pack::is_sha256_digest(d.digest), "an index entry with a bad digest", d.digest);
  if (!m->is_index) return 0;
  for (const char* p : {"linux/arm64", "linux/amd64", "linux/arm/v7", "linux/arm64/v8"}) {
    auto want = pack::parse_platform(p);
    if (!want.ok()) fail("parse_platform", p);
    auto d = pack::select_platform(*m, *want, "fuzz");
    if (!d.ok()) continue;
    bool from_index = false;
    for (const auto& e : m->manifests) from_index |= e.digest == d->digest;
    check(from_index, "select_platform returned an entry the index does not have");
    if (d->has_platform && d->platform.os != "unknown")
      check(pack::platform_matches(*want, d->platform), "select_platform picked another platform", d->platform.str());
    else
      check(m->manifests.size() == 1, "select_platform picked an entry without a platform from several");
  }
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  seeds.add("oci_index", std::string(1, '\1') + sample_index(false));
  seeds.add("docker_list", std::string(1, '\2') + sample_index(true));
  seeds.add("no_media_type", std::string(1, '\0') + "{\"manifests\":[{\"digest\":\"" + sample_digest('f') +
                                 "\",\"size\":5}]}");
  seeds.add("schema1", std::string(1, '\0') + "{\"schemaVersion\":1,\"name\":\"x\"}");
}
