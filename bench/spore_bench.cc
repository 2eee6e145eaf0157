// spore-bench: the benchmarks behind doc/benchmarks.md, usually run by
// scripts/bench-boot.sh and scripts/bench-spore.sh inside the testbed.
//
//   spore-bench floor [--runs N]          bare KVM: /dev/kvm open -> first guest exit
//   spore-bench cold  [--runs N] [-- CMD] spore-vm run --timings -- CMD, from fork
//   spore-bench qemu  [--runs N] [-- CMD] the peer: QEMU + KVM, same kernel, agent, rootfs
//   spore-bench boot  [--runs N] [-- CMD] all three, interleaved round by round
//   spore-bench spore [--runs N] [-- CMD] capture, resume, fork and their memory, beside
//                                         the floor, cold boots and QEMU's save/restore
//   spore-bench app --app NAME=PATH...    packed apps: seal, sizes, one-shot runs and daemon
//                                         execs, beside cold boots and spore-vm resume
//
// Each sample becomes one raw line (`KIND round=R field_ms=V ...`, on stdout
// or appended to --raw FILE); the end is a table of medians, spread and
// ratios. All times are CLOCK_MONOTONIC milliseconds. This is a benchmark,
// not a test: it fails only when a run cannot be measured at all.
#include <fcntl.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "agent/protocol.h"
#include "base/fd.h"
#include "base/result.h"
#include "bench/app_mode.h"
#include "bench/harness.h"
#include "bench/spore_mode.h"
#include "bench/vms.h"

