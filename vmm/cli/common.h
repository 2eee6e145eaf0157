// Pieces every spore-vm subcommand shares: exec options, signal handling,
// turning outcomes and errors into exit codes.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "agent/client.h"
#include "agent/protocol.h"
#include "base/fd.h"
#include "base/result.h"
#include "vmm/guest.h"
#include "vmm/machine.h"

namespace spore::cli {

int64_t mono_ns();
extern const int64_t g_start_ns;
double ms_since_start(int64_t t_ns);

// Prints "spore-vm: <message>" and returns the error's exit code.
int fail(const Error& e);

// The project's default kernel, initramfs and demo rootfs: share/spore next
// to this binary's bin/ ($SPORE_ASSETS overrides).
std::string default_assets_dir();

// The kernel command line of a cold boot.
std::string default_cmdline(bool console, bool read_only, bool no_rootfs);

struct ExecOptions {
  std::vector<std::string> env;
  std::string workdir, user, timeout;
  bool interactive = false, tty = false, console = false, timings = false;
  std::vector<std::string> command;
};
void add_exec_options(CLI::App* app, ExecOptions& o);
// Checks the options; fills the request (argv, env, cwd, user, timeout).
Result<proto::ExecRequest> make_request(const ExecOptions& o);

// Blocks the signals we forward to the guest (before any thread starts) and
// returns a signalfd for them.
UniqueFd forwarded_signals();

// run_command's result when interrupt_fd fired before the command ended.
inline constexpr int kStatusInterrupted = -1;

// Runs the request in the guest with this process's stdio; the exit code
// to use (the command's, or a launcher code after printing why). cut_off
// (if given) tells whether the host had to end the session at --timeout
// because the guest did not.
int run_command(vmm::Machine& m, const proto::ExecRequest& req, const ExecOptions& o, int sig_fd,
                const vmm::ConsoleLog& console, int64_t* first_output_ns = nullptr, int interrupt_fd = -1,
                bool* cut_off = nullptr);

}  // namespace spore::cli
