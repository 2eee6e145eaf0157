// A running virtual machine: guest memory, vCPU threads, devices, and the
// I/O thread that serves them. Two constructors: create() builds one for a
// cold boot (kernel + initrd + rootfs); restore() builds one from a spore's
// state and RAM file. Both return a machine that is not running yet.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "vmm/devices/generation.h"
#include "vmm/devices/mmio_bus.h"
#include "vmm/devices/virtio/mmio.h"
#include "vmm/devices/virtio/vsock.h"
#include "vmm/event_loop.h"
#include "vmm/kvm/kvm.h"
#include "vmm/memory.h"
#include "vmm/spore/platform.h"
#include "vmm/spore/state.h"

namespace spore::vmm {

struct MachineConfig {
  std::string kernel;  // arm64 Image or x86_64 bzImage (cold boot only)
  std::string initrd;  // cpio (the agent), optional (cold boot only)
  std::string rootfs;  // disk image for /dev/vda, optional
  bool rootfs_read_only = true;
  std::string cmdline;  // full kernel command line (cold boot only)
  uint32_t vcpus = 1;
  uint64_t mem_mib = 256;
  // Receives the guest's serial console output (any thread).
  std::function<void(const char*, size_t)> console;
};

// What restore() needs besides the config (vcpus, mem_mib, rootfs, console).
struct RestoreSpec {
  std::string ram_file;  // materialised RAM, mapped privately
  MachineState state;
  PlatformFacts platform;             // as recorded; the host must match it
  std::array<uint8_t, 16> spore_id{}; // identity the guest sees
  std::string working_set;            // page states to prefetch (vmm/spore/working_set.h), or empty
};

enum class ExitKind {
  kPoweroff,  // guest powered off (PSCI SYSTEM_OFF, ACPI S5)
  kReset,     // guest asked for a reboot (also how a guest kernel panic ends)
  kCrash,     // guest reported a crash
  kStopped,   // the host stopped it
  kError,     // the VMM failed (message says why)
};

struct MachineExit {
  ExitKind kind = ExitKind::kStopped;
  std::string message;
};

const char* exit_kind_name(ExitKind kind);

class Machine {
 public:
  // Cold boot: validates the config, builds the board and loads the kernel.
  // Errors are ready to show to a user.
  static Result<std::unique_ptr<Machine>> create(const MachineConfig& config);
  // From a spore: checks the platform contract first (refusing with a
  // message naming every difference), then puts back vCPUs, interrupt
  // controller and devices, and bumps the generation.
  static Result<std::unique_ptr<Machine>> restore(const MachineConfig& config, const RestoreSpec& spec);
  // Whether this backend can capture and restore spores (kUnavailable, with
  // a message saying so, when it cannot).
  static Status spores_supported();
  // The guest kernel's file name in an assets folder (share/spore).
  static const char* kernel_file_name();

  // Starts the I/O thread and the vCPUs. Once only.
  Status start();
  ~Machine();

  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  virtio::Vsock& vsock() { return *vsock_; }
  const GuestMemory& memory() const { return mem_; }
  const MachineConfig& config() const { return config_; }
  const PlatformFacts& platform() const { return platform_; }
  // RAM comes from a spore's file (restored) rather than anonymous memory.
  bool memory_is_file_backed() const { return restored_; }
  // Open host<->guest vsock connections (thread-safe).
  size_t vsock_connections();

  // Brings every vCPU out of the guest (completing any MMIO access in
  // flight) and parks the I/O thread, so nothing changes guest or device
  // state until unpause(). Fails if the machine exits meanwhile.
  Status pause();
  void unpause();
  // With the machine paused: everything but RAM.
  Result<MachineState> save_state();

  // Becomes readable (eventfd) once the machine has exited.
  int exit_fd() const { return exit_event_.get(); }
  std::optional<MachineExit> exit_status() const;
  // Blocks until the machine exits.
  MachineExit wait();
  // Blocks up to timeout_ms; nothing if it is still running.
  std::optional<MachineExit> wait_for(int timeout_ms);
  // Asks the machine to stop; wait() then reports kStopped (unless it
  // already exited on its own). Thread-safe, idempotent.
  void stop();

 private:
  Machine() = default;
  // Architecture-specific construction (vmm/arch/<arch>/machine.cc).
  Status build_vm(const MachineConfig& config, const std::string& ram_file);
  Status build_devices(const MachineConfig& config);
  Status load_boot_payload(const MachineConfig& config);
  Status restore_arch_state(const RestoreSpec& spec);
  Result<MachineState> save_arch_state();
  // An exit the shared run loop does not know (port I/O, x86 shutdown...):
  // false if the architecture does not know it either.
  bool handle_arch_exit(size_t index, kvm_run* run);

  size_t vsock_slot_index() const;
  void vcpu_loop(size_t index);
  void park_vcpu(size_t index);
  void finish(ExitKind kind, std::string message);
  void kick_all();
  void shutdown_threads();

  // Declaration order is teardown order reversed: threads are joined by the
  // destructor first, then devices go before the loop they registered with,
  // and the VM before the memory it maps.
  MachineConfig config_;
  PlatformFacts platform_;
  std::optional<kvm::Kvm> kvm_;
  GuestMemory mem_;
  std::optional<kvm::Vm> vm_;
  std::vector<kvm::Vcpu> vcpus_;
  std::unique_ptr<EventLoop> loop_;
  MmioBus bus_;
  // The architecture's own devices: interrupt controller, console, clock,
  // port I/O (defined in vmm/arch/<arch>/machine.cc).
  struct ArchDevices;
  struct ArchDevicesDeleter {
    void operator()(ArchDevices* d) const;
  };
  std::unique_ptr<ArchDevices, ArchDevicesDeleter> arch_;
  std::unique_ptr<GenerationDevice> generation_;
  std::vector<std::unique_ptr<virtio::MmioTransport>> virtio_;
  std::vector<uint32_t> virtio_slots_;
  virtio::Vsock* vsock_ = nullptr;  // owned by its transport

  std::string working_set_;
  std::thread prefetch_thread_;
  std::thread io_thread_;
  std::vector<std::thread> vcpu_threads_;
  std::vector<pthread_t> vcpu_handles_;
  std::atomic<bool> stopping_{false};
  bool restored_ = false;

  // Pausing: vCPU threads and the I/O thread park until released.
  std::mutex pause_mu_;
  std::condition_variable pause_cv_;
  std::atomic<bool> pause_requested_{false};
  size_t parked_vcpus_ = 0;
  bool io_parked_ = false;

  mutable std::mutex exit_mu_;
  std::condition_variable exit_cv_;
  std::optional<MachineExit> exit_;
  UniqueFd exit_event_;
};

}  // namespace spore::vmm
