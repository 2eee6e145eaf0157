#include "bench/harness.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdarg>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "base/strings.h"

extern char** environ;

namespace spore::bench {

int64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000ll + ts.tv_nsec;
}

double ms_between(int64_t from_ns, int64_t to_ns) { return static_cast<double>(to_ns - from_ns) / 1e6; }

int remaining_ms(int64_t deadline_ns) {
  int64_t left = (deadline_ns - mono_ns()) / 1'000'000;
  return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : static_cast<int>(left);
}

std::string exe_dir() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string exe(buf, static_cast<size_t>(n));
  return exe.substr(0, exe.rfind('/'));
}

void progress(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fputs("spore-bench: ", stderr);
  std::vfprintf(stderr, fmt, ap);
  std::fputc('\n', stderr);
  va_end(ap);
}

// ---------------------------------------------------------------- reporting

std::string quote(const std::string& s) {
  std::string q = "\"";
  for (unsigned char c : s) {
    if (c == '\n') q += "\\n";
    else if (c == '"' || c == '\\') q += std::string("\\") + static_cast<char>(c);
    else if (c < 0x20 || c >= 0x7f) q += strfmt("\\x%02x", c);
    else q += static_cast<char>(c);
  }
  return q + "\"";
}

std::string fmt_ms(double v) { return v < 100 ? strfmt("%.2f", v) : strfmt("%.0f", v); }

void Report::record(const std::string& kind, uint32_t round, const std::vector<std::pair<std::string, double>>& fields,
                    const std::string& output) {
  std::string line = kind + strfmt(" round=%u", round);
  for (const auto& [name, value] : fields) {
    line += strfmt(" %s=%.3f", name.c_str(), value);
    if (round > 0) series_[kind + "." + name].add(round, value);
  }
  if (!output.empty()) line += " output=" + quote(output.substr(0, 80));
  std::fprintf(raw_, "%s\n", line.c_str());
  std::fflush(raw_);
}

void Report::failure(const std::string& kind, uint32_t round, const std::string& why) {
  std::fprintf(raw_, "%s round=%u failed=%s\n", kind.c_str(), round, quote(why).c_str());
  std::fflush(raw_);
  failures_++;
}

void Report::note(const std::string& text) {
  std::fprintf(raw_, "# %s\n", text.c_str());
  std::fflush(raw_);
}

const Series* Report::find(const std::string& id) const {
  auto it = series_.find(id);
  return it == series_.end() ? nullptr : &it->second;
}

std::optional<Summary> Report::summary(const std::string& id) const {
  const Series* s = find(id);
  if (!s) return std::nullopt;
  return s->summary();
}

std::optional<double> Report::median(const std::string& id) const {
  auto sum = summary(id);
  if (!sum) return std::nullopt;
  return sum->median;
}

void Report::print_table(FILE* out, const char* header, const std::vector<TableRow>& rows,
                         const std::vector<TableRatio>& ratios, Spread spread) const {
  const bool p95 = spread == Spread::kP95;
  auto fmt = [](const TableRow& row, double v) { return row.fmt ? strfmt(row.fmt, v) : fmt_ms(v); };
  // The label column fits the longest label printed (at least 42 wide).
  int width = 42;
  for (const auto& row : rows)
    if (!row.id.empty() && summary(row.id)) width = std::max(width, static_cast<int>(row.label.size()));
  bool any = false;
  const TableRow* heading = nullptr;
  for (const auto& row : rows) {
    if (row.id.empty()) {
      heading = &row;
      continue;
    }
    auto sum = summary(row.id);
    if (!sum) continue;
    if (!any) {
      std::fprintf(out, "%-*s %4s %9s %9s", width, header, "n", "median", "p90");
      if (p95) std::fprintf(out, " %9s", "p95");
      std::fprintf(out, " %9s\n", "min");
    }
    any = true;
    if (heading) {
      std::fprintf(out, "%s\n", heading->label.c_str());
      heading = nullptr;
    }
    std::fprintf(out, "%-*s %4zu %9s %9s", width, row.label.c_str(), sum->n, fmt(row, sum->median).c_str(),
                 fmt(row, sum->p90).c_str());
    if (p95) std::fprintf(out, " %9s", fmt(row, sum->p95).c_str());
    std::fprintf(out, " %9s\n", fmt(row, sum->min).c_str());
  }
  if (!any) std::fprintf(out, "no samples\n");

  int ratio_width = 30;
  for (const auto& r : ratios) ratio_width = std::max(ratio_width, static_cast<int>(r.label.size()));
  bool header_done = false;
  for (const auto& r : ratios) {
    auto num = median(r.num), den = median(r.den);
    if (!num || !den || *den <= 0) continue;
    if (!header_done) {
      std::fprintf(out, "\nratios of medians (paired: median of the per-round ratios)\n");
      header_done = true;
    }
    std::string line = strfmt("  %-*s %9.3f", ratio_width, r.label.c_str(), *num / *den);
    if (r.paired) {
      if (auto p = find(r.num)->paired_ratio(*find(r.den))) line += strfmt("   paired %.3f", *p);
    }
    std::fprintf(out, "%s\n", line.c_str());
  }
}

// ---------------------------------------------------------- child processes

