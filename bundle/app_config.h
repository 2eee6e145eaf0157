// The app a bundle describes: the image config (docker semantics), the
// machine defaults, and how to boot and warm it. Stored in the bundle's
// CONFIG section (doc/bundle-format.md).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace spore::bundle {

struct AppConfig {
  std::string name;      // default app name (the stub's file name at pack time)
  std::string image;     // the reference that was packed
  std::string image_digest;
  std::string platform = "linux/arm64";
  std::vector<std::string> entrypoint, cmd, env;  // env: KEY=VALUE
  std::string workdir, user;
  uint32_t cpus = 1;
  uint64_t mem_mib = 256;
  std::vector<std::string> warm;  // run once before sealing (argv), empty: none
  std::string cmdline;            // guest kernel command line for cold boots
  std::string packer_version;
};

std::string encode_app_config(const AppConfig& c);
Result<AppConfig> decode_app_config(std::string_view data);

// docker's rules for what to run: user args replace Cmd; Entrypoint stays in
// front. Empty when the image defines nothing and no args were given.
std::vector<std::string> resolve_command(const AppConfig& c, const std::vector<std::string>& user_args);

}  // namespace spore::bundle
