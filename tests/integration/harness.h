// Helpers for integration tests: run the project's real binaries as a user
// would (in the testbed they are on PATH) and capture what they print.
#pragma once

#include <string>
#include <vector>

namespace spore::itest {

struct RunResult {
  int status = -1;  // exit code, or 128+signal
  std::string out;
  std::string err;
  bool timed_out = false;
};

struct RunOptions {
  std::string stdin_data;
  bool stdin_open = false;  // give the child a pipe (with stdin_data) instead of /dev/null
  int timeout_s = 600;
  std::vector<std::string> env;  // extra KEY=VALUE
  // Send kill_signal to the process once its stdout contains this text.
  std::string kill_after_output;
  int kill_signal = 0;
};

RunResult run(const std::vector<std::string>& argv, const RunOptions& opts = {});

// `spore-vm run [extra...] -- cmd...`
RunResult vm_run(const std::vector<std::string>& cmd, const std::vector<std::string>& extra = {},
                 const RunOptions& opts = {});

std::string sha256_hex(const std::string& data);
std::string sha256_file(const std::string& path);
// A fresh directory under $TMPDIR, removed by the OS with the testbed.
std::string temp_dir();
// Path of the project's default assets (kernel, initramfs, demo rootfs).
std::string assets_dir();

}  // namespace spore::itest