Result<Child> Child::spawn(const std::vector<std::string>& argv, int in, int out, int err,
                           const std::vector<std::string>& env) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (char** e = environ; *e; e++) {
    std::string_view entry(*e);
    bool replaced = false;
    for (const auto& add : env) {
      size_t eq = add.find('=');
      if (eq != std::string::npos && entry.size() > eq && entry.substr(0, eq + 1) == std::string_view(add).substr(0, eq + 1))
        replaced = true;
    }
    if (!replaced) envp.push_back(*e);
  }
  for (const auto& add : env) envp.push_back(const_cast<char*>(add.c_str()));
  envp.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in, 0);
  posix_spawn_file_actions_adddup2(&fa, out, 1);
  posix_spawn_file_actions_adddup2(&fa, err, 2);
  Child c;
  int rc = ::posix_spawnp(&c.pid_, args[0], &fa, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return errno_error("cannot run " + argv[0], rc);
  c.pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, c.pid_, 0)));
  if (!c.pidfd_) return errno_error("pidfd_open");
  return c;
}

Result<int> Child::wait(int timeout_ms) {
  pollfd p{pidfd_.get(), POLLIN, 0};
  int r;
  do {
    r = ::poll(&p, 1, timeout_ms);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return make_error(ErrorKind::kTimeout, "timed out");
  return reap();
}

void Child::signal(int sig) const {
  if (pid_ > 0) ::kill(pid_, sig);
}

void Child::kill_and_reap() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  (void)reap();
}

Result<int> Child::reap() {
  int st = 0;
  pid_t r;
  do {
    r = ::wait4(pid_, &st, 0, &usage_);
  } while (r < 0 && errno == EINTR);
  pid_ = -1;
  if (r < 0) return errno_error("waitpid");
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

Result<Pipe> Pipe::create() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) < 0) return errno_error("pipe");
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

Result<UniqueFd> memfd(const char* name) {
  UniqueFd fd(::memfd_create(name, MFD_CLOEXEC));
  if (!fd) return errno_error("memfd_create");
  return fd;
}

std::string read_back(int fd, size_t max_bytes) {
  auto size = file_size(fd);
  if (!size.ok()) return {};
  uint64_t from = *size > max_bytes ? *size - max_bytes : 0;
  std::string s(*size - from, '\0');
  if (!s.empty() && !pread_exact(fd, s.data(), s.size(), from).ok()) return {};
  return s;
}

std::string last_lines(const std::string& s, size_t n) {
  size_t pos = s.size();
  while (n-- > 0 && pos > 0) {
    size_t nl = s.rfind('\n', pos - 1);
    if (nl == std::string::npos) return s;
    if (nl + 1 == s.size()) n++;  // a trailing newline does not end a line of its own
    pos = nl;
  }
  return s.substr(pos == s.size() ? pos : pos + 1);
}

double Timed::cpu_ms() const {
  return (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1e3 +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e3;
}

Result<Timed> run_timed(const std::vector<std::string>& argv, const std::vector<std::string>& env, int timeout_s) {
  SPORE_ASSIGN_OR_RETURN(UniqueFd devnull, open_file("/dev/null", O_RDONLY));
  SPORE_ASSIGN_OR_RETURN(Pipe out, Pipe::create());
  SPORE_ASSIGN_OR_RETURN(Pipe err, Pipe::create());
  Timed t;
  t.t_fork = mono_ns();
  const int64_t deadline = t.t_fork + timeout_s * 1'000'000'000ll;
  SPORE_ASSIGN_OR_RETURN(Child child, Child::spawn(argv, devnull.get(), out.w.get(), err.w.get(), env));
  out.w.reset();
  err.w.reset();
  char buf[4096];
  while (out.r || err.r) {
    pollfd fds[2] = {{out.r ? out.r.get() : -1, POLLIN, 0}, {err.r ? err.r.get() : -1, POLLIN, 0}};
    int r = ::poll(fds, 2, remaining_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno_error("poll");
    if (r == 0) return make_error(ErrorKind::kTimeout, strfmt("%s did not finish within %d s", argv[0].c_str(), timeout_s));
    for (int i = 0; i < 2; i++) {
      if (!fds[i].revents) continue;
      UniqueFd& fd = i == 0 ? out.r : err.r;
      ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        fd.reset();
        continue;
      }
      if (i == 0 && !t.t_first) t.t_first = mono_ns();
      (i == 0 ? t.out : t.err).append(buf, static_cast<size_t>(n));
    }
  }
  SPORE_ASSIGN_OR_RETURN(t.status, child.wait(remaining_ms(deadline)));
  t.t_exit = mono_ns();
  t.usage = child.usage();
  return t;
}

bool step(const std::string& kind, uint32_t round, Report& report, const std::function<Status()>& fn) {
  int64_t t0 = mono_ns();
  Status s = fn();
  if (!s.ok()) {
    progress("round %u: %s failed: %s", round, kind.c_str(), s.error().message.c_str());
    report.failure(kind, round, s.error().message);
    return false;
  }
  progress("round %u%s: %s %.2f s", round, round ? "" : " (warm-up)", kind.c_str(), ms_between(t0, mono_ns()) / 1000);
  return true;
}

Result<std::string> make_work_dir(const std::string& work, const char* prefix) {
  if (!work.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(work, ec);
    if (ec) return make_error(ErrorKind::kUnavailable, "cannot create " + work + ": " + ec.message());
    if (!std::filesystem::is_empty(work, ec)) return make_error(ErrorKind::kUsage, work + " is not empty");
    return std::filesystem::absolute(work).string();
  }
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/" + prefix + ".XXXXXX";
  if (!::mkdtemp(tmpl.data())) return errno_error("mkdtemp " + tmpl);
  return tmpl;
}

}  // namespace spore::bench
