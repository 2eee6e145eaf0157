// Sealing a running machine into a spore, and bringing one back.
// Shared by spore-vm and the stub.
#pragma once

#include <memory>
#include <string>

#include "base/fd.h"
#include "base/result.h"
#include "vmm/machine.h"
#include "vmm/spore/cache.h"
#include "vmm/spore/spore.h"

namespace spore::vmm {

struct CaptureOptions {
  std::string dir;        // the new spore directory (must not exist or be empty)
  std::string store_dir;  // shared chunk store; empty: dir/chunks
  uint32_t chunk_size = kDefaultChunkSize;
  int settle_ms = 2000;   // how long to wait for vsock connections to close
};

struct CaptureReport {
  Spore spore;
  CaptureStats stats;
  double pause_ms = 0, save_ms = 0, memory_ms = 0, total_ms = 0;
};

// Waits for host connections to drain (bounded), pauses the machine, saves
// its state and RAM, and writes the spore atomically. The machine stays
// paused: the caller stops it or calls unpause().
Result<CaptureReport> capture_spore(Machine& machine, const CaptureOptions& opts, Cache& cache);

struct ResumeOptions {
  std::string rootfs_override;  // use this image instead of the recorded path (same digest required)
  std::function<void(const char*, size_t)> console;
};

struct ResumeReport {
  bool materialized = false;  // the RAM file had to be built from chunks
  bool prefetched = false;    // a recorded working set is being prefetched
  Digest index_digest{};
  double prepare_ms = 0;      // verify + materialise
  double restore_ms = 0;      // VM built and state loaded
};

// Verifies the spore (state and index digests, rootfs digest), makes sure its
// RAM file is in the cache, and restores a machine from it (not yet started).
Result<std::unique_ptr<Machine>> resume_spore(const Spore& spore, const ResumeOptions& opts, Cache& cache,
                                              ResumeReport* report = nullptr);

// After the first command of a resume whose RAM has no recorded working set
// yet: records what the guest touched, for later resumes to prefetch. In two
// steps, because by the end of the command the main thread is confined and
// opens nothing by path (vmm/seccomp_policy.h): prepare() opens the
// pagemap and creates the file that record() fills.
class WorkingSetRecorder {
 public:
  WorkingSetRecorder() = default;  // records nothing
  // Records nothing when the resume prefetched a recorded set, or another
  // run is recording one.
  static WorkingSetRecorder prepare(Cache& cache, const ResumeReport& report);
  // Best effort: the set is an optimisation only.
  void record(const Machine& m);

 private:
  UniqueFd pagemap_;
  UniqueFd out_;
};

}  // namespace spore::vmm
