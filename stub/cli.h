// The stub's command line: `APP [opts] [--] [CMD...]`, `APP start|exec|stop|status`.
// Hand-parsed: the stub is on the hot path of every run and must stay small.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace spore::stub {

enum class Mode { kRun, kStart, kExec, kStop, kStatus, kHelp, kVersion, kSeal };

struct Options {
  Mode mode = Mode::kRun;
  std::vector<std::string> env;  // KEY=VALUE, or KEY to copy the caller's value
  std::string workdir, user, timeout;
  bool interactive = false, tty = false, json = false;
  std::optional<uint32_t> cpus;
  std::optional<uint64_t> mem_mib;
  std::string stop_timeout = "10s";
  std::vector<std::string> command;  // empty: the image's default
};

// args excludes argv[0]. Subcommands are recognised only as the first
// argument; `--` ends options (so `APP -- start` runs a command "start").
Result<Options> parse_args(const std::vector<std::string>& args);

std::string usage(const std::string& app);

}  // namespace spore::stub
