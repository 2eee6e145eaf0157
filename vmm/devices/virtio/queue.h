// Split virtqueues (virtio 1.x, section 2.7), device side.
//
// The guest owns the rings and may change them at any moment, so every index,
// address and length is checked, each descriptor is copied out once, and a
// malformed chain is reported as an error: the device then stops using the
// queue and asks the driver for a reset instead of guessing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/codec.h"
#include "base/result.h"
#include "vmm/memory.h"

namespace spore::vmm::virtio {

inline constexpr uint16_t kDescFlagNext = 1;
inline constexpr uint16_t kDescFlagWrite = 2;
inline constexpr uint16_t kDescFlagIndirect = 4;
inline constexpr uint16_t kAvailFlagNoInterrupt = 1;

struct Segment {
  uint64_t gpa = 0;
  uint32_t len = 0;
};

// One validated descriptor chain: device-readable segments, then writable ones.
struct DescChain {
  uint16_t head = 0;
  std::vector<Segment> readable;
  std::vector<Segment> writable;
  uint64_t readable_len = 0;
  uint64_t writable_len = 0;
};

// The queue's registers as the driver programs them through the transport,
// and the device's progress through the rings. Plain data: it is what a
// snapshot of the queue saves.
struct QueueState {
  uint16_t max_size = 256;
  uint16_t size = 0;
  bool ready = false;
  uint64_t desc_addr = 0;
  uint64_t avail_addr = 0;
  uint64_t used_addr = 0;
  uint16_t next_avail = 0;
  uint16_t next_used = 0;
};

void save_queue_state(Encoder& e, const QueueState& s);
// Loads and sanity-checks what can be checked without guest memory; the
// transport validates ring placement against RAM on restore.
Result<QueueState> load_queue_state(Decoder& d);

class Queue {
 public:
  explicit Queue(uint16_t max_size = 256) { s_.max_size = max_size; }

  QueueState& state() { return s_; }
  const QueueState& state() const { return s_; }

  // Back to the power-on state (keeps max_size).
  void reset();

  // Checks size and ring placement against guest memory; the device calls it
  // before first use. An error names what is wrong.
  Status validate(const GuestMemory& mem) const;

  // The next available chain, nothing if the ring is empty, or an error if
  // the guest published garbage.
  Result<std::optional<DescChain>> pop(const GuestMemory& mem);

  // Returns a chain to the driver with the number of bytes written into it.
  Status push_used(const GuestMemory& mem, uint16_t head, uint32_t written);

  // Whether the driver wants an interrupt for used buffers now.
  bool needs_interrupt(const GuestMemory& mem) const;

  // Available entries not yet popped (bounded by size, or 0 if garbage).
  uint16_t pending(const GuestMemory& mem) const;
  // The driver's avail->idx as it is now.
  uint16_t avail_idx(const GuestMemory& mem) const;

 private:
  QueueState s_;
};

// Reads sequentially across a chain's readable segments.
class ChainReader {
 public:
  ChainReader(const GuestMemory& mem, const DescChain& chain) : mem_(mem), chain_(chain) {}
  // Copies exactly len bytes or fails (leaving the position undefined).
  bool read(void* dst, size_t len);
  bool skip(size_t len) { return read(nullptr, len); }
  uint64_t remaining() const { return chain_.readable_len - consumed_; }

 private:
  const GuestMemory& mem_;
  const DescChain& chain_;
  size_t seg_ = 0;
  uint32_t seg_off_ = 0;
  uint64_t consumed_ = 0;
};

// Writes sequentially across a chain's writable segments.
class ChainWriter {
 public:
  ChainWriter(const GuestMemory& mem, const DescChain& chain) : mem_(mem), chain_(chain) {}
  bool write(const void* src, size_t len);
  uint64_t written() const { return written_; }
  uint64_t remaining() const { return chain_.writable_len - written_; }
  // Host pointer and length of the largest contiguous span at the current
  // position (for reading straight into guest memory); advance() commits.
  std::pair<uint8_t*, size_t> span(size_t max_len) const;
  void advance(size_t len);

 private:
  const GuestMemory& mem_;
  const DescChain& chain_;
  size_t seg_ = 0;
  uint32_t seg_off_ = 0;
  uint64_t written_ = 0;
};

}  // namespace spore::vmm::virtio
