// spore-vm's subcommands.
#pragma once

#include <string>
#include <vector>

#include "vmm/cli/common.h"

namespace spore::cli {

struct RunOptions {
  std::string kernel, initrd, rootfs;
  bool no_rootfs = false, read_only = false;
  uint64_t mem_mib = 256;
  uint32_t cpus = 1;
  std::string boot_timeout = "120s", cmdline_extra;
  std::string capture_dir, store_dir;
  bool capture_signal = false;
  ExecOptions exec;
};
int cmd_run(const RunOptions& o);

struct ResumeCmdOptions {
  std::string dir, rootfs;
  ExecOptions exec;
};
int cmd_resume(const ResumeCmdOptions& o);

struct ForkOptions {
  std::string dir, out;
  uint32_t count = 1;
};
int cmd_fork(const ForkOptions& o);

struct FanoutOptions {
  std::vector<std::string> dirs;
  uint32_t parallel = 0;  // 0: all at once
  ExecOptions exec;
};
int cmd_fanout(const FanoutOptions& o, int argc_separator_hint);

struct InspectOptions {
  std::string dir;
  bool json = false;
};
int cmd_inspect(const InspectOptions& o);

}  // namespace spore::cli
