// virtio-mmio transport, version 2 (virtio 1.x, section 4.2).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/fd.h"
#include "vmm/devices/mmio_bus.h"
#include "vmm/devices/virtio/device.h"
#include "vmm/event_loop.h"

namespace spore::vmm::virtio {

inline constexpr uint64_t kMmioSize = 0x200;
inline constexpr uint64_t kMmioQueueNotify = 0x50;

// Register file of the transport: what a snapshot of it records.
struct MmioState {
  uint32_t status = 0;
  uint32_t device_features_sel = 0;
  uint32_t driver_features_sel = 0;
  uint64_t driver_features = 0;
  uint32_t queue_sel = 0;
  uint32_t interrupt_status = 0;
  uint32_t config_generation = 0;
};

// Everything needed to put a transport back as it was.
struct TransportSnapshot {
  MmioState mmio;
  bool activated = false;
  std::vector<QueueState> queues;
  std::string device_state;  // Device::save_device_state()
};

class MmioTransport final : public MmioDevice, public Transport {
 public:
  // Queue notifications arrive on per-queue eventfds watched by loop; the VM
  // may register them as KVM ioeventfds on notify_address() so a guest kick
  // never leaves the kernel.
  static Result<std::unique_ptr<MmioTransport>> create(std::unique_ptr<Device> device,
                                                       const GuestMemory& mem, EventLoop& loop,
                                                       std::unique_ptr<IrqLine> irq);
  ~MmioTransport() override;

  Device& device() { return *device_; }
  // eventfd the guest's write of value q to QueueNotify should signal.
  int notify_fd(size_t q) const { return notify_fds_[q].get(); }
  size_t queue_count() const { return queues_.size(); }

  // MmioDevice
  void mmio_read(uint64_t offset, uint8_t* data, size_t len) override;
  void mmio_write(uint64_t offset, const uint8_t* data, size_t len) override;

  // Transport
  std::mutex& lock() override { return mu_; }
  const GuestMemory& memory() const override { return mem_; }
  Queue& queue(size_t index) override { return queues_[index]; }
  uint64_t driver_features() const override { return st_.driver_features; }
  void signal_used(size_t queue) override;
  void fail(const Error& why) override;
  bool live() const override;

  MmioState state() const;

  TransportSnapshot snapshot();
  // Restores a snapshot onto a freshly created transport: queue layout is
  // checked against guest memory and a device that was live is activated
  // again. Errors mean the snapshot cannot be trusted.
  Status restore(const TransportSnapshot& snap);
  static void save(Encoder& e, const TransportSnapshot& s);
  static Result<TransportSnapshot> load(Decoder& d);
  // Lets the device look at every queue once (after a restore the guest may
  // have published buffers that were never seen).
  void kick_all();

 private:
  MmioTransport(std::unique_ptr<Device> device, const GuestMemory& mem, std::unique_ptr<IrqLine> irq);
  uint64_t offered_features() const { return device_->features() | kFeatureVersion1; }
  uint32_t read_reg(uint64_t offset);
  void write_reg(uint64_t offset, uint32_t value);
  void write_status(uint32_t value);
  void reset_locked();
  void on_notify(size_t q);

  std::mutex mu_;
  std::unique_ptr<Device> device_;
  const GuestMemory& mem_;
  std::unique_ptr<IrqLine> irq_;
  EventLoop* loop_ = nullptr;
  std::vector<Queue> queues_;
  std::vector<UniqueFd> notify_fds_;
  std::vector<EventLoop::HandlerId> notify_handlers_;
  MmioState st_;
  bool activated_ = false;
};

}  // namespace spore::vmm::virtio
