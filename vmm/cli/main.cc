// spore-vm: the developer's and tests' front end to the VMM.
//
//   spore-vm run [options] -- CMD [ARGS...]       cold-boot a guest, run CMD (--capture DIR seals a spore)
//   spore-vm resume DIR [options] -- CMD ...      resume a spore, run CMD
//   spore-vm fork DIR --count N --out DIR         mint child spores (metadata only)
//   spore-vm fanout DIR... -- CMD ...             resume spores concurrently, prefix their output
//   spore-vm inspect DIR [--json]                 describe a spore
//
// Exit status: CMD's own, or one of the codes in doc/exit-codes.md.
#include <CLI/CLI.hpp>
#include <cstring>

#include "base/exit_codes.h"
#include "base/seccomp.h"
#include "vmm/cli/commands.h"

#ifndef SPORE_VERSION
#define SPORE_VERSION "dev"
#endif

int main(int argc, char** argv) {
  using namespace spore;
  using namespace spore::cli;
  seccomp::set_program_name("spore-vm");

  // Everything after the first "--" is the guest command, verbatim: CLI11
  // must not interpret options meant for it.
  std::vector<std::string> command;
  int cli_argc = argc;
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--") == 0) {
      command.assign(argv + i + 1, argv + argc);
      cli_argc = i;
      break;
    }
  }

  CLI::App app{"spore-vm: boot, capture, resume and fork microVMs on KVM (developer tool)", "spore-vm"};
  app.set_version_flag("--version", std::string("spore-vm ") + SPORE_VERSION);
  app.require_subcommand(1);

  RunOptions ro;
  auto* run = app.add_subcommand("run", "Cold-boot a guest and run CMD; with --capture, seal it into a spore");
  run->add_option("--kernel", ro.kernel, "guest kernel: arm64 Image or x86_64 bzImage (default: the project's build)");
  run->add_option("--initrd", ro.initrd, "agent initramfs (default: the project's build)");
  run->add_option("--rootfs", ro.rootfs, "root filesystem image, attached read-only (default: the demo rootfs)");
  run->add_flag("--no-rootfs", ro.no_rootfs, "run from the initramfs only");
  run->add_option("--mem", ro.mem_mib, "guest RAM in MiB")->default_val(256)->check(CLI::Range(1ull, 1ull << 40));
  run->add_option("--cpus", ro.cpus, "vCPUs")->default_val(1)->check(CLI::Range(1u, 1024u));
  run->add_option("--boot-timeout", ro.boot_timeout, "give up if the guest is not ready after DURATION");
  run->add_flag("--read-only", ro.read_only, "read-only root (writable tmpfs on /tmp, /run, /dev/shm only)");
  run->add_option("--append", ro.cmdline_extra, "extra kernel command-line parameters");
  run->add_option("--capture", ro.capture_dir,
                  "seal the guest into a spore in DIR after CMD exits (or once ready, without CMD)");
  run->add_option("--store", ro.store_dir, "chunk store shared by spores (default: DIR/chunks)");
  run->add_flag("--capture-signal", ro.capture_signal, "capture when spore-vm receives SIGUSR1 instead");
  add_exec_options(run, ro.exec);

  ResumeCmdOptions rs;
  auto* resume = app.add_subcommand("resume", "Resume a spore and run CMD in it");
  resume->add_option("spore", rs.dir, "spore directory")->required();
  resume->add_option("--rootfs", rs.rootfs, "rootfs image to attach (must be the captured one; default: its recorded path)");
  add_exec_options(resume, rs.exec);
  resume->get_option("command")->description("command and arguments (after --)");

  ForkOptions fo;
  auto* fork = app.add_subcommand("fork", "Mint child spores of a spore (metadata only: no RAM is copied)");
  fork->add_option("spore", fo.dir, "parent spore directory")->required();
  fork->add_option("--count", fo.count, "number of children")->default_val(1)->check(CLI::Range(1u, 100000u));
  fork->add_option("--out", fo.out, "directory that receives the children 0..N-1")->required();

  FanoutOptions fa;
  auto* fanout = app.add_subcommand("fanout", "Resume spores concurrently and run CMD in each; output is prefixed");
  fanout->add_option("spores", fa.dirs, "spore directories")->required();
  fanout->add_option("--parallel", fa.parallel, "at most N at once (default: all)");
  fanout->add_option("-e,--env", fa.exec.env, "set KEY=VALUE in the command's environment");
  fanout->add_option("-w,--workdir", fa.exec.workdir, "working directory in the guest");
  fanout->add_option("-u,--user", fa.exec.user, "user[:group] to run as");
  fanout->add_option("--timeout", fa.exec.timeout, "kill each command after DURATION (exit 124)");

  InspectOptions io;
  auto* inspect = app.add_subcommand("inspect", "Describe a spore");
  inspect->add_option("spore", io.dir, "spore directory")->required();
  inspect->add_flag("--json", io.json, "print the manifest and derived facts as JSON");

  try {
    app.parse(cli_argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }
  if (*run) {
    if (!command.empty()) ro.exec.command = command;
    return cmd_run(ro);
  }
  if (*resume) {
    if (!command.empty()) rs.exec.command = command;
    return cmd_resume(rs);
  }
  if (*fork) return cmd_fork(fo);
  if (*fanout) {
    fa.exec.command = command;
    return cmd_fanout(fa, cli_argc);
  }
  if (*inspect) return cmd_inspect(io);
  return kExitUsage;
}
