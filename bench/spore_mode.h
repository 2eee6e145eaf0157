// spore-bench spore: what spores cost and save, in one session beside the
// baselines (doc/benchmarks.md, "Resume" and "Fork"):
//   - capture of an idle guest of two sizes: time, chunks, bytes on disk;
//   - resume -> first command output of each size, against the cold boot
//     to the same point and the bare KVM floor, interleaved round by round;
//   - the peer: QEMU saving the same idle guest (stop + migrate to a file)
//     and a new QEMU restoring it (-incoming) to the first output;
//   - `spore-vm fork --count N` wall time;
//   - resident memory of concurrently resumed forks.
#pragma once

#include <cstdio>

#include "bench/harness.h"
#include "bench/vms.h"

namespace CLI {
class App;
}

namespace spore::bench {

// The mode's own options (sizes, counts, work directory).
void add_spore_options(CLI::App* app, Options& o);
// Runs the whole mode; failures are recorded in the report, not fatal.
void spore_mode(const Options& o, Report& report);
// The summary: figures, ratios, and the goals of the spore issue.
void print_spore_table(FILE* out, const Report& report, const Options& o);

}  // namespace spore::bench
