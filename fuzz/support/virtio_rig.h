// A hostile guest for the virtio targets: one device on a real MmioTransport
// over 64 KiB of fake guest RAM, driven by a program the fuzzer writes.
// Every operation is something a guest can do: MMIO register accesses,
// writes to its own RAM (descriptors, rings, buffers), queue notifications.
// A few operations do in one step what a driver does in many (negotiate and
// set up every queue; publish a descriptor chain), so that the fuzzer
// reaches a live device quickly; after that anything goes, including
// rewriting the rings behind the device's back.
//
// Program: a sequence of operations, each an opcode byte and its operands
// (fuzz::Input: short input reads as zeros). Seeds are built with
// VirtioProgram, which writes the same encoding.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "base/codec.h"
#include "fuzz/support/fuzz.h"
#include "vmm/devices/virtio/mmio.h"
#include "vmm/event_loop.h"
#include "vmm/memory.h"

namespace spore::fuzz {

inline constexpr uint64_t kRamBase = 0x4000'0000;
inline constexpr uint64_t kRamSize = 64 << 10;
// Rings of queue q live at q * kRingStride (desc, then avail at +0x200,
// used at +0x400); buffers from kDataOffset up.
inline constexpr uint64_t kRingStride = 0x1000;
inline constexpr uint64_t kDataOffset = 0x4000;
inline constexpr uint16_t kMaxQueueSize = 16;

enum VirtioOp : uint8_t {
  kOpMmioWrite = 0,   // u16 offset, u8 len code, u64 value
  kOpMmioRead,        // u16 offset, u8 len code
  kOpInit,            // u64 driver features, u8 queue size code, u8 flags (bit 0: skip DRIVER_OK)
  kOpRamWrite,        // u16 offset, str8 bytes
  kOpChain,           // u8 queue, u8 count, then per descriptor: u16 data offset, u16 len, u8 flags, str8 bytes
  kOpRawDesc,         // u8 queue, u8 index, u64 addr, u32 len, u16 flags, u16 next
  kOpPublish,         // u8 queue, u16 head: put head in the avail ring and bump avail->idx
  kOpAvailIdx,        // u8 queue, u16 avail->idx, u16 avail->flags
  kOpKick,            // u8 queue: QueueNotify, then run the device's event loop
  kOpPoll,            // run the event loop
  kOpSnapshotRestore, // snapshot, encode, decode, restore onto a fresh device (the spore path)
  kOpRestoreRaw,      // str16: a TransportSnapshot as a spore's state.bin holds it, restored onto a fresh device
  kOpDevice,          // device-specific operation (the target's DeviceOps)
  kOpCount
};

class CountingIrq final : public vmm::virtio::IrqLine {
 public:
  explicit CountingIrq(uint64_t* n) : n_(n) {}
  void trigger() override { (*n_)++; }

 private:
  uint64_t* n_;
};

// 64 KiB of RAM, reused across inputs (zeroed for each). On the heap, so
// that ASan's redzones catch a device reaching past the end of RAM.
inline uint8_t* ram_buffer() {
  static uint8_t* ram = new uint8_t[kRamSize];
  return ram;
}

// What a target supplies: how to make its device, and its own operations.
struct DeviceOps {
  std::function<std::unique_ptr<vmm::virtio::Device>(vmm::EventLoop&)> make;
  // Called with the program positioned after kOpDevice's opcode.
  std::function<void(Input&, class VirtioRig&)> op;
  // After a restore onto a fresh device (e.g. vsock's transport reset).
  std::function<void(class VirtioRig&)> after_restore;
};

class VirtioRig {
 public:
  explicit VirtioRig(const DeviceOps& ops) : ops_(ops) {
    ram_ = ram_buffer();
    std::memset(ram_, 0, kRamSize);
    mem_.add_borrowed_region(kRamBase, ram_, kRamSize);
    auto loop = vmm::EventLoop::create();
    if (!loop.ok()) fail("EventLoop::create", loop.error().message);
    loop_ = std::move(*loop);
    transport_ = make_transport();
  }
  ~VirtioRig() {
    // The device goes before the loop its handlers are registered on.
    transport_.reset();
  }

  vmm::virtio::MmioTransport& transport() { return *transport_; }
  vmm::virtio::Device& device() { return transport_->device(); }
  vmm::EventLoop& loop() { return *loop_; }
  const vmm::GuestMemory& mem() const { return mem_; }
  uint8_t* ram() { return ram_; }

