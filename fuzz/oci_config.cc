// Image configs (packer/source/manifest.cc): the runtime config (docker's
// Entrypoint/Cmd/Env/WorkingDir/User rules), the platform, the layers'
// diff_ids, then the platform check every source makes. Input: the JSON;
// its last line, when it starts with "#", is a --platform value instead.
//
// Checked: diff_ids keep their positions (one per array element);
// architectures come out normalised; a platform that parse_platform
// accepts prints back to what parses the same.
#include "fuzz/support/fuzz.h"
#include "fuzz/support/oci_samples.h"
#include "packer/source/manifest.h"

using namespace spore;
using namespace spore::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  std::string platform = "linux/arm64";
  if (size_t nl = text.rfind('\n'); nl != std::string::npos && nl + 1 < text.size() && text[nl + 1] == '#') {
    platform = text.substr(nl + 2);
    text.resize(nl);
  }
  auto want = pack::parse_platform(platform);
  if (want.ok()) {
    auto again = pack::parse_platform(want->str());
    check(again.ok() && again->str() == want->str(), "a platform does not print back", platform);
  } else {
    want = pack::parse_platform("linux/arm64");
  }
  std::vector<std::string> diff_ids = {"stale"};
  auto c = pack::parse_image_config(text, &diff_ids);
  if (!c.ok()) return 0;
  check(c->architecture != "aarch64" && c->architecture != "x86_64", "an architecture was not normalised");
  (void)pack::check_config_platform(*c, *want, "fuzz");
  for (size_t i = 0; i < diff_ids.size() + 1; i++) (void)pack::layer_diff_id(diff_ids, i, "sha256:x");
  auto c2 = pack::parse_image_config(text, nullptr);
  check(c2.ok() && c2->entrypoint == c->entrypoint && c2->cmd == c->cmd && c2->env == c->env,
        "parsing without diff_ids gives another config");
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  seeds.add("python", sample_image_config());
  seeds.add("string_cmd", "{\"os\":\"linux\",\"architecture\":\"aarch64\",\"config\":{\"Cmd\":\"echo hi\","
                          "\"Entrypoint\":null,\"Env\":[]}}\n#linux/arm64/v8");
  seeds.add("container_config_only", "{\"container_config\":{\"Cmd\":[\"sh\"]},\"rootfs\":{\"diff_ids\":[]}}\n#linux/amd64");
  seeds.add("bad_types", "{\"config\":{\"Cmd\":[1,2],\"Env\":{}}}");
}
