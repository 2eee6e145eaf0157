// What the benchmarks run: the bare KVM floor, spore-vm, and the QEMU peer
// (Debian's qemu-system-aarch64 with KVM, booting the same guest).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "agent/protocol.h"
#include "base/fd.h"
#include "base/result.h"
#include "bench/harness.h"

namespace spore::bench {

struct Options {
  uint32_t runs = 10;
  uint32_t warmup = 1;      // discarded rounds first: the first VM of a host run is atypical
  uint32_t floor_reps = 3;  // floor samples per variant and round
  int timeout_s = 180;      // per boot
  std::string spore_vm;     // default: next to this binary
  std::string qemu_peer;    // scripts/fetch-qemu-peer.sh's directory; empty: qemu-system-aarch64 on PATH
  std::string qemu_console; // file for the peer's guest console (debugging); default: discarded
  std::string qemu_cmdline; // the peer's kernel command line; default: the one spore-vm gives its guest
  std::string assets;       // Image, initramfs.cpio, demo-rootfs.img
  std::string raw;          // raw samples go here (appended) instead of stdout
  std::vector<std::string> command{"echo", "x"};
  // Added to the environment of every spore-vm the benchmark starts.
  std::vector<std::string> spore_vm_env;

  // The spore mode (resume, capture, fork; bench/spore_mode.cc).
  std::string work;            // spores, RAM cache, QEMU snapshots; default: a new directory in $TMPDIR
  bool keep_work = false;      // leave it behind
  uint64_t small_mib = 256, large_mib = 2048;
  uint32_t captures = 3;       // captures per guest size (and QEMU saves)
  uint32_t cold_runs = 5;      // rounds that also cold-boot spore-vm (the first ones)
  uint32_t fork_count = 100;   // children per `spore-vm fork`
  uint32_t fork_runs = 3;      // timed `spore-vm fork` runs
  uint32_t concurrent = 10;    // forks resumed at once for the memory figure
  bool no_peer = false;        // skip QEMU's save and restore
};

// ------------------------------------------------------------ floor (KVM)

// One floor sample (kind "floor" or "floor_gic"): open /dev/kvm, VM, 256 MiB
// memslot, vCPU, [vGICv3,] run to the first exit; then the teardown.
void run_floor(uint32_t round, bool with_gic, Report& report);

// ----------------------------------------------------------------- spore-vm

// A finished spore-vm: what it printed, and when, from the fork.
struct SporeVmRun {
  int64_t t_fork = 0, t_first_stdout = 0, t_exit = 0;
  std::string out, err;
  struct rusage usage {};  // of the spore-vm process (its page faults include the guest's first touches)
};

// Runs `spore-vm ARGS...` (with o.spore_vm_env) from fork to reaped, and
// requires exit status 0 and, with need_output, some output on stdout.
Result<SporeVmRun> run_spore_vm_args(const Options& o, const std::vector<std::string>& args, bool need_output);
// `spore-vm run EXTRA... -- CMD...` on the benchmark's assets.
Result<SporeVmRun> run_spore_vm(const Options& o, const std::vector<std::string>& extra,
                                const std::vector<std::string>& command);

// Every "spore-vm: timings: k=v ..." line -> {k: v}.
std::map<std::string, double> parse_timings(const std::string& err);
// The SPORE_LOG=info lines about the exec session, those present:
// "vsock connect to the agent took X ms" -> connect_ms, "agent started the
// command at Y ms" (counted from the exec request, after the connection)
// -> agent_started_ms.
std::map<std::string, double> parse_exec_log(const std::string& err);

// The kernel command line spore-vm gives a cold-booted guest.
Result<std::string> spore_vm_cmdline(const Options& o);

// One `spore-vm run --timings -- CMD` (kind "spore").
Status spore_once(const Options& o, uint32_t round, Report& report);

// ------------------------------------------------------------ the QEMU peer

Result<UniqueFd> vsock_listen(uint32_t port);
Result<UniqueFd> vsock_connect(uint32_t cid, uint32_t port);

// The peer's command line for the guest spore-vm builds, with mem_mib of RAM.
std::vector<std::string> qemu_argv(const Options& o, uint64_t mem_mib = 256);

// Waits on listener (the host's ready port) for the guest agent's HELLO
// (which carries the guest's uptime), while child runs.
Result<proto::Hello> wait_for_hello(int listener, const Child& child, int64_t deadline_ns);

// Runs o.command through the agent at the guest's CID (vhost-vsock), as
// spore-vm runs it. A restored guest resets its vsock transport when it
// resumes (QEMU sends the reset event), which may refuse or cut the first
// connections: with restored, a failed connection or session is tried again
// until the deadline, and the attempts are counted.
struct AgentExec {
  int64_t t_connected = 0, first_output_ns = 0;
  int connect_attempts = 0, sessions = 0;
  std::string out;
};
Result<AgentExec> exec_via_vsock(const Options& o, int pidfd, int64_t deadline_ns, bool restored);

// QEMU's human monitor on a unix socket: one command at a time, each answer
// read up to the next "(qemu) " prompt, terminal escapes removed.
class Hmp {
 public:
  // Connects, retrying while QEMU has not created the socket yet.
  static Result<Hmp> connect(const std::string& path, const Child& qemu, int64_t deadline_ns);
  Result<std::string> command(const std::string& cmd, int64_t deadline_ns);

 private:
  Result<std::string> read_prompt(int64_t deadline_ns);
  UniqueFd fd_;
};

}  // namespace spore::bench
