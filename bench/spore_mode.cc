#include "bench/spore_mode.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>

#include "base/strings.h"

namespace spore::bench {
namespace {

namespace fs = std::filesystem;

constexpr double kMiB = 1024.0 * 1024.0;

// The spores, the RAM cache and the QEMU snapshots of one run.
struct Work {
  std::string dir;
  std::string spore[2];  // the spore each size's resumes use (its first capture)
  std::string qemu_file; // the snapshot the restores use (the first save)
  std::string forks;     // the children of the first `spore-vm fork`
};

// "256 MiB", "2 GiB"
std::string size_label(uint64_t mib) {
  return mib % 1024 == 0 ? strfmt("%llu GiB", static_cast<unsigned long long>(mib / 1024))
                         : strfmt("%llu MiB", static_cast<unsigned long long>(mib));
}

// Kinds are per guest size: "_s" the small guest, "_l" the large one.
std::string sized(const char* kind, int size) { return std::string(kind) + (size == 0 ? "_s" : "_l"); }

struct DiskUsage {
  uint64_t allocated = 0, apparent = 0;
};

// What `du` and `du --apparent-size` say about a directory tree: every inode
// counted once (fork children hard-link their parent's files).
DiskUsage disk_usage(const std::string& path) {
  DiskUsage du;
  std::set<std::pair<dev_t, ino_t>> seen;
  auto add = [&](const std::string& p) {
    struct stat st;
    if (::lstat(p.c_str(), &st) < 0 || !seen.insert({st.st_dev, st.st_ino}).second) return;
    du.allocated += static_cast<uint64_t>(st.st_blocks) * 512;
    if (S_ISREG(st.st_mode)) du.apparent += static_cast<uint64_t>(st.st_size);
  };
  add(path);
  std::error_code ec;
  for (fs::recursive_directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) add(it->path().string());
  return du;
}

// "Key:   123 kB" lines (/proc/meminfo, /proc/PID/smaps_rollup) -> {Key: KiB}.
std::map<std::string, double> read_kib_table(const std::string& path) {
  std::map<std::string, double> t;
  auto text = read_file(path, 1 << 20);
  if (!text.ok()) return t;
  for (const auto& line : split(*text, '\n')) {
    size_t colon = line.find(':');
    if (colon == std::string::npos || line.find(" kB") == std::string::npos) continue;
    t[line.substr(0, colon)] = std::strtod(line.c_str() + colon + 1, nullptr);
  }
  return t;
}

std::vector<std::string> asset_args(const Options& o) {
  return {"--kernel", o.assets + "/Image", "--initrd", o.assets + "/initramfs.cpio", "--rootfs",
          o.assets + "/demo-rootfs.img"};
}

// ------------------------------------------------------------------ capture

// Cold-boots a guest of mem_mib and seals it into DIR as soon as its agent
// is ready (`spore-vm run --capture DIR`, no command): an idle guest.
Status capture_once(const Options& o, uint64_t mem_mib, const std::string& dir, const std::string& kind, uint32_t round,
                    Report& report) {
  std::vector<std::string> args{"run", "--mem", std::to_string(mem_mib), "--timings", "--capture", dir};
  for (auto& a : asset_args(o)) args.push_back(a);
  SPORE_ASSIGN_OR_RETURN(SporeVmRun run, run_spore_vm_args(o, args, false));
  auto t = parse_timings(run.err);
  for (const char* key : {"agent_ready_ms", "capture_pause_ms", "capture_state_ms", "capture_memory_ms", "capture_total_ms"})
    if (!t.count(key)) return make_error(ErrorKind::kProtocol, std::string("spore-vm --timings printed no ") + key);

  SPORE_ASSIGN_OR_RETURN(SporeVmRun inspect, run_spore_vm_args(o, {"inspect", dir, "--json"}, true));
  auto j = nlohmann::json::parse(inspect.out, nullptr, false);
  if (j.is_discarded() || !j.contains("memory"))
    return make_error(ErrorKind::kProtocol, "spore-vm inspect --json printed no manifest");
  const auto& m = j["memory"];
  const double ram = m.value("ram_size", 0.0), chunks = m.value("chunks", 0.0), stored = m.value("stored_bytes", 0.0);
  const DiskUsage du = disk_usage(dir);
  report.record(kind, round,
                {{"ready_ms", t["agent_ready_ms"]},
                 {"pause_ms", t["capture_pause_ms"]},
                 {"state_ms", t["capture_state_ms"]},
                 {"memory_ms", t["capture_memory_ms"]},
                 {"total_ms", t["capture_total_ms"]},
                 {"run_ms", ms_between(run.t_fork, run.t_exit)},
                 {"ram_mib", ram / kMiB},
                 {"chunks", chunks},
                 {"stored_mib", stored / kMiB},
                 {"du_mib", static_cast<double>(du.allocated) / kMiB},
                 {"apparent_mib", static_cast<double>(du.apparent) / kMiB}});
  return ok_status();
}

// ------------------------------------------------------------------- resume

// One `spore-vm resume DIR --timings -- CMD` with SPORE_LOG=info: from the
// fork to the first byte of output, and spore-vm's own breakdown. The first
// resume of a spore materialises its RAM file; later ones must not.
Status resume_once(const Options& o, const std::string& dir, const std::string& kind, uint32_t round, bool first,
                   Report& report) {
  std::vector<std::string> args{"resume", dir, "--timings", "--"};
  args.insert(args.end(), o.command.begin(), o.command.end());
  SPORE_ASSIGN_OR_RETURN(SporeVmRun run, run_spore_vm_args(o, args, true));
  auto t = parse_timings(run.err);
  for (const char* key : {"prepare_ms", "restore_ms", "started_ms", "first_output_ms"})
    if (!t.count(key) || t[key] < 0)
      return make_error(ErrorKind::kProtocol, std::string("spore-vm --timings printed no ") + key);
  const bool materialised = run.err.find("(materialised RAM)") != std::string::npos;
  if (materialised != first)
    return make_error(ErrorKind::kInternal, first ? "the first resume found the RAM file already in the cache"
                                                  : "a resume materialised the RAM file again (cache lost?)");

  const double first_out = ms_between(run.t_fork, run.t_first_stdout);
  const double offset = first_out - t["first_output_ms"];
  std::vector<std::pair<std::string, double>> fields = {
      {"first_output_ms", first_out},
      {"exit_ms", ms_between(run.t_fork, run.t_exit)},
      {"exec_offset_ms", offset},
      {"self_first_output_ms", t["first_output_ms"]},
      {"prepare_ms", t["prepare_ms"]},
      {"restore_ms", t["restore_ms"]},
      {"started_ms", t["started_ms"]},
      // Process start-up, option parsing, opening the spore, starting threads.
      {"startup_ms", t["started_ms"] - t["prepare_ms"] - t["restore_ms"]},
      {"started_to_output_ms", t["first_output_ms"] - t["started_ms"]}};
  // The exec session: connecting (when spore-vm logs it), the agent
  // starting the command, the command's first output reaching spore-vm.
  auto log = parse_exec_log(run.err);
  if (log.count("agent_started_ms")) {
    const double rest = t["first_output_ms"] - t["started_ms"] - log["agent_started_ms"];
    fields.push_back({"agent_started_ms", log["agent_started_ms"]});
    if (log.count("connect_ms")) {
      fields.push_back({"connect_ms", log["connect_ms"]});
      fields.push_back({"output_after_started_ms", rest - log["connect_ms"]});
    } else {
      fields.push_back({"connect_and_output_ms", rest});
    }
  }
  fields.push_back({"minflt", static_cast<double>(run.usage.ru_minflt)});
  fields.push_back({"cpu_ms", (run.usage.ru_utime.tv_sec + run.usage.ru_stime.tv_sec) * 1e3 +
                                  (run.usage.ru_utime.tv_usec + run.usage.ru_stime.tv_usec) / 1e3});
  report.record(kind, round, fields, run.out);
  return ok_status();
}

// ---------------------------------------------------------------- the peer

std::vector<std::string> qemu_with_monitor(const Options& o, const std::string& monitor) {
  auto argv = qemu_argv(o, o.small_mib);
  argv.insert(argv.end(), {"-monitor", "unix:" + monitor + ",server=on,wait=off"});
  return argv;
}

// "...\nkey: 123 ms\n..." -> 123
std::optional<double> hmp_number(const std::string& text, const std::string& key) {
  size_t at = text.find("\n" + key + ": ");
  if (at == std::string::npos) return std::nullopt;
  return std::strtod(text.c_str() + at + key.size() + 3, nullptr);
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n') c = ';';
  return s;
}

// The peer saves the same idle guest: QEMU boots it, and once the agent's
// HELLO arrives, `stop` and `migrate -d "exec:..."` into FILE (7.2 has no
// `migrate file:`), polling `info migrate` until it completes. The shell
// renames the file into place when `cat` is done with it.
Status qemu_save_once(const Options& o, const std::string& work, const std::string& file, uint32_t round,
                      Report& report) {
  const std::string monitor = work + "/qemu-monitor.sock";
  ::unlink(monitor.c_str());
  SPORE_ASSIGN_OR_RETURN(UniqueFd listener, vsock_listen(proto::kReadyPort));
  SPORE_ASSIGN_OR_RETURN(UniqueFd devnull, open_file("/dev/null", O_RDONLY));
  SPORE_ASSIGN_OR_RETURN(UniqueFd log, memfd("qemu-log"));

  const int64_t t0 = mono_ns();
  const int64_t deadline = t0 + o.timeout_s * 1'000'000'000ll;
  SPORE_ASSIGN_OR_RETURN(Child child,
                         Child::spawn(qemu_with_monitor(o, monitor), devnull.get(), log.get(), log.get()));
  auto with_log = [&](Error e) {
    child.kill_and_reap();
    std::string tail = last_lines(read_back(log.get()), 15);
    return std::move(e).wrap(tail.empty() ? "qemu save" : "qemu save (its output ends: " + tail + ")");
  };
  auto hello = wait_for_hello(listener.get(), child, deadline);
  if (!hello.ok()) return with_log(std::move(hello).error());
  const int64_t t_ready = mono_ns();

  auto hmp = Hmp::connect(monitor, child, deadline);
  if (!hmp.ok()) return with_log(std::move(hmp).error());
  // A save to a file should not be throttled (QEMU's default is 32 MiB/s).
  if (auto r = hmp->command("migrate_set_parameter max-bandwidth 100G", deadline); !r.ok() || !r->empty())
    return with_log(r.ok() ? make_error(ErrorKind::kGuest, "migrate_set_parameter: " + one_line(*r))
                           : std::move(r).error());
  const int64_t t_stop = mono_ns();
  if (auto r = hmp->command("stop", deadline); !r.ok()) return with_log(std::move(r).error());
  const int64_t t_stopped = mono_ns();
  const std::string part = file + ".part";
  auto r = hmp->command(strfmt("migrate -d \"exec:cat > %s && mv %s %s\"", part.c_str(), part.c_str(), file.c_str()),
                        deadline);
  if (!r.ok()) return with_log(std::move(r).error());
  if (!r->empty()) return with_log(make_error(ErrorKind::kGuest, "migrate: " + one_line(*r)));
  std::string info;
  for (;;) {
    auto i = hmp->command("info migrate", deadline);
    if (!i.ok()) return with_log(std::move(i).error());
    info = *i;
    if (info.find("Migration status: completed") != std::string::npos) break;
    if (info.find("Migration status: failed") != std::string::npos ||
        info.find("Migration status: cancelled") != std::string::npos)
      return with_log(make_error(ErrorKind::kGuest, "migration failed: " + one_line(info)));
    pollfd p{child.pidfd(), POLLIN, 0};
    if (::poll(&p, 1, 2) > 0) return with_log(make_error(ErrorKind::kGuest, "exited while saving"));
  }
  const int64_t t_completed = mono_ns();
  struct stat st;
  while (::stat(file.c_str(), &st) < 0) {
    if (remaining_ms(deadline) == 0) return with_log(make_error(ErrorKind::kTimeout, file + " did not appear"));
    ::usleep(1000);
  }
  const int64_t t_file = mono_ns();
  child.kill_and_reap();
  report.note(strfmt("qemu save round %u: info migrate: %s", round, one_line(info).c_str()));
  std::vector<std::pair<std::string, double>> fields = {
      {"ready_ms", ms_between(t0, t_ready)},
      {"stop_ms", ms_between(t_stop, t_stopped)},
      {"migrate_ms", ms_between(t_stop, t_completed)},
      {"file_ms", ms_between(t_stop, t_file)},
      {"file_mib", static_cast<double>(st.st_size) / kMiB}};
  if (auto v = hmp_number(info, "total time")) fields.push_back({"qemu_total_ms", *v});
  if (auto v = hmp_number(info, "downtime")) fields.push_back({"downtime_ms", *v});
  report.record("qemu_save", round, fields);
  return ok_status();
}

// A new QEMU restores the saved guest (`-incoming "exec:cat FILE"`), is
// told to `cont` once the state is loaded (the source was stopped, so the
// destination stays paused), and runs CMD through the agent: from the fork
// to the first output, as for spore-vm resume.
Status qemu_restore_once(const Options& o, const std::string& work, const std::string& file, uint32_t round,
                         Report& report) {
  const std::string monitor = work + "/qemu-monitor.sock";
  ::unlink(monitor.c_str());
  SPORE_ASSIGN_OR_RETURN(UniqueFd devnull, open_file("/dev/null", O_RDONLY));
  SPORE_ASSIGN_OR_RETURN(UniqueFd log, memfd("qemu-log"));
  auto argv = qemu_with_monitor(o, monitor);
  argv.insert(argv.end(), {"-incoming", "exec:cat " + file});

  const int64_t t0 = mono_ns();
  const int64_t deadline = t0 + o.timeout_s * 1'000'000'000ll;
  SPORE_ASSIGN_OR_RETURN(Child child, Child::spawn(argv, devnull.get(), log.get(), log.get()));
  auto with_log = [&](Error e) {
    child.kill_and_reap();
    std::string tail = last_lines(read_back(log.get()), 15);
    return std::move(e).wrap(tail.empty() ? "qemu restore" : "qemu restore (its output ends: " + tail + ")");
  };
  auto hmp = Hmp::connect(monitor, child, deadline);
  if (!hmp.ok()) return with_log(std::move(hmp).error());
  const int64_t t_monitor = mono_ns();
  std::string status;
  for (;;) {
    auto s = hmp->command("info status", deadline);
    if (!s.ok()) return with_log(std::move(s).error());
    status = *s;
    if (status.find("inmigrate") == std::string::npos) break;
    pollfd p{child.pidfd(), POLLIN, 0};
    if (::poll(&p, 1, 1) > 0) return with_log(make_error(ErrorKind::kGuest, "exited while loading the snapshot"));
  }
  const int64_t t_loaded = mono_ns();
  if (status.find("running") == std::string::npos) {
    if (auto c = hmp->command("cont", deadline); !c.ok()) return with_log(std::move(c).error());
  }
  const int64_t t_cont = mono_ns();
  auto ex = exec_via_vsock(o, child.pidfd(), deadline, true);
  if (!ex.ok()) return with_log(std::move(ex).error());
  const int64_t t_kill = mono_ns();
  child.kill_and_reap();
  const int64_t t_gone = mono_ns();
  report.record("qemu_restore", round,
                {{"first_output_ms", ms_between(t0, ex->first_output_ns)},
                 {"monitor_ms", ms_between(t0, t_monitor)},
                 {"loaded_ms", ms_between(t0, t_loaded)},
                 {"cont_ms", ms_between(t0, t_cont)},
                 {"cont_to_output_ms", ms_between(t_cont, ex->first_output_ns)},
                 {"connect_ms", ms_between(t_cont, ex->t_connected)},
                 {"connect_attempts", static_cast<double>(ex->connect_attempts)},
                 {"sessions", static_cast<double>(ex->sessions)},
                 {"teardown_ms", ms_between(t_kill, t_gone)}},
                ex->out);
  return ok_status();
}

// --------------------------------------------------------------------- fork

// `spore-vm fork DIR --count N --out OUT`: metadata only, timed from the
// fork of spore-vm to its exit; and what the children take on disk.
Status fork_once(const Options& o, const std::string& parent, const std::string& out, uint32_t round, Report& report) {
  SPORE_ASSIGN_OR_RETURN(
      SporeVmRun run, run_spore_vm_args(o, {"fork", parent, "--count", std::to_string(o.fork_count), "--out", out}, true));
  const double wall = ms_between(run.t_fork, run.t_exit);
  const DiskUsage du = disk_usage(out);
  report.record("fork", round,
                {{"wall_ms", wall},
                 {"per_child_ms", wall / o.fork_count},
                 {"du_kib_per_child", static_cast<double>(du.allocated) / 1024 / o.fork_count}});
  return ok_status();
}

// What starting and stopping spore-vm costs at all: the yardstick for fork.
Status version_once(const Options& o, uint32_t round, Report& report) {
  SPORE_ASSIGN_OR_RETURN(SporeVmRun run, run_spore_vm_args(o, {"--version"}, true));
  report.record("version", round, {{"wall_ms", ms_between(run.t_fork, run.t_exit)}});
  return ok_status();
}

// ------------------------------------------------------ memory of forks

// The command the held VMs run: a line of output, then nothing.
const std::vector<std::string> kHoldCommand = {"sh", "-c", "echo ready; exec sleep 3600"};

// KVM's counters for the VMs of process pid, from debugfs when it is
// mounted (/sys/kernel/debug/kvm/PID-FD/: the VM's statistics, summed over
// its vCPUs). Empty without debugfs.
std::map<std::string, double> kvm_stats(pid_t pid) {
  std::map<std::string, double> t;
  std::error_code ec;
  const std::string prefix = std::to_string(pid) + "-";
  for (fs::directory_iterator it("/sys/kernel/debug/kvm", ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().filename().string().rfind(prefix, 0) != 0) continue;
    for (const char* name : {"exits", "mmio_exit_user", "mmio_exit_kernel", "wfi_exit_stat", "hvc_exit_stat",
                             "signal_exits"}) {
      auto text = read_file(it->path().string() + "/" + name, 64);
      if (text.ok()) t[name] += std::strtod(text->c_str(), nullptr);
    }
  }
  return t;
}

// Starts the given spore-vm invocations at once (each running kHoldCommand),
// and once every one has printed its line (and a second more), samples each
// spore-vm's /proc/PID/smaps_rollup and KVM counters, and the host's
// /proc/meminfo against a sample taken before the first start; then stops
// them (SIGTERM, which spore-vm forwards to the command).
//   kind: per process: fork -> first output; Rss, Pss, private (clean +
//         dirty), private dirty, anonymous (MiB); KVM exits so far.
//   kind_sys: host-wide deltas: anonymous memory and the kernel's share
//         (page tables of processes and of KVM, unreclaimable slab, stacks).
Status hold_vms(const Options& o, const std::vector<std::vector<std::string>>& invocations, const std::string& kind,
                Report& report) {
  const size_t k = invocations.size();
  const auto before = read_kib_table("/proc/meminfo");
  SPORE_ASSIGN_OR_RETURN(UniqueFd devnull, open_file("/dev/null", O_RDONLY));
  struct Vm {
    std::optional<Child> child;
    UniqueFd out, err;
    int64_t t_fork = 0, t_first = 0;
  };
  std::vector<Vm> vms(k);
  const int64_t deadline = mono_ns() + o.timeout_s * 1'000'000'000ll;
  for (size_t i = 0; i < k; i++) {
    SPORE_ASSIGN_OR_RETURN(Pipe out, Pipe::create());
    SPORE_ASSIGN_OR_RETURN(vms[i].err, memfd("vm-stderr"));
    std::vector<std::string> argv{o.spore_vm};
    argv.insert(argv.end(), invocations[i].begin(), invocations[i].end());
    argv.push_back("--");
    argv.insert(argv.end(), kHoldCommand.begin(), kHoldCommand.end());
    vms[i].t_fork = mono_ns();
    auto child = Child::spawn(argv, devnull.get(), out.w.get(), vms[i].err.get(), o.spore_vm_env);
    if (!child.ok()) return std::move(child).error();
    vms[i].child.emplace(std::move(*child));
    vms[i].out = std::move(out.r);
  }
  auto fail = [&](size_t i, const std::string& why) {
    return make_error(ErrorKind::kGuest, strfmt("VM %zu (spore-vm %s) %s; its stderr ends:\n%s", i,
                                                invocations[i][0].c_str(), why.c_str(),
                                                last_lines(read_back(vms[i].err.get()), 10).c_str()));
  };
  for (size_t ready = 0; ready < k;) {
    std::vector<pollfd> fds;
    std::vector<size_t> who;
    for (size_t i = 0; i < k; i++) {
      if (vms[i].t_first) continue;
      fds.push_back({vms[i].out.get(), POLLIN, 0});
      fds.push_back({vms[i].child->pidfd(), POLLIN, 0});
      who.insert(who.end(), {i, i});
    }
    int r = ::poll(fds.data(), fds.size(), remaining_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno_error("poll");
    if (r == 0) return make_error(ErrorKind::kTimeout, strfmt("only %zu of %zu VMs printed in time", ready, k));
    const int64_t now = mono_ns();
    for (size_t j = 0; j < fds.size(); j++) {
      if (!fds[j].revents) continue;
      Vm& vm = vms[who[j]];
      if (vm.t_first) continue;
      if (j % 2 == 1) return fail(who[j], "exited before its output");
      char c;
      if (::read(vm.out.get(), &c, 1) != 1) return fail(who[j], "closed its output");
      vm.t_first = now;
      ready++;
    }
  }
  ::usleep(1'000'000);  // let the last ones settle into their sleep

  const auto after = read_kib_table("/proc/meminfo");
  for (size_t i = 0; i < k; i++) {
    auto sm = read_kib_table(strfmt("/proc/%d/smaps_rollup", vms[i].child->pid()));
    if (sm.empty()) return fail(i, "has no /proc/PID/smaps_rollup");
    std::vector<std::pair<std::string, double>> fields = {
        {"first_output_ms", ms_between(vms[i].t_fork, vms[i].t_first)},
        {"rss_mib", sm["Rss"] / 1024},
        {"pss_mib", sm["Pss"] / 1024},
        {"private_mib", (sm["Private_Clean"] + sm["Private_Dirty"]) / 1024},
        {"private_dirty_mib", sm["Private_Dirty"] / 1024},
        {"anon_mib", sm["Anonymous"] / 1024}};
    auto kvm = kvm_stats(vms[i].child->pid());
    if (kvm.count("exits")) {
      fields.push_back({"exits", kvm["exits"]});
      fields.push_back({"mmio_exits", kvm["mmio_exit_user"] + kvm["mmio_exit_kernel"]});
      fields.push_back({"wfi_exits", kvm["wfi_exit_stat"]});
      fields.push_back({"hvc_exits", kvm["hvc_exit_stat"]});
    }
    report.record(kind, static_cast<uint32_t>(i + 1), fields);
  }
  auto delta_mib = [&](const char* key) {
    auto a = after.find(key), b = before.find(key);
    return a == after.end() || b == before.end() ? 0.0 : (a->second - b->second) / 1024;
  };
  // Anonymous pages (the VMs' copies of guest pages, heaps, stacks) and
  // what the kernel keeps for each VM: process and KVM page tables, vCPU
  // and other unreclaimable slab, kernel stacks. MemFree moves with the
  // per-CPU free lists as well, so it is kept as a cross-check only.
  const double anon = delta_mib("AnonPages");
  const double kernel =
      delta_mib("PageTables") + delta_mib("SecPageTables") + delta_mib("SUnreclaim") + delta_mib("KernelStack");
  const double n = static_cast<double>(k);
  report.record(kind + "_sys", 1,
                {{"vms", n},
                 {"anon_mib", anon},
                 {"kernel_mib", kernel},
                 {"total_mib", anon + kernel},
                 {"per_vm_mib", (anon + kernel) / n},
                 {"pagetables_mib", delta_mib("PageTables")},
                 {"kvm_pagetables_mib", delta_mib("SecPageTables")},
                 {"slab_unreclaimable_mib", delta_mib("SUnreclaim")},
                 {"kernel_stack_mib", delta_mib("KernelStack")},
                 {"shmem_mib", delta_mib("Shmem")},
                 {"memfree_drop_mib", -delta_mib("MemFree")}});

  for (auto& vm : vms) vm.child->signal(SIGTERM);
  for (auto& vm : vms) (void)vm.child->wait(remaining_ms(deadline));  // the destructor kills what is left
  return ok_status();
}

// -------------------------------------------------------------- the run

}  // namespace

void add_spore_options(CLI::App* app, Options& o) {
  app->add_option("--floor-reps", o.floor_reps, "floor samples per variant and round")
      ->check(CLI::Range(1u, 1000u))
      ->capture_default_str();
  app->add_option("--small-mib", o.small_mib, "RAM of the small guest")->check(CLI::Range(64ull, 1ull << 20))->capture_default_str();
  app->add_option("--large-mib", o.large_mib, "RAM of the large guest")->check(CLI::Range(64ull, 1ull << 20))->capture_default_str();
  app->add_option("--captures", o.captures, "captures per guest size (and QEMU saves)")->check(CLI::Range(1u, 100u))->capture_default_str();
  app->add_option("--cold-runs", o.cold_runs, "rounds that also cold-boot spore-vm (the first ones)")
      ->check(CLI::Range(0u, 10000u))
      ->capture_default_str();
  app->add_option("--fork-count", o.fork_count, "children per spore-vm fork")->check(CLI::Range(1u, 100000u))->capture_default_str();
  app->add_option("--fork-runs", o.fork_runs, "timed spore-vm fork runs")->check(CLI::Range(1u, 100u))->capture_default_str();
  app->add_option("--concurrent", o.concurrent, "forks resumed at once for the memory figure")
      ->check(CLI::Range(2u, 1000u))
      ->capture_default_str();
  app->add_option("--work", o.work, "directory for spores, RAM cache and snapshots (default: new in $TMPDIR)");
  app->add_flag("--keep-work", o.keep_work, "leave the work directory behind");
  app->add_flag("--no-peer", o.no_peer, "skip QEMU's save and restore");
}

void spore_mode(const Options& opts, Report& report) {
  auto work_dir = make_work_dir(opts.work, "spore-bench");
  if (!work_dir.ok()) {
    progress("%s", work_dir.error().message.c_str());
    return report.failure("setup", 0, work_dir.error().message);
  }
  Work w;
  w.dir = *work_dir;
  // Every spore-vm shares the run's own RAM cache, and logs the phases of
  // its exec session.
  Options o = opts;
  o.spore_vm_env.push_back("SPORE_CACHE_DIR=" + w.dir + "/cache");
  o.spore_vm_env.push_back("SPORE_LOG=info");
  const uint64_t mib[2] = {o.small_mib, o.large_mib};
  report.note(strfmt("spore mode: work %s, guests %s and %s, %u captures each, %u cold runs, fork --count %u x%u, "
                     "%u concurrent forks",
                     w.dir.c_str(), size_label(mib[0]).c_str(), size_label(mib[1]).c_str(), o.captures, o.cold_runs,
                     o.fork_count, o.fork_runs, o.concurrent));

  // Captures of idle guests, alternating sizes; the first of each is resumed.
  for (uint32_t k = 1; k <= o.captures; k++) {
    for (int s = 0; s < 2; s++) {
      std::string dir = strfmt("%s/spore-%llu-%u", w.dir.c_str(), static_cast<unsigned long long>(mib[s]), k);
      step(sized("capture", s), k, report, [&] { return capture_once(o, mib[s], dir, sized("capture", s), k, report); });
      if (w.spore[s].empty() && fs::exists(dir + "/manifest.json")) w.spore[s] = dir;
    }
  }
  // The peer's saves of the same idle guest.
  if (!o.no_peer) {
    for (uint32_t k = 1; k <= o.captures; k++) {
      std::string file = strfmt("%s/qemu-%u.snapshot", w.dir.c_str(), k);
      step("qemu_save", k, report, [&] { return qemu_save_once(o, w.dir, file, k, report); });
      if (w.qemu_file.empty() && fs::exists(file)) w.qemu_file = file;
    }
  }
  // The first resume of each spore materialises its RAM file in the cache.
  for (int s = 0; s < 2; s++) {
    if (w.spore[s].empty()) continue;
    step(sized("first", s), 1, report, [&] { return resume_once(o, w.spore[s], sized("first", s), 1, true, report); });
  }

  // The rounds: the floor, a cold boot (the first rounds), and resumes of
  // both sizes and the peer's restore, in an order that rotates.
  const uint32_t first_round = o.warmup ? 0 : 1;
  for (uint32_t round = first_round; round <= o.runs; round++) {
    for (uint32_t i = 0; i < o.floor_reps; i++) {
      run_floor(round, false, report);
      run_floor(round, true, report);
    }
    if (round <= o.cold_runs) step("spore", round, report, [&] { return spore_once(o, round, report); });
    for (uint32_t turn = 0; turn < 3; turn++) {
      switch ((round + turn) % 3) {
        case 0:
        case 1: {
          int s = static_cast<int>((round + turn) % 3);
          if (!w.spore[s].empty())
            step(sized("resume", s), round, report,
                 [&] { return resume_once(o, w.spore[s], sized("resume", s), round, false, report); });
          break;
        }
        default:
          if (!w.qemu_file.empty())
            step("qemu_restore", round, report, [&] { return qemu_restore_once(o, w.dir, w.qemu_file, round, report); });
      }
    }
  }

  // Forks: metadata only; then resident memory of forks resumed at once.
  if (!w.spore[0].empty()) {
    for (uint32_t k = 1; k <= o.fork_runs; k++) {
      std::string out = strfmt("%s/forks-%u", w.dir.c_str(), k);
      step("version", k, report, [&] { return version_once(o, k, report); });
      step("fork", k, report, [&] { return fork_once(o, w.spore[0], out, k, report); });
      if (w.forks.empty() && fs::exists(out + "/0/manifest.json")) w.forks = out;
    }
    std::vector<std::vector<std::string>> resumes;
    for (uint32_t i = 0; i < o.concurrent; i++)
      resumes.push_back(
          {"resume", w.forks.empty() ? w.spore[0] : strfmt("%s/%u", w.forks.c_str(), i % o.fork_count)});
    step("forks1", 1, report, [&] { return hold_vms(o, {resumes[0]}, "forks1", report); });
    step("forks", 1, report, [&] { return hold_vms(o, resumes, "forks", report); });
  }
  // For comparison: a cold-booted guest of the same size, held the same way.
  std::vector<std::string> cold{"run", "--mem", std::to_string(o.small_mib)};
  for (auto& a : asset_args(o)) cold.push_back(a);
  step("cold1", 1, report, [&] { return hold_vms(o, {cold}, "cold1", report); });

  report.note(strfmt("work directory: %s (%.1f MiB)%s", w.dir.c_str(),
                     static_cast<double>(disk_usage(w.dir).allocated) / kMiB, o.keep_work ? ", kept" : ", removed"));
  if (!o.keep_work) {
    std::error_code ec;
    fs::remove_all(w.dir, ec);
  }
}

// ------------------------------------------------------------------ summary

void print_spore_table(FILE* out, const Report& report, const Options& o) {
  const std::string small = size_label(o.small_mib), large = size_label(o.large_mib);
  std::string command;
  for (const auto& a : o.command) command += (command.empty() ? "" : " ") + a;
  std::vector<TableRow> rows = {
      {"", "baselines"},
      {"floor.exit_ms", "floor: open /dev/kvm -> first exit"},
      {"floor_gic.exit_ms", "floor + vGICv3: open -> first exit"},
      {"spore.first_output_ms", "cold boot: fork -> first output"},
      {"spore.self_first_output_ms", "cold boot --timings: start -> first output"},
      {"spore.ready_ms", "cold boot: fork -> agent ready"},
      {"spore.ready_to_output_ms", "cold boot: agent ready -> first output"},
      {"spore.minflt", "cold boot: page faults of spore-vm (count)", "%.0f"},
  };
  for (int s = 0; s < 2; s++) {
    const std::string& label = s == 0 ? small : large;
    auto id = [s](const char* kind, const char* field) { return sized(kind, s) + "." + field; };
    rows.insert(rows.end(), {
        {"", "capture of an idle " + label + " guest (spore-vm run --capture)"},
        {id("capture", "total_ms"), "capture: total"},
        {id("capture", "pause_ms"), "capture: pause vCPUs"},
        {id("capture", "state_ms"), "capture: save vCPU, GIC, device state"},
        {id("capture", "memory_ms"), "capture: RAM into chunks"},
        {id("capture", "chunks"), "spore: chunks stored (count)", "%.0f"},
        {id("capture", "stored_mib"), "spore: stored bytes (MiB)"},
        {id("capture", "du_mib"), "spore: directory on disk, du (MiB)"},
        {"", "resume of the " + label + " spore -> first output of `" + command + "`"},
        {id("first", "first_output_ms"), "first resume (materialises RAM): fork -> output"},
        {id("first", "prepare_ms"), "first resume --timings: prepare"},
        {id("resume", "first_output_ms"), "resume: fork -> first output"},
        {id("resume", "exit_ms"), "resume: fork -> exited"},
        {id("resume", "self_first_output_ms"), "--timings: start -> first output"},
        {id("resume", "exec_offset_ms"), "  fork -> spore-vm's start"},
        {id("resume", "prepare_ms"), "  prepare (open, verify, map the RAM file)"},
        {id("resume", "restore_ms"), "  restore (VM, vCPU, GIC, devices)"},
        {id("resume", "startup_ms"), "  rest of start-up (process, CLI, threads)"},
        {id("resume", "connect_ms"), "  vsock connect to the agent"},
        {id("resume", "agent_started_ms"), "  exec request -> command started"},
        {id("resume", "output_after_started_ms"), "  command started -> first output"},
        {id("resume", "connect_and_output_ms"), "  vsock connect, and command started -> output"},
        {id("resume", "minflt"), "resume: page faults of spore-vm (count)", "%.0f"},
        {id("resume", "cpu_ms"), "resume: CPU time of spore-vm (guest included)"},
    });
  }
  rows.insert(rows.end(), {
      {"", "the peer: QEMU-KVM save (stop + migrate to a file) and restore (-incoming), " + small},
      {"qemu_save.ready_ms", "qemu save: fork -> agent ready (HELLO)"},
      {"qemu_save.migrate_ms", "qemu save: stop -> migration completed"},
      {"qemu_save.file_ms", "qemu save: stop -> file complete"},
      {"qemu_save.qemu_total_ms", "qemu save: QEMU's own 'total time'"},
      {"qemu_save.file_mib", "qemu snapshot file (MiB)"},
      {"qemu_restore.first_output_ms", "qemu restore: fork -> first output"},
      {"qemu_restore.monitor_ms", "  fork -> monitor answers"},
      {"qemu_restore.loaded_ms", "  fork -> snapshot loaded"},
      {"qemu_restore.connect_ms", "  cont -> agent connection that works"},
      {"qemu_restore.cont_to_output_ms", "  cont -> first output"},
      {"qemu_restore.sessions", "qemu restore: exec sessions needed (count)", "%.0f"},
      {"", strfmt("fork (metadata only, %u children)", o.fork_count)},
      {"fork.wall_ms", strfmt("spore-vm fork --count %u: fork -> exited", o.fork_count)},
      {"fork.per_child_ms", "  per child"},
      {"fork.du_kib_per_child", "  disk per child (KiB)"},
      {"version.wall_ms", "spore-vm --version: fork -> exited"},
      {"", strfmt("memory: %u forks of the %s spore resumed at once, each running sleep", o.concurrent, small.c_str())},
      {"forks.first_output_ms", "fork -> first output, all starting at once"},
      {"forks.private_mib", "per fork: private resident (MiB)"},
      {"forks.private_dirty_mib", "per fork: private dirty (MiB)"},
      {"forks.pss_mib", "per fork: Pss (MiB)"},
      {"forks.rss_mib", "per fork: Rss (MiB)"},
      {"forks_sys.per_vm_mib", "host: anonymous + kernel memory per fork (MiB)"},
      {"forks.exits", "per fork: KVM exits, resume -> sleeping (count)", "%.0f"},
      {"forks.mmio_exits", "  of which MMIO (count)", "%.0f"},
      {"forks.wfi_exits", "  of which WFI (count)", "%.0f"},
      {"forks1.private_mib", "one fork alone: private resident (MiB)"},
      {"forks1.rss_mib", "one fork alone: Rss (MiB)"},
      {"forks1_sys.total_mib", "one fork alone: host anonymous + kernel (MiB)"},
      {"cold1.private_mib", "a cold-booted guest alone: private resident (MiB)"},
      {"cold1_sys.total_mib", "a cold-booted guest alone: host anon + kernel (MiB)"},
      {"cold1.exits", "a cold-booted guest: KVM exits, start -> sleeping", "%.0f"},
      {"cold1.mmio_exits", "  of which MMIO (count)", "%.0f"},
  });
  std::vector<TableRatio> ratios = {
      {"resume " + small + " / cold boot, from fork", "resume_s.first_output_ms", "spore.first_output_ms", true},
      {"resume " + small + " / cold boot, --timings", "resume_s.self_first_output_ms", "spore.self_first_output_ms", true},
      {"resume " + large + " / " + small, "resume_l.first_output_ms", "resume_s.first_output_ms", true},
      {"resume " + small + " / qemu restore", "resume_s.first_output_ms", "qemu_restore.first_output_ms", true},
      {"resume " + small + " / floor", "resume_s.first_output_ms", "floor.exit_ms"},
      {"qemu restore / cold boot (spore-vm)", "qemu_restore.first_output_ms", "spore.first_output_ms"},
      {"capture total " + large + " / " + small, "capture_l.total_ms", "capture_s.total_ms"},
      {"spore on disk / guest RAM, " + small, "capture_s.du_mib", "capture_s.ram_mib"},
      {"spore on disk / guest RAM, " + large, "capture_l.du_mib", "capture_l.ram_mib"},
      {"qemu snapshot / spore on disk, " + small, "qemu_save.file_mib", "capture_s.du_mib"},
      {"qemu save / capture, " + small + " (stop -> file)", "qemu_save.file_ms", "capture_s.total_ms"},
  };
  report.print_table(out, "figure (ms unless marked)", rows, ratios, Spread::kP95);

  // The goals of the spore issue, each met or not on this run's figures.
  std::fprintf(out, "\ngoals\n");
  auto verdict = [](bool met) { return met ? "met" : "NOT MET"; };
  auto resume = report.summary("resume_s.first_output_ms"), cold = report.summary("spore.first_output_ms");
  if (resume && cold && resume->median > 0) {
    const double r = resume->median / cold->median;
    std::fprintf(out, "  resume -> first output under 1/30 of cold boot (%s, from fork): %s\n", small.c_str(),
                 verdict(r < 1.0 / 30));
    std::fprintf(out, "      p50 %s ms vs cold %s ms: 1/%.1f;  p95 %s ms vs cold %s ms: 1/%.1f\n",
                 fmt_ms(resume->median).c_str(), fmt_ms(cold->median).c_str(), 1 / r, fmt_ms(resume->p95).c_str(),
                 fmt_ms(cold->p95).c_str(), cold->p95 / resume->p95);
  } else {
    std::fprintf(out, "  resume vs cold boot: not measured\n");
  }
  auto large_r = report.summary("resume_l.first_output_ms");
  if (resume && large_r && resume->median > 0) {
    const double r = large_r->median / resume->median;
    const Series* ls = report.find("resume_l.first_output_ms");
    auto paired = ls->paired_ratio(*report.find("resume_s.first_output_ms"));
    std::fprintf(out, "  resume of a %s guest within 1.2x of %s: %s\n", large.c_str(), small.c_str(),
                 verdict(r <= 1.2 && (!paired || *paired <= 1.2)));
    std::fprintf(out, "      p50 %s vs %s ms: %.2fx (paired %.2fx);  p95 %s vs %s ms: %.2fx\n",
                 fmt_ms(large_r->median).c_str(), fmt_ms(resume->median).c_str(), r, paired ? *paired : NAN,
                 fmt_ms(large_r->p95).c_str(), fmt_ms(resume->p95).c_str(), large_r->p95 / resume->p95);
  } else {
    std::fprintf(out, "  resume %s vs %s: not measured\n", large.c_str(), small.c_str());
  }
  auto priv = report.summary("forks.private_mib");
  auto sys_k = report.median("forks_sys.total_mib"), sys_1 = report.median("forks1_sys.total_mib");
  if (priv) {
    std::fprintf(out, "  extra resident memory per concurrent fork under 8 MiB (%u forks): %s\n", o.concurrent,
                 verdict(priv->max < 8));
    std::fprintf(out, "      private resident per spore-vm: p50 %.2f MiB, max %.2f MiB\n", priv->median, priv->max);
    if (sys_k && sys_1 && o.concurrent > 1)
      std::fprintf(out, "      host anonymous + kernel memory: %.1f MiB for %u, %.1f MiB for 1: %.2f MiB per additional fork%s\n",
                   *sys_k, o.concurrent, *sys_1, (*sys_k - *sys_1) / (o.concurrent - 1),
                   (*sys_k - *sys_1) / (o.concurrent - 1) < 8 ? "" : " (over 8 MiB counting the kernel's share)");
  } else {
    std::fprintf(out, "  memory per fork: not measured\n");
  }
}

}  // namespace spore::bench
