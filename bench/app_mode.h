// spore-bench app: what a packed app costs its user (doc/benchmarks.md,
// "Packed apps"), in one session beside the cold boot of the same guest:
//   - sealing each app into its bundle (`./app --spore-seal`), and the
//     sizes of the stub and the bundle before and after;
//   - one-shot runs, `./app true` (fork -> exit) and `./app echo x` (fork ->
//     first byte), beside `spore-vm resume` of a spore of the same guest
//     and cold boots of the same kernel, initramfs and rootfs;
//   - daemon mode: `./app start`, `./app exec true` / `./app exec echo x`,
//     the same session spoken straight to the monitor's socket (no stub
//     process), `./app status --json` and `./app --version`, then `./app stop`.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/harness.h"
#include "bench/vms.h"

namespace CLI {
class App;
}

namespace spore::bench {

struct AppOptions {
  std::vector<std::string> apps;  // NAME=PATH: the stub; its sidecar is PATH.spore (sealed in place)
  uint32_t cold_runs = 10;        // rounds that also cold-boot (the first ones)
  uint64_t cold_mem_mib = 255;    // the app's own cold boot: `./app --mem M true` (any size but the sealed one)
  int seal_timeout_s = 1200;      // sealing extracts the rootfs first: minutes for a big image in the testbed
  bool no_vm = false;             // skip the spore-vm resume comparison
  bool no_daemon = false;         // skip daemon mode
  std::string work;               // caches, runtime dirs, spores; default: a new directory in $TMPDIR
  bool keep_work = false;
};

void add_app_options(CLI::App* app, AppOptions& a);
// Runs the whole mode; failures are recorded in the report, not fatal.
void app_mode(const Options& o, const AppOptions& a, Report& report);
// The summary: figures per app, ratios, and the goals of the product issue.
void print_app_table(FILE* out, const Report& report, const AppOptions& a);

}  // namespace spore::bench