namespace spore::bench {
namespace {

// One cold boot of the peer. This process plays spore-vm's part: it listens
// for the agent's HELLO on the host side of vsock (vhost-vsock in the
// kernel), then runs CMD through the agent exactly as spore-vm does.
Status qemu_once(const Options& o, uint32_t round, Report& report) {
  SPORE_ASSIGN_OR_RETURN(UniqueFd listener, vsock_listen(proto::kReadyPort));
  SPORE_ASSIGN_OR_RETURN(UniqueFd devnull, open_file("/dev/null", O_RDONLY));
  SPORE_ASSIGN_OR_RETURN(UniqueFd log, memfd("qemu-log"));
  const auto argv = qemu_argv(o);

  const int64_t t0 = mono_ns();
  const int64_t deadline = t0 + o.timeout_s * 1'000'000'000ll;
  SPORE_ASSIGN_OR_RETURN(Child child, Child::spawn(argv, devnull.get(), log.get(), log.get()));
  auto with_log = [&](Error e) {
    child.kill_and_reap();
    std::string tail = last_lines(read_back(log.get()), 15);
    return std::move(e).wrap(tail.empty() ? "qemu" : "qemu (its output ends: " + tail + ")");
  };

  auto hello = wait_for_hello(listener.get(), child, deadline);
  if (!hello.ok()) return with_log(std::move(hello).error());
  const int64_t t_ready = mono_ns();

  // First output: one exec session, as spore-vm runs it.
  auto ex = exec_via_vsock(o, child.pidfd(), deadline, false);
  if (!ex.ok()) return with_log(std::move(ex).error());

  const int64_t t_kill = mono_ns();
  child.kill_and_reap();
  const int64_t t_gone = mono_ns();
  report.record("qemu", round,
                {{"ready_ms", ms_between(t0, t_ready)},
                 {"first_output_ms", ms_between(t0, ex->first_output_ns)},
                 {"guest_uptime_ms", static_cast<double>(hello->uptime_ms)},
                 {"teardown_ms", ms_between(t_kill, t_gone)}},
                ex->out);
  return ok_status();
}

// ------------------------------------------------------------------ modes

enum class Mode { kFloor, kCold, kQemu, kBoot, kSpore, kApp };

void boot_run(const char* kind, Status (*once)(const Options&, uint32_t, Report&), const Options& o,
              uint32_t round, Report& report) {
  int64_t t0 = mono_ns();
  Status s = once(o, round, report);
  if (!s.ok()) {
    progress("round %u: %s failed: %s", round, kind, s.error().message.c_str());
    report.failure(kind, round, s.error().message);
    return;
  }
  progress("round %u%s: %s %.2f s", round, round ? "" : " (warm-up)", kind, ms_between(t0, mono_ns()) / 1000);
}

void print_boot_table(FILE* out, const Report& report) {
  static const std::vector<TableRow> kRows = {
      {"floor.exit_ms", "floor: open /dev/kvm -> first exit"},
      {"floor_gic.exit_ms", "floor + vGICv3: open -> first exit"},
      {"floor.teardown_ms", "floor: teardown"},
      {"spore.ready_ms", "spore: fork -> agent ready *"},
      {"spore.first_output_ms", "spore: fork -> first output"},
      {"spore.exit_ms", "spore: fork -> exited"},
      {"spore.self_vm_created_ms", "spore --timings: start -> VM built"},
      {"spore.self_ready_ms", "spore --timings: start -> agent ready"},
      {"spore.self_first_output_ms", "spore --timings: start -> first output"},
      {"spore.vcpu_to_ready_ms", "spore: vCPU start -> agent ready"},
      {"spore.exec_offset_ms", "spore: fork -> process start *"},
      {"qemu.ready_ms", "qemu: fork -> agent ready (HELLO)"},
      {"qemu.first_output_ms", "qemu: fork -> first output"},
      {"qemu.guest_uptime_ms", "qemu: guest uptime at HELLO"},
      {"qemu.teardown_ms", "qemu: SIGKILL -> reaped"},
  };
  static const std::vector<TableRatio> kRatios = {
      {"agent ready:  spore / qemu", "spore.ready_ms", "qemu.ready_ms", true},
      {"first output: spore / qemu", "spore.first_output_ms", "qemu.first_output_ms", true},
      {"agent ready:  spore / floor", "spore.ready_ms", "floor.exit_ms"},
      {"first output: spore / floor", "spore.first_output_ms", "floor.exit_ms"},
      {"agent ready:  qemu / floor", "qemu.ready_ms", "floor.exit_ms"},
      {"first output: qemu / floor", "qemu.first_output_ms", "floor.exit_ms"},
  };
  report.print_table(out, "figure (ms)", kRows, kRatios);
  if (report.find("spore.ready_ms"))
    std::fprintf(out, "* derived: spore-vm's own times plus (fork -> first output) - (its start -> first output)\n");
}

int run_mode(Mode mode, Options o, const AppOptions& app_opts) {
  ::signal(SIGPIPE, SIG_IGN);
  if (o.spore_vm.empty()) o.spore_vm = exe_dir() + "/spore-vm";
  if (o.assets.empty()) {
    const char* env = std::getenv("SPORE_ASSETS");
    o.assets = env && *env ? env : exe_dir() + "/../share/spore";
  }
  if (o.command.empty()) o.command = {"echo", "x"};

  FILE* raw = stdout;
  if (!o.raw.empty()) {
    raw = std::fopen(o.raw.c_str(), "ae");
    if (!raw) {
      std::fprintf(stderr, "spore-bench: %s: %s\n", o.raw.c_str(), std::strerror(errno));
      return 1;
    }
  }
  const bool peer = mode == Mode::kQemu || mode == Mode::kBoot || (mode == Mode::kSpore && !o.no_peer);
  if (peer && o.qemu_cmdline.empty()) {
    auto c = spore_vm_cmdline(o);
    if (!c.ok()) {
      std::fprintf(stderr, "spore-bench: %s\n(--qemu-cmdline sets the peer's command line instead)\n",
                   c.error().message.c_str());
      return 1;
    }
    o.qemu_cmdline = *c;
  }
  std::string cmd;
  for (const auto& a : o.command) cmd += (cmd.empty() ? "" : " ") + a;
  std::fprintf(raw, "# spore-bench: runs=%u warmup=%u floor_reps=%u command='%s' assets=%s qemu=%s\n", o.runs,
               o.warmup, o.floor_reps, cmd.c_str(), o.assets.c_str(),
               !peer ? "(none)" : o.qemu_peer.empty() ? "qemu-system-aarch64" : o.qemu_peer.c_str());
  if (!o.qemu_cmdline.empty()) std::fprintf(raw, "# peer guest command line: %s\n", o.qemu_cmdline.c_str());
  Report report(raw);

  if (mode == Mode::kSpore) {
    spore_mode(o, report);
  } else if (mode == Mode::kApp) {
    app_mode(o, app_opts, report);
  } else {
    // Round 0 is the warm-up; the boots alternate which peer goes first, so
    // neither always runs right after the other (caches, the host's drift).
    const uint32_t first_round = o.warmup ? 0 : 1;
    for (uint32_t round = first_round; round <= o.runs; round++) {
      if (mode == Mode::kFloor || mode == Mode::kBoot) {
        uint32_t reps = mode == Mode::kFloor ? 1 : o.floor_reps;
        for (uint32_t i = 0; i < reps; i++) {
          run_floor(round, false, report);
          run_floor(round, true, report);
        }
      }
      bool spore_first = round % 2 == 0;
      for (int turn = 0; turn < 2; turn++) {
        bool spore_turn = (turn == 0) == spore_first;
        if (spore_turn && (mode == Mode::kCold || mode == Mode::kBoot))
          boot_run("spore", spore_once, o, round, report);
        if (!spore_turn && (mode == Mode::kQemu || mode == Mode::kBoot))
          boot_run("qemu", qemu_once, o, round, report);
      }
    }
  }

  // The table goes to the terminal, and after the raw lines it sums up.
  auto print = [&](FILE* out) {
    if (mode == Mode::kSpore) print_spore_table(out, report, o);
    else if (mode == Mode::kApp) print_app_table(out, report, app_opts);
    else print_boot_table(out, report);
  };
  std::fputc('\n', raw);
  print(raw);
  if (raw != stdout) {
    std::fclose(raw);
    print(stdout);
  }
  if (report.failures()) {
    std::fprintf(stderr, "spore-bench: %d run(s) failed (see the raw lines)\n", report.failures());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace spore::bench

int main(int argc, char** argv) {
  using namespace spore::bench;
  CLI::App app{"spore-bench: benchmarks of spore-vm against the bare KVM floor and QEMU", "spore-bench"};
  app.require_subcommand(1);
  Options o;
  auto add_common = [&o](CLI::App* c, bool boots) {
    c->add_option("--runs", o.runs, "measured rounds")->check(CLI::Range(1u, 10000u))->capture_default_str();
    c->add_option("--warmup", o.warmup, "discarded rounds first (0 or 1)")->check(CLI::Range(0u, 1u))->capture_default_str();
    c->add_option("--raw", o.raw, "append the raw samples to FILE instead of stdout");
    if (!boots) return;
    c->add_option("--spore-vm", o.spore_vm, "spore-vm binary (default: next to spore-bench)");
    c->add_option("--qemu-peer", o.qemu_peer, "staged QEMU (scripts/fetch-qemu-peer.sh); default: qemu-system-aarch64 on PATH");
    c->add_option("--qemu-console", o.qemu_console, "write the peer guest's console to FILE (debugging)");
    c->add_option("--qemu-cmdline", o.qemu_cmdline, "the peer's kernel command line (default: spore-vm's, read from its guest)");
    c->add_option("--assets", o.assets, "directory with Image, initramfs.cpio, demo-rootfs.img");
    c->add_option("--timeout", o.timeout_s, "seconds allowed per boot")->check(CLI::Range(1, 3600))->capture_default_str();
    c->add_option("command", o.command, "command to run in the guest (after --; default: echo x)")->take_all();
  };
  auto* floor = app.add_subcommand("floor", "bare KVM: /dev/kvm open -> VM, 256 MiB memslot, vCPU -> first exit");
  add_common(floor, false);
  auto* cold = app.add_subcommand("cold", "spore-vm run --timings -- CMD");
  add_common(cold, true);
  auto* qemu = app.add_subcommand("qemu", "QEMU with KVM booting the same guest to the same points");
  add_common(qemu, true);
  auto* boot = app.add_subcommand("boot", "floor, spore and qemu interleaved (scripts/bench-boot.sh)");
  add_common(boot, true);
  boot->add_option("--floor-reps", o.floor_reps, "floor samples per variant and round")
      ->check(CLI::Range(1u, 1000u))
      ->capture_default_str();
  auto* spore = app.add_subcommand(
      "spore", "capture, resume (two guest sizes), fork and per-fork memory, beside the floor, cold boots and "
               "QEMU's save/restore (scripts/bench-spore.sh)");
  add_common(spore, true);
  add_spore_options(spore, o);
  AppOptions app_opts;
  auto* apps = app.add_subcommand(
      "app", "packed apps: seal, sizes, one-shot runs and daemon execs, beside cold boots of the same guest and "
             "spore-vm resume (scripts/bench-app.sh)");
  add_common(apps, false);
  apps->add_option("--spore-vm", o.spore_vm, "spore-vm binary (default: next to spore-bench)");
  apps->add_option("--timeout", o.timeout_s, "seconds allowed per run")->check(CLI::Range(1, 3600))->capture_default_str();
  add_app_options(apps, app_opts);
  CLI11_PARSE(app, argc, argv);

  Mode mode = *floor ? Mode::kFloor
              : *cold ? Mode::kCold
              : *qemu ? Mode::kQemu
              : *boot ? Mode::kBoot
              : *spore ? Mode::kSpore
                       : Mode::kApp;
  return run_mode(mode, o, app_opts);
}
