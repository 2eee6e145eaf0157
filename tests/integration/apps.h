// Helpers for the packed-app integration tests: private copies of the apps
// tests/integration/pack-apps.sh made (with the real spore-pack), run with
// the real stub as a user would.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace spore::itest {

// $SPORE_TEST_APPS (set by ctest): where pack-apps.sh wrote the apps.
std::string apps_dir();

// A private copy of an app (stub + sidecar) with a cache and a runtime
// directory of its own, so tests do not share sealed spores or daemons
// unless they mean to.
struct AppCopy {
  explicit AppCopy(const std::string& name, const std::string& as = "");
  // Runs the copy with args; SPORE_CACHE_DIR and XDG_RUNTIME_DIR point at
  // the copy's own unless o.env sets or unsets them.
  RunResult operator()(const std::vector<std::string>& args, RunOptions o = {}) const;
  // The environment operator() adds (for tests that run the stub otherwise).
  std::vector<std::string> env() const;
  std::string dir, path, cache, runtime;
};

// The demo app, sealed once (first run) and then shared by read-only tests.
const AppCopy& sealed_demo();
// The demo app with its warm spore sealed into the bundle (`--spore-seal`,
// what spore-pack does on a KVM host), made once; copies of it resume from
// an empty cache without a cold boot.
AppCopy sealed_bundle_copy();

std::string slurp(const std::string& path);
// True once no process runs a program under dir (a stub or monitor of a
// copy); waits up to a few seconds for processes that are exiting.
bool nothing_left_running(const std::string& dir);
// Pids of the processes whose program is exactly path.
std::vector<pid_t> processes_running(const std::string& path);
// True once pid has exited (gone, or a zombie nobody reaps).
bool process_gone(pid_t pid);
// The pid a running daemon reports in `status --json` (0 if none).
pid_t monitor_pid(const AppCopy& app);
// Polls cond every 50 ms until it holds or timeout_s pass; returns it.
bool wait_for(int timeout_s, const std::function<bool()>& cond);

}  // namespace spore::itest
