// The stub: the program an end user runs. It finds its sidecar bundle,
// resumes the app's warm spore (or boots and seals one), and runs the
// command; or manages the app's daemon (start, exec, status, stop).
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "base/exit_codes.h"
#include "base/seccomp.h"
#include "stub/app.h"
#include "stub/cli.h"
#include "stub/daemon.h"
#include "stub/run.h"

#ifndef SPORE_VERSION
#define SPORE_VERSION "dev"
#endif

int main(int argc, char** argv) {
  using namespace spore;
  using namespace spore::stub;
  std::string name = argc > 0 ? argv[0] : "app";
  name = name.substr(name.rfind('/') + 1);
  std::vector<std::string> args(argv + 1, argv + argc);
  seccomp::set_program_name(name);

  auto opts = parse_args(args);
  if (!opts.ok()) {
    std::fprintf(stderr, "%s: %s (see %s --help)\n", name.c_str(), opts.error().message.c_str(), name.c_str());
    return kExitUsage;
  }
  if (opts->mode == Mode::kHelp) {
    std::fputs(usage(name).c_str(), stdout);
    return 0;
  }
  if (opts->mode == Mode::kVersion) {
    std::printf("%s (spore %s)\n", name.c_str(), SPORE_VERSION);
    return 0;
  }
  auto app = App::open(name);
  if (!app.ok()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), app.error().message.c_str());
    return exit_code_for(app.error());
  }
  switch (opts->mode) {
    case Mode::kRun: return cmd_run(**app, *opts);
    case Mode::kStart: return cmd_start(**app, *opts);
    case Mode::kExec: return cmd_exec(**app, *opts);
    case Mode::kStatus: return cmd_status(**app, *opts);
    case Mode::kStop: return cmd_stop(**app, *opts);
    case Mode::kSeal: {
      auto s = (*app)->seal_into_bundle();
      if (!s.ok()) {
        std::fprintf(stderr, "%s: %s\n", name.c_str(), s.error().message.c_str());
        return exit_code_for(s.error());
      }
      return 0;
    }
    default: return kExitUsage;
  }
}
