// The interface between a virtio device model and its transport.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "base/result.h"
#include "vmm/devices/virtio/queue.h"
#include "vmm/memory.h"

namespace spore::vmm::virtio {

inline constexpr uint64_t kFeatureVersion1 = 1ull << 32;

enum DeviceType : uint32_t {
  kTypeBlock = 2,
  kTypeRng = 4,
  kTypeVsock = 19,
  kTypeFs = 26,
};

// Status register bits (virtio 1.x, 2.1).
inline constexpr uint32_t kStatusAcknowledge = 1;
inline constexpr uint32_t kStatusDriver = 2;
inline constexpr uint32_t kStatusDriverOk = 4;
inline constexpr uint32_t kStatusFeaturesOk = 8;
inline constexpr uint32_t kStatusNeedsReset = 64;
inline constexpr uint32_t kStatusFailed = 128;

// InterruptStatus bits.
inline constexpr uint32_t kInterruptVring = 1;
inline constexpr uint32_t kInterruptConfig = 2;

// An edge-triggered interrupt wire to the guest's interrupt controller.
class IrqLine {
 public:
  virtual ~IrqLine() = default;
  virtual void trigger() = 0;
};

// What a transport gives the device it carries. All calls require the
// transport lock, which the transport holds around every Device callback;
// device code running from its own event handlers takes it with lock().
class Transport {
 public:
  virtual ~Transport() = default;
  virtual std::mutex& lock() = 0;
  virtual const GuestMemory& memory() const = 0;
  virtual Queue& queue(size_t index) = 0;
  virtual uint64_t driver_features() const = 0;
  // Interrupts the guest for used buffers (honours the driver's suppression
  // flag for the queue).
  virtual void signal_used(size_t queue) = 0;
  // The guest broke the device protocol: stop it and ask for a reset.
  virtual void fail(const Error& why) = 0;
  // True once DRIVER_OK is set and the device has not failed.
  virtual bool live() const = 0;
};

class Device {
 public:
  virtual ~Device() = default;
  // Called once by the transport that carries this device.
  void bind(Transport& t) { transport_ = &t; }

  virtual uint32_t type() const = 0;
  virtual const char* name() const = 0;
  // Features offered, excluding VIRTIO_F_VERSION_1 (always offered).
  virtual uint64_t features() const = 0;
  virtual size_t queue_count() const = 0;
  virtual uint16_t queue_max_size() const { return 256; }
  // Device configuration space; bytes beyond its end read as zero.
  virtual void read_config(uint64_t offset, uint8_t* data, size_t len) const = 0;
  virtual void write_config(uint64_t, const uint8_t*, size_t) {}
  // DRIVER_OK: queues are validated; the device may start work.
  virtual Status activate(Transport& transport) = 0;
  // The driver reset the device: drop in-flight state, stop work.
  virtual void reset() = 0;
  // The driver made buffers available on queue q.
  virtual void notify(size_t q) = 0;

  // Device-specific state beyond the transport's, for spores (opaque bytes,
  // encoded next to the device). Called with the transport lock held.
  virtual std::string save_device_state() const { return {}; }
  virtual Status load_device_state(std::string_view data) {
    return data.empty() ? ok_status() : make_error(ErrorKind::kCorrupt, "unexpected device state");
  }

 protected:
  Transport* transport_ = nullptr;
};

// The loop every request queue runs: pops each available chain, lets
// handle() serve it (returning the bytes written into the chain, or an
// error that breaks the device), returns it as used, and interrupts the
// guest once at the end if anything was used.
template <class Handler>
void serve_queue(Transport& t, size_t q, Handler&& handle) {
  const GuestMemory& mem = t.memory();
  Queue& queue = t.queue(q);
  bool used = false;
  for (;;) {
    auto next = queue.pop(mem);
    if (!next.ok()) {
      t.fail(next.error());
      return;
    }
    if (!*next) break;
    Result<uint32_t> written = handle(**next);
    if (!written.ok()) {
      t.fail(written.error());
      return;
    }
    if (auto s = queue.push_used(mem, (*next)->head, *written); !s.ok()) {
      t.fail(s.error());
      return;
    }
    used = true;
  }
  if (used) t.signal_used(q);
}

// Copies [offset, offset+len) of a config struct, zero-filling past its end.
void read_config_bytes(const void* config, size_t config_size, uint64_t offset, uint8_t* data, size_t len);

}  // namespace spore::vmm::virtio
