// An app as the stub sees it: the bundle next to the stub, its cache
// directory, and how to get a running machine for it (resume the sealed
// spore, or a local one, or cold boot and seal one).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/result.h"
#include "bundle/app_config.h"
#include "bundle/bundle.h"
#include "vmm/machine.h"
#include "vmm/spore/cache.h"
#include "vmm/spore/capture.h"
#include "vmm/spore/spore.h"

namespace spore::stub {

struct MachineRequest {
  std::optional<uint32_t> cpus;
  std::optional<uint64_t> mem_mib;
  std::function<void(const char*, size_t)> console;
  // A signalfd of the launcher's forwarded signals: SIGINT, SIGTERM, SIGHUP
  // or SIGQUIT on it ends a cold boot's wait for the agent (-1: none).
  int signal_fd = -1;
};

struct Obtained {
  std::unique_ptr<vmm::Machine> machine;  // running
  bool resumed = false;                   // false: a cold boot
  vmm::ResumeReport report;               // when resumed
};

class App {
 public:
  // name: how the user called us (for messages). Finds the sidecar:
  // $SPORE_BUNDLE, else the stub's own path + ".spore".
  static Result<std::unique_ptr<App>> open(const std::string& name);

  const std::string& name() const { return name_; }
  const bundle::AppConfig& config() const { return config_; }
  const bundle::Reader& bundle() const { return *reader_; }
  std::string digest_hex() const;

  // A running machine for this request: the fastest honest way.
  Result<Obtained> obtain(const MachineRequest& req);
  // spore-pack's sealing step: cold boot, warm, capture, and rewrite the
  // sidecar with the spore in it.
  Status seal_into_bundle();
  // For a resumed run: records what its command touches, so later resumes
  // prefetch it (prepare before confining the main thread, record after).
  vmm::WorkingSetRecorder working_set_recorder(const Obtained& o);

 private:
  App() = default;
  Result<std::string> extracted(bundle::SectionType type);
  Result<std::unique_ptr<vmm::Machine>> resume(const vmm::Spore& spore, const MachineRequest& req,
                                               vmm::ResumeReport* report);
  Result<std::unique_ptr<vmm::Machine>> cold_boot(uint32_t cpus, uint64_t mem_mib, const MachineRequest& req);
  Status run_warm(vmm::Machine& m);

  std::string name_;
  std::string bundle_path_;
  std::shared_ptr<bundle::Reader> reader_;
  bundle::AppConfig config_;
  std::optional<vmm::Cache> cache_;
  std::string dir_;  // this bundle's cache directory: its local spore, seals in progress
};

// "app: ..." on stderr, once per message kind per process.
void say(const std::string& app, const std::string& msg);

}  // namespace spore::stub
