// Helpers for integration tests: run the project's real binaries as a user
// would (in the testbed they are on PATH) and capture what they print.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace spore::itest {

// A process's open fds and memory while it ran: sampled every 100 ms from
// when its stderr first contains RunOptions::watch_from until it exits.
struct Usage {
  bool sampled = false;
  long fds_at_start = 0, fds_max = 0;
  long rss_kib_at_start = 0, rss_kib_max = 0;    // VmRSS
  long host_kib_at_start = 0, host_kib_max = 0;  // VmRSS less the guest's RAM mapping
};

struct RunResult {
  int status = -1;  // exit code, or 128+signal
  std::string out;
  std::string err;
  bool timed_out = false;
  Usage usage;  // when RunOptions::watch_from was given
};

struct RunOptions {
  std::string stdin_data;
  bool stdin_open = false;  // give the child a pipe (with stdin_data) instead of /dev/null
  int timeout_s = 600;
  std::vector<std::string> env;  // applied in order: KEY=VALUE sets, a bare KEY unsets
  // Send kill_signal to the process once its stdout (or stderr) contains
  // this text, then after kill_delay_ms more; with neither text set,
  // kill_delay_ms after it started.
  std::string kill_after_output;
  std::string kill_after_stderr;
  int kill_delay_ms = 0;
  int kill_signal = 0;
  // Sample the process's fds and memory (RunResult::usage) once its stderr
  // contains this text. Its guest RAM is the mapping of guest_ram_mib MiB,
  // left out of Usage's host figures.
  std::string watch_from;
  uint64_t guest_ram_mib = 256;
  // A slow reader: at most this many bytes of stdout every 10 ms (0: as fast
  // as they come).
  size_t stdout_bytes_per_10ms = 0;
  // Called once with the process's pid just before kill_signal is sent: to
  // look at the process while it runs.
  std::function<void(pid_t)> on_output;
};

// What /proc/PID/task/TID/status says about a thread's confinement.
struct ThreadConfinement {
  int tid = 0;
  int seccomp = -1;       // 2: a seccomp filter
  int no_new_privs = -1;  // 1: set
  int filters = -1;       // Seccomp_filters: how many are stacked
};
std::vector<ThreadConfinement> thread_confinement(pid_t pid);

RunResult run(const std::vector<std::string>& argv, const RunOptions& opts = {});

// `spore-vm run [extra...] -- cmd...`
RunResult vm_run(const std::vector<std::string>& cmd, const std::vector<std::string>& extra = {},
                 const RunOptions& opts = {});

// A program run on a pseudo-terminal, as from an interactive shell: the pty
// is its controlling terminal and its process group is in the foreground.
class PtyRun {
 public:
  PtyRun(const std::vector<std::string>& argv, const std::vector<std::string>& env, unsigned short rows,
         unsigned short cols);
  ~PtyRun();
  PtyRun(const PtyRun&) = delete;
  PtyRun& operator=(const PtyRun&) = delete;

  // Reads from the terminal until its output contains text (true), or
  // timeout_s pass or the terminal closes (false).
  bool read_until(const std::string& text, int timeout_s);
  void write(const std::string& bytes);
  // Resizes the terminal (the kernel sends SIGWINCH to the foreground group).
  void resize(unsigned short rows, unsigned short cols);
  // Waits for the program (timeout: killed, -1); then reads what is left.
  int wait(int timeout_s);
  // Everything the program wrote to the terminal so far.
  const std::string& output() const { return out_; }
  // The terminal's modes before the program ran, and now.
  bool modes_restored() const;

 private:
  // Reads what the terminal has within wait_ms; false once it is closed.
  bool drain(int wait_ms);
  int master_ = -1, slave_ = -1;
  int pid_ = -1;
  std::string out_;
  struct Modes;
  Modes* before_ = nullptr;
};

std::string sha256_hex(const std::string& data);
std::string sha256_file(const std::string& path);
// A fresh directory under $TMPDIR, removed by the OS with the testbed.
std::string temp_dir();
// Path of the project's default assets (kernel, initramfs, demo rootfs).
std::string assets_dir();

}  // namespace spore::itest