  // Runs the whole program (at most 256 operations), or one operation.
  void run(Input& in) {
    for (int steps = 0; !in.empty() && steps < 256; steps++) run_one(in);
    poll();
  }
  void run_one(Input& in);

  void poll() {
    for (int i = 0; i < 4; i++) loop_->run_once(0);
  }

  void mmio_write(uint64_t off, uint64_t value, size_t len) {
    uint8_t d[8];
    std::memcpy(d, &value, 8);
    transport_->mmio_write(off, d, len);
  }
  uint32_t mmio_read32(uint64_t off) {
    uint8_t d[4];
    transport_->mmio_read(off, d, 4);
    uint32_t v;
    std::memcpy(&v, d, 4);
    return v;
  }

  // Publishes a chain of (gpa, len, writable) descriptors on queue q, from
  // the next free slot of the harness's own ring layout.
  struct Desc {
    uint64_t gpa;
    uint32_t len;
    uint16_t flags;  // NEXT is filled in
  };
  void publish_chain(uint32_t q, const std::vector<Desc>& descs) {
    if (q >= 3 || descs.empty()) return;
    const uint16_t size = ring_size_[q] ? ring_size_[q] : kMaxQueueSize;
    uint16_t head = next_desc_[q];
    for (size_t i = 0; i < descs.size(); i++) {
      uint16_t idx = static_cast<uint16_t>((head + i) % size);
      uint16_t flags = static_cast<uint16_t>(descs[i].flags & ~1u) | (i + 1 < descs.size() ? 1 : 0);
      write_desc(q, idx, descs[i].gpa, descs[i].len, flags, static_cast<uint16_t>((idx + 1) % size));
    }
    next_desc_[q] = static_cast<uint16_t>((head + descs.size()) % size);
    publish(q, head);
  }
  void kick(uint32_t q) {
    mmio_write(vmm::virtio::kMmioQueueNotify, q, 4);
    poll();
  }
  // A place in the data area, chosen by the program.
  uint64_t data_gpa(uint16_t off) const { return kRamBase + kDataOffset + off % (kRamSize - kDataOffset); }
  // The next len bytes of the data area (wrapping around), for buffers the
  // harness lays out itself. len is capped to the data area.
  uint64_t alloc(uint32_t len) {
    const uint64_t area = kRamSize - kDataOffset;
    if (len > area) len = static_cast<uint32_t>(area);
    if (bump_ + len > area) bump_ = 0;
    uint64_t at = kRamBase + kDataOffset + bump_;
    bump_ = (bump_ + len + 15) & ~uint64_t{15};
    return at;
  }
  void put(uint64_t gpa, std::string_view bytes) {
    uint8_t* p = mem_.ptr(gpa, bytes.size());
    if (p) std::memcpy(p, bytes.data(), bytes.size());
  }
  // Bytes at gpa (for harness checks), empty if out of range.
  std::string get(uint64_t gpa, size_t len) const {
    const uint8_t* p = mem_.ptr(gpa, len);
    return p ? std::string(reinterpret_cast<const char*>(p), len) : std::string();
  }

  uint64_t irqs() const { return irqs_; }

 private:
  std::unique_ptr<vmm::virtio::MmioTransport> make_transport() {
    auto t = vmm::virtio::MmioTransport::create(ops_.make(*loop_), mem_, *loop_, std::make_unique<CountingIrq>(&irqs_));
    if (!t.ok()) fail("MmioTransport::create", t.error().message);
    return std::move(*t);
  }

  static size_t len_code(uint8_t c) {
    static constexpr size_t kLens[4] = {4, 1, 2, 8};
    return kLens[c % 4];
  }
  uint64_t desc_gpa(uint32_t q) const { return kRamBase + q * kRingStride; }
  uint64_t avail_gpa(uint32_t q) const { return desc_gpa(q) + 0x200; }
  uint64_t used_gpa(uint32_t q) const { return desc_gpa(q) + 0x400; }

  void write_desc(uint32_t q, uint16_t idx, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    uint8_t* d = mem_.ptr(desc_gpa(q) + 16ull * (idx % kMaxQueueSize), 16);
    std::memcpy(d, &addr, 8);
    std::memcpy(d + 8, &len, 4);
    std::memcpy(d + 12, &flags, 2);
    std::memcpy(d + 14, &next, 2);
  }
  void publish(uint32_t q, uint16_t head) {
    const uint16_t size = ring_size_[q] ? ring_size_[q] : kMaxQueueSize;
    uint8_t* avail = mem_.ptr(avail_gpa(q), 4 + 2 * kMaxQueueSize);
    uint16_t idx;
    std::memcpy(&idx, avail + 2, 2);
    std::memcpy(avail + 4 + 2 * (idx % size), &head, 2);
    idx++;
    __atomic_store_n(reinterpret_cast<uint16_t*>(avail + 2), idx, __ATOMIC_RELEASE);
  }

