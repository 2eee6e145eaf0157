// A bundle's CONFIG section (bundle/app_config.cc): the image config and
// machine defaults the stub runs with. Checked: what decodes encodes back
// to exactly the input, has machine defaults in range, and resolves a
// command the docker way.
#include "bundle/app_config.h"
#include "fuzz/support/fuzz.h"
#include "fuzz/support/samples.h"

using namespace spore;
using namespace spore::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto c = bundle::decode_app_config(in);
  if (!c.ok()) return 0;
  check(c->cpus >= 1 && c->cpus <= 1024 && c->mem_mib >= 1 && c->mem_mib <= (1u << 20), "machine defaults out of range");
  check(bundle::encode_app_config(*c) == in, "app config does not encode back to its bytes");
  auto argv = bundle::resolve_command(*c, {});
  check(argv.size() == c->entrypoint.size() + c->cmd.size(), "resolve_command without args");
  argv = bundle::resolve_command(*c, {"x"});
  check(argv.size() == c->entrypoint.size() + 1 && argv.back() == "x", "resolve_command with args");
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  seeds.add("python", bundle::encode_app_config(sample_app_config()));
  seeds.add("empty", bundle::encode_app_config(bundle::AppConfig{}));
}
