// A running virtual machine: guest memory, vCPU threads, devices, and the
// I/O thread that serves them. Machine::boot() builds one for a cold boot
// (kernel + initrd + rootfs); restoring from a spore is a separate
// constructor (see vmm/spore/).
#pragma once

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
#include "vmm/devices/mmio_bus.h"
#include "vmm/devices/rtc.h"
#include "vmm/devices/serial.h"
#include "vmm/devices/virtio/mmio.h"
#include "vmm/devices/virtio/vsock.h"
#include "vmm/event_loop.h"
#include "vmm/kvm/kvm.h"
#include "vmm/memory.h"

namespace spore::vmm {

struct MachineConfig {
  std::string kernel;  // arm64 Image
  std::string initrd;  // cpio (the agent), optional
  std::string rootfs;  // disk image for /dev/vda, optional
  bool rootfs_read_only = true;
  std::string cmdline;  // full kernel command line
  uint32_t vcpus = 1;
  uint64_t mem_mib = 256;
  // Receives the guest's serial console output (any thread).
  std::function<void(const char*, size_t)> console;
};

enum class ExitKind {
  kPoweroff,  // guest powered off (PSCI SYSTEM_OFF)
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
  // Cold boot: validates the config, builds the board and loads the kernel,
  // without running it yet (so host listeners can be set up first). Errors
  // are ready to show to a user.
  static Result<std::unique_ptr<Machine>> create(const MachineConfig& config);
  // Starts the I/O thread and the vCPUs. Once only.
  Status start();
  ~Machine();

  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  virtio::Vsock& vsock() { return *vsock_; }
  const GuestMemory& memory() const { return mem_; }

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
  Status build(const MachineConfig& config);  // architecture-specific
  void vcpu_loop(size_t index);
  void finish(ExitKind kind, std::string message);
  void kick_all();
  void shutdown_threads();

  // Declaration order is teardown order reversed: threads are joined by the
  // destructor first, then devices go before the loop they registered with,
  // and the VM before the memory it maps.
  std::optional<kvm::Kvm> kvm_;
  GuestMemory mem_;
  std::optional<kvm::Vm> vm_;
  std::vector<kvm::Vcpu> vcpus_;
  UniqueFd irqchip_;
  std::unique_ptr<EventLoop> loop_;
  MmioBus bus_;
  std::unique_ptr<Pl011> uart_;
  std::unique_ptr<Pl031> rtc_;
  std::vector<std::unique_ptr<virtio::MmioTransport>> virtio_;
  virtio::Vsock* vsock_ = nullptr;  // owned by its transport

  std::thread io_thread_;
  std::vector<std::thread> vcpu_threads_;
  std::vector<pthread_t> vcpu_handles_;
  std::atomic<bool> stopping_{false};

  mutable std::mutex exit_mu_;
  std::condition_variable exit_cv_;
  std::optional<MachineExit> exit_;
  UniqueFd exit_event_;
};

}  // namespace spore::vmm