  void init(uint64_t features, uint8_t size_code, uint8_t flags) {
    using namespace vmm::virtio;
    mmio_write(0x70, 0, 4);
    mmio_write(0x70, kStatusAcknowledge, 4);
    mmio_write(0x70, kStatusAcknowledge | kStatusDriver, 4);
    // Features: what the device offers, unless the program asks otherwise.
    uint64_t offered = mmio_read32(0x10);
    mmio_write(0x14, 1, 4);
    offered |= static_cast<uint64_t>(mmio_read32(0x10)) << 32;
    mmio_write(0x14, 0, 4);
    uint64_t want = features ? features : offered;
    mmio_write(0x24, 0, 4);
    mmio_write(0x20, static_cast<uint32_t>(want), 4);
    mmio_write(0x24, 1, 4);
    mmio_write(0x20, static_cast<uint32_t>(want >> 32), 4);
    mmio_write(0x70, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk, 4);
    const uint16_t size = static_cast<uint16_t>(1u << (size_code % 5));  // 1..16
    for (uint32_t q = 0; q < transport_->queue_count() && q < 3; q++) {
      mmio_write(0x30, q, 4);
      mmio_write(0x38, size, 4);
      mmio_write(0x80, static_cast<uint32_t>(desc_gpa(q)), 4);
      mmio_write(0x84, 0, 4);
      mmio_write(0x90, static_cast<uint32_t>(avail_gpa(q)), 4);
      mmio_write(0x94, 0, 4);
      mmio_write(0xa0, static_cast<uint32_t>(used_gpa(q)), 4);
      mmio_write(0xa4, 0, 4);
      mmio_write(0x44, 1, 4);
      ring_size_[q] = size;
      next_desc_[q] = 0;
    }
    if (!(flags & 1)) mmio_write(0x70, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk, 4);
  }

  // A spore's restore: the snapshot goes onto a fresh device and transport.
  void restore_onto_fresh(const vmm::virtio::TransportSnapshot& snap) {
    poll();  // work the old device posted to the loop runs before it goes
    auto fresh = make_transport();
    if (!fresh->restore(snap).ok()) return;  // refused: the running device stays
    transport_ = std::move(fresh);  // the old device and its host connections go
    if (ops_.after_restore) {
      std::lock_guard<std::mutex> g(transport_->lock());
      ops_.after_restore(*this);
    }
    transport_->kick_all();
    poll();
  }

  void step(Input& in) {
    using namespace vmm::virtio;
    switch (in.u8() % kOpCount) {
      case kOpMmioWrite: {
        uint64_t off = in.u16() % kMmioSize;
        size_t len = len_code(in.u8());
        uint64_t v = in.u64();
        if (off + len <= kMmioSize) mmio_write(off, v, len);
        break;
      }
      case kOpMmioRead: {
        uint64_t off = in.u16() % kMmioSize;
        size_t len = len_code(in.u8());
        uint8_t d[8];
        std::memset(d, 0xa5, sizeof d);
        if (off + len <= kMmioSize) transport_->mmio_read(off, d, len);
        break;
      }
      case kOpInit: {
        uint64_t f = in.u64();
        uint8_t size = in.u8();
        uint8_t flags = in.u8();
        init(f, size, flags);
        break;
      }
      case kOpRamWrite: {
        uint16_t off = in.u16();
        std::string b = in.str8();
        if (off + b.size() <= kRamSize) std::memcpy(ram_ + off, b.data(), b.size());
        break;
      }
      case kOpChain: {
        uint32_t q = in.u8() % 3;
        size_t n = 1 + in.u8() % 8;
        std::vector<Desc> descs;
        for (size_t i = 0; i < n; i++) {
          uint64_t gpa = data_gpa(in.u16());
          uint32_t len = in.u16();
          uint16_t flags = in.u8() & 0x7;  // NEXT, WRITE, INDIRECT
          std::string b = in.str8();
          put(gpa, b.substr(0, len));
          descs.push_back({gpa, len, flags});
        }
        publish_chain(q, descs);
        break;
      }
      case kOpRawDesc: {
        uint32_t q = in.u8() % 3;
        uint16_t idx = in.u8();
        uint64_t addr = in.u64();
        uint32_t len = in.u32();
        uint16_t flags = in.u16();
        uint16_t next = in.u16();
        write_desc(q, idx, addr, len, flags, next);
        break;
      }
      case kOpPublish: {
        uint32_t q = in.u8() % 3;
        publish(q, in.u16());
        break;
      }
      case kOpAvailIdx: {
        uint32_t q = in.u8() % 3;
        uint16_t idx = in.u16(), flags = in.u16();
        uint8_t* avail = mem_.ptr(avail_gpa(q), 4);
        std::memcpy(avail, &flags, 2);
        std::memcpy(avail + 2, &idx, 2);
        break;
      }
      case kOpKick:
        kick(in.u8() % 4);  // queue 3 does not exist
        break;
      case kOpPoll:
        poll();
        break;
      case kOpSnapshotRestore: {
        TransportSnapshot snap = transport_->snapshot();
        Encoder e;
        MmioTransport::save(e, snap);
        std::string bytes = e.take();
        Decoder d(bytes);
        auto back = MmioTransport::load(d);
        check(back.ok() && d.done(), "a transport snapshot does not decode back");
        restore_onto_fresh(*back);
        break;
      }
      case kOpRestoreRaw: {
        std::string bytes = in.str16();
        Decoder d(bytes);
        auto snap = MmioTransport::load(d);
        if (snap.ok()) restore_onto_fresh(*snap);
        break;
      }
      case kOpDevice:
        if (ops_.op) ops_.op(in, *this);
        break;
    }
  }

