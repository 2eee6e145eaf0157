#include "bundle/app_config.h"

#include "base/codec.h"
#include "base/strings.h"

namespace spore::bundle {
namespace {
constexpr uint32_t kVersion = 1;
}

std::string encode_app_config(const AppConfig& c) {
  Encoder e;
  e.u32(kVersion);
  e.str(c.name);
  e.str(c.image);
  e.str(c.image_digest);
  e.str(c.platform);
  e.strs(c.entrypoint);
  e.strs(c.cmd);
  e.strs(c.env);
  e.str(c.workdir);
  e.str(c.user);
  e.u32(c.cpus);
  e.u64(c.mem_mib);
  e.strs(c.warm);
  e.str(c.cmdline);
  e.str(c.packer_version);
  return e.take();
}

Result<AppConfig> decode_app_config(std::string_view data) {
  Decoder d(data);
  uint32_t version = d.u32();
  if (d.ok() && version != kVersion)
    return make_error(ErrorKind::kCorrupt, strfmt("app config version %u is not supported", version));
  AppConfig c;
  c.name = d.str();
  c.image = d.str();
  c.image_digest = d.str();
  c.platform = d.str();
  c.entrypoint = d.strs();
  c.cmd = d.strs();
  c.env = d.strs();
  c.workdir = d.str();
  c.user = d.str();
  c.cpus = d.u32();
  c.mem_mib = d.u64();
  c.warm = d.strs();
  c.cmdline = d.str();
  c.packer_version = d.str();
  if (!d.done()) return make_error(ErrorKind::kCorrupt, "app config is malformed");
  if (c.cpus == 0 || c.cpus > 1024 || c.mem_mib == 0 || c.mem_mib > (1u << 20))
    return make_error(ErrorKind::kCorrupt, "app config has impossible machine defaults");
  return c;
}

std::vector<std::string> resolve_command(const AppConfig& c, const std::vector<std::string>& user_args) {
  std::vector<std::string> argv = c.entrypoint;
  const auto& tail = user_args.empty() ? c.cmd : user_args;
  argv.insert(argv.end(), tail.begin(), tail.end());
  return argv;
}

}  // namespace spore::bundle
