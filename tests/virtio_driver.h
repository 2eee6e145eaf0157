// A minimal virtio driver for unit tests: programs a real MmioTransport
// through its registers the way Linux does, lays out split rings in a test
// GuestMemory, and posts and collects buffers. It also lets tests publish
// malformed rings on purpose.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "base/fd.h"
#include "vmm/devices/virtio/mmio.h"
#include "vmm/event_loop.h"
#include "vmm/memory.h"

namespace spore::test {

class CountingIrq final : public vmm::virtio::IrqLine {
 public:
  explicit CountingIrq(int* counter) : counter_(counter) {}
  void trigger() override { (*counter_)++; }

 private:
  int* counter_;
};

struct Buf {
  uint64_t gpa;
  uint32_t len;
  bool writable;
};

class TestGuest {
 public:
  static constexpr uint64_t kBase = 0x4000'0000;
  static constexpr uint64_t kSize = 8 << 20;

  TestGuest() {
    auto m = vmm::GuestMemory::create_anonymous(kBase, kSize);
    mem = std::move(*m);
    auto l = vmm::EventLoop::create();
    loop = std::move(*l);
  }
  // Bump allocator for guest buffers.
  uint64_t alloc(uint64_t len, uint64_t align = 16) {
    next_ = (next_ + align - 1) & ~(align - 1);
    uint64_t at = next_;
    next_ += len;
    return at;
  }
  uint8_t* host(uint64_t gpa) { return mem.ptr(gpa, 0); }
  void poll() {
    for (int i = 0; i < 8; i++) loop->run_once(0);
  }

  vmm::GuestMemory mem;
  std::unique_ptr<vmm::EventLoop> loop;

 private:
  uint64_t next_ = kBase + 0x1000;
};

class TestDriver {
 public:
  TestDriver(TestGuest& g, vmm::virtio::MmioTransport& t) : g_(g), t_(t) {}

  uint32_t reg(uint64_t off) {
    uint8_t d[4];
    t_.mmio_read(off, d, 4);
    uint32_t v;
    std::memcpy(&v, d, 4);
    return v;
  }
  void set(uint64_t off, uint32_t v) {
    uint8_t d[4];
    std::memcpy(d, &v, 4);
    t_.mmio_write(off, d, 4);
  }

  // ACKNOWLEDGE, DRIVER, features, FEATURES_OK; then queues; then DRIVER_OK.
  void begin(uint64_t features = 1ull << 32) {
    set(0x70, 0);
    set(0x70, 1);
    set(0x70, 3);
    set(0x24, 0);
    set(0x20, static_cast<uint32_t>(features));
    set(0x24, 1);
    set(0x20, static_cast<uint32_t>(features >> 32));
    set(0x70, 3 | 8);
  }
  void setup_queue(uint32_t q, uint16_t size) {
    Ring r;
    r.size = size;
    r.desc = g_.alloc(16ull * size, 16);
    r.avail = g_.alloc(6 + 2ull * size, 2);
    r.used = g_.alloc(6 + 8ull * size, 4);
    std::memset(g_.host(r.desc), 0, 16ull * size);
    std::memset(g_.host(r.avail), 0, 6 + 2ull * size);
    std::memset(g_.host(r.used), 0, 6 + 8ull * size);
    set(0x30, q);
    set(0x38, size);
    set(0x80, static_cast<uint32_t>(r.desc));
    set(0x84, static_cast<uint32_t>(r.desc >> 32));
    set(0x90, static_cast<uint32_t>(r.avail));
    set(0x94, static_cast<uint32_t>(r.avail >> 32));
    set(0xa0, static_cast<uint32_t>(r.used));
    set(0xa4, static_cast<uint32_t>(r.used >> 32));
    set(0x44, 1);
    if (rings_.size() <= q) rings_.resize(q + 1);
    rings_[q] = r;
  }
  void driver_ok() { set(0x70, 3 | 8 | 4); }
  uint32_t status() { return reg(0x70); }

  // Writes a descriptor chain into free slots and publishes it. Returns the head.
  uint16_t add(uint32_t q, const std::vector<Buf>& bufs) {
    Ring& r = rings_[q];
    uint16_t head = r.next_desc;
    for (size_t i = 0; i < bufs.size(); i++) {
      uint16_t idx = static_cast<uint16_t>((head + i) % r.size);
      uint16_t flags = (bufs[i].writable ? 2 : 0) | (i + 1 < bufs.size() ? 1 : 0);
      write_desc(q, idx, bufs[i].gpa, bufs[i].len, flags, static_cast<uint16_t>((idx + 1) % r.size));
    }
    r.next_desc = static_cast<uint16_t>((head + bufs.size()) % r.size);
    publish(q, head);
    return head;
  }
  void write_desc(uint32_t q, uint16_t idx, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    uint8_t* d = g_.host(rings_[q].desc + 16ull * idx);
    std::memcpy(d, &addr, 8);
    std::memcpy(d + 8, &len, 4);
    std::memcpy(d + 12, &flags, 2);
    std::memcpy(d + 14, &next, 2);
  }
  // Puts head in the available ring and bumps avail->idx.
  void publish(uint32_t q, uint16_t head) {
    Ring& r = rings_[q];
    uint16_t idx;
    std::memcpy(&idx, g_.host(r.avail + 2), 2);
    std::memcpy(g_.host(r.avail + 4 + 2ull * (idx % r.size)), &head, 2);
    idx++;
    std::memcpy(g_.host(r.avail + 2), &idx, 2);
  }
  void set_avail_idx(uint32_t q, uint16_t idx) { std::memcpy(g_.host(rings_[q].avail + 2), &idx, 2); }
  void kick(uint32_t q) {
    uint8_t d[4];
    std::memcpy(d, &q, 4);
    t_.mmio_write(0x50, d, 4);
    g_.poll();
  }
  // Used entries not yet collected: (id, len).
  std::vector<std::pair<uint32_t, uint32_t>> used(uint32_t q) {
    Ring& r = rings_[q];
    uint16_t idx;
    std::memcpy(&idx, g_.host(r.used + 2), 2);
    std::vector<std::pair<uint32_t, uint32_t>> out;
    while (r.last_used != idx) {
      uint8_t* e = g_.host(r.used + 4 + 8ull * (r.last_used % r.size));
      uint32_t id, len;
      std::memcpy(&id, e, 4);
      std::memcpy(&len, e + 4, 4);
      out.emplace_back(id, len);
      r.last_used++;
    }
    return out;
  }

 private:
  struct Ring {
    uint16_t size = 0;
    uint64_t desc = 0, avail = 0, used = 0;
    uint16_t next_desc = 0;
    uint16_t last_used = 0;
  };
  TestGuest& g_;
  vmm::virtio::MmioTransport& t_;
  std::vector<Ring> rings_;
};

}  // namespace spore::test