  DeviceOps ops_;
  uint8_t* ram_ = nullptr;
  vmm::GuestMemory mem_;
  std::unique_ptr<vmm::EventLoop> loop_;
  std::unique_ptr<vmm::virtio::MmioTransport> transport_;
  uint64_t irqs_ = 0;
  uint16_t ring_size_[3] = {};
  uint16_t next_desc_[3] = {};
  uint64_t bump_ = 0;
};

inline void VirtioRig::run_one(Input& in) { step(in); }

// Writes programs in the rig's encoding (for seeds).
class VirtioProgram {
 public:
  VirtioProgram& init(uint64_t features = 0, uint8_t size_code = 4, uint8_t flags = 0) {
    o_.u8(kOpInit).u64(features).u8(size_code).u8(flags);
    return *this;
  }
  struct Buf {
    uint16_t off;  // in the data area
    uint16_t len;
    bool writable;
    std::string bytes;
  };
  VirtioProgram& chain(uint8_t q, const std::vector<Buf>& bufs) {
    o_.u8(kOpChain).u8(q).u8(static_cast<uint8_t>(bufs.size() - 1));
    for (const auto& b : bufs) o_.u16(b.off).u16(b.len).u8(b.writable ? 2 : 0).str8(b.bytes);
    return *this;
  }
  VirtioProgram& kick(uint8_t q) {
    o_.u8(kOpKick).u8(q);
    return *this;
  }
  VirtioProgram& mmio_write(uint16_t off, uint64_t v, uint8_t len_code = 0) {
    o_.u8(kOpMmioWrite).u16(off).u8(len_code).u64(v);
    return *this;
  }
  VirtioProgram& mmio_read(uint16_t off, uint8_t len_code = 0) {
    o_.u8(kOpMmioRead).u16(off).u8(len_code);
    return *this;
  }
  VirtioProgram& raw_desc(uint8_t q, uint8_t idx, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    o_.u8(kOpRawDesc).u8(q).u8(idx).u64(addr).u32(len).u16(flags).u16(next);
    return *this;
  }
  VirtioProgram& publish(uint8_t q, uint16_t head) {
    o_.u8(kOpPublish).u8(q).u16(head);
    return *this;
  }
  VirtioProgram& avail_idx(uint8_t q, uint16_t idx, uint16_t flags = 0) {
    o_.u8(kOpAvailIdx).u8(q).u16(idx).u16(flags);
    return *this;
  }
  VirtioProgram& snapshot_restore() {
    o_.u8(kOpSnapshotRestore);
    return *this;
  }
  VirtioProgram& restore_raw(std::string_view bytes) {
    o_.u8(kOpRestoreRaw).str16(bytes);
    return *this;
  }
  VirtioProgram& poll() {
    o_.u8(kOpPoll);
    return *this;
  }
  // A device operation: the opcode, then whatever the target reads.
  Output& device() { return o_.u8(kOpDevice); }
  const std::string& str() const { return o_.str(); }

 private:
  Output o_;
};

}  // namespace spore::fuzz
