// The benchmark driver's plumbing: clocks, child processes, and the report
// of raw samples and summary tables. Shared by every spore-bench mode.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "bench/stats.h"

namespace spore::bench {

// ------------------------------------------------------------------ clocks

int64_t mono_ns();
double ms_between(int64_t from_ns, int64_t to_ns);
// Milliseconds left until deadline_ns, for poll(); at least 0.
int remaining_ms(int64_t deadline_ns);
// The directory of this executable.
std::string exe_dir();

// "spore-bench: ..." on stderr: progress for the person watching.
void progress(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// ------------------------------------------------------------------ report

// "..." with C escapes for anything but printable ASCII, so a raw line stays one line.
std::string quote(const std::string& s);
std::string fmt_ms(double v);

// A line of a summary table: the figure "kind.field" (no row without
// samples), or, with an empty id, a heading printed only above rows that
// have samples. fmt (printf, one double) overrides fmt_ms, e.g. for counts.
struct TableRow {
  std::string id, label;
  const char* fmt = nullptr;
};
// num / den, both medians; paired adds the median of the per-round ratios.
struct TableRatio {
  std::string label, num, den;
  bool paired = false;
};
enum class Spread { kP90, kP95 };  // the table's spread columns: p90, or p90 and p95

class Report {
 public:
  explicit Report(FILE* raw) : raw_(raw) {}

  // One raw line; round 0 is a warm-up round: printed, not summarised.
  // output: what the guest command printed (kept short, for checking it and
  // for commands like `cat /proc/uptime` whose output is itself a figure).
  void record(const std::string& kind, uint32_t round, const std::vector<std::pair<std::string, double>>& fields,
              const std::string& output = {});
  void failure(const std::string& kind, uint32_t round, const std::string& why);
  // A "# ..." line in the raw file: context that is not a sample.
  void note(const std::string& text);
  int failures() const { return failures_; }

  const Series* find(const std::string& id) const;
  std::optional<Summary> summary(const std::string& id) const;
  std::optional<double> median(const std::string& id) const;

  // Prints the rows that have samples, then the ratios whose both sides do.
  void print_table(FILE* out, const char* header, const std::vector<TableRow>& rows,
                   const std::vector<TableRatio>& ratios, Spread spread = Spread::kP90) const;

 private:
  FILE* raw_;
  std::map<std::string, Series> series_;
  int failures_ = 0;
};

// -------------------------------------------------------- child processes

// A spawned process, killed and reaped on destruction unless already reaped.
// Its pidfd turns readable when it exits, so it can sit in a poll set.
class Child {
 public:
  // stdio: the fds the child gets as 0, 1 and 2. env: "KEY=VALUE" entries
  // added to (or replacing those of) this process's environment.
  static Result<Child> spawn(const std::vector<std::string>& argv, int in, int out, int err,
                             const std::vector<std::string>& env = {});

  Child() = default;
  Child(Child&& o) noexcept
      : pid_(std::exchange(o.pid_, -1)), pidfd_(std::move(o.pidfd_)), usage_(o.usage_) {}
  Child& operator=(Child&&) = delete;
  ~Child() { kill_and_reap(); }

  pid_t pid() const { return pid_; }
  int pidfd() const { return pidfd_.get(); }
  // Resources the child used (user and system time, page faults): valid once reaped.
  const struct rusage& usage() const { return usage_; }

  // Exit status (128+signal for a signal death), or an error after timeout_ms.
  Result<int> wait(int timeout_ms);
  void signal(int sig) const;
  void kill_and_reap();

 private:
  Result<int> reap();

  pid_t pid_ = -1;
  UniqueFd pidfd_;
  struct rusage usage_ {};
};

struct Pipe {
  UniqueFd r, w;
  static Result<Pipe> create();
};

// An in-memory file for a child's output: it never blocks the writer (a pipe
// nobody drains would), and it can be read back after the fact.
Result<UniqueFd> memfd(const char* name);
std::string read_back(int fd, size_t max_bytes = 64 << 10);
std::string last_lines(const std::string& s, size_t n);

// A finished program: what it printed, when (CLOCK_MONOTONIC, from the
// fork), how it ended.
struct Timed {
  int64_t t_fork = 0, t_first = 0, t_exit = 0;  // t_first: the first byte on stdout (0: none)
  int status = -1;                              // 128+n for a signal death
  std::string out, err;
  struct rusage usage {};

  double exit_ms() const { return ms_between(t_fork, t_exit); }
  double first_ms() const { return ms_between(t_fork, t_first); }
  double cpu_ms() const;
};

// Runs argv (stdin /dev/null, stdout and stderr on pipes, env added as in
// Child::spawn) from the fork to reaped. Only a timeout is an error here.
Result<Timed> run_timed(const std::vector<std::string>& argv, const std::vector<std::string>& env, int timeout_s);

// The directory a mode works in: `work` (created; it must be empty), or a
// new "<prefix>.XXXXXX" in $TMPDIR (default /tmp). Returns an absolute path.
Result<std::string> make_work_dir(const std::string& work, const char* prefix);

// A step of a run: timed, its progress printed, a failure recorded in the
// report without stopping the rest. Returns whether it worked.
bool step(const std::string& kind, uint32_t round, Report& report, const std::function<Status()>& fn);

}  // namespace spore::bench
