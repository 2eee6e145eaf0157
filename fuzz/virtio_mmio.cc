// The virtio-mmio transport: register file, status and feature
// negotiation, queue setup and validation, notifications, snapshot and
// restore, with a small device behind it that serves its two queues
// (reads every readable byte, fills every writable one). The guest is
// the fuzzer (fuzz/support/virtio_rig.h).
#include "fuzz/support/virtio_rig.h"

using namespace spore;
using namespace spore::fuzz;
using namespace spore::vmm::virtio;

namespace {

class EchoDevice final : public Device {
 public:
  uint32_t type() const override { return 0x7f; }
  const char* name() const override { return "fuzz"; }
  uint64_t features() const override { return (1ull << 0) | (1ull << 5); }
  size_t queue_count() const override { return 2; }
  uint16_t queue_max_size() const override { return kMaxQueueSize; }
  void read_config(uint64_t offset, uint8_t* data, size_t len) const override {
    read_config_bytes(config_, sizeof config_, offset, data, len);
  }
  void write_config(uint64_t offset, const uint8_t* data, size_t len) override {
    if (offset < sizeof config_) std::memcpy(config_ + offset, data, std::min<uint64_t>(len, sizeof config_ - offset));
  }
  // The driver can make activation fail (a device that refuses its setup).
  Status activate(Transport&) override {
    if (config_[0] == 0xff) return make_error(ErrorKind::kGuest, "refused");
    return ok_status();
  }
  void reset() override {}
  void notify(size_t q) override {
    if (q >= 2 || !transport_) return;
    const vmm::GuestMemory& mem = transport_->memory();
    serve_queue(*transport_, q, [&](const DescChain& chain) -> Result<uint32_t> {
      for (const auto& s : chain.readable) check(mem.contains(s.gpa, s.len), "readable segment outside RAM");
      for (const auto& s : chain.writable) check(mem.contains(s.gpa, s.len), "writable segment outside RAM");
      ChainReader r(mem, chain);
      uint8_t buf[256];
      while (r.remaining() > 0) {
        size_t n = std::min<uint64_t>(r.remaining(), sizeof buf);
        check(r.read(buf, n), "a validated chain does not read");
      }
      ChainWriter w(mem, chain);
      std::memset(buf, 0x5a, sizeof buf);
      while (w.remaining() > 0) {
        size_t n = std::min<uint64_t>(w.remaining(), sizeof buf);
        check(w.write(buf, n), "a validated chain does not write");
      }
      return static_cast<uint32_t>(w.written());
    });
  }
  std::string save_device_state() const override { return std::string(reinterpret_cast<const char*>(config_), 4); }
  Status load_device_state(std::string_view data) override {
    if (data.size() != 4) return make_error(ErrorKind::kCorrupt, "bad state");
    std::memcpy(config_, data.data(), 4);
    return ok_status();
  }

 private:
  uint8_t config_[24] = {};
};

DeviceOps echo_ops() {
  DeviceOps ops;
  ops.make = [](vmm::EventLoop&) { return std::make_unique<EchoDevice>(); };
  return ops;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const DeviceOps ops = echo_ops();
  Input in(data, size);
  VirtioRig rig(ops);
  rig.run(in);
  // Whatever happened, a device the transport calls live went through
  // FEATURES_OK with VERSION_1 and only offered bits.
  if (rig.transport().live()) {
    uint32_t status = rig.mmio_read32(0x70);
    check(status & kStatusFeaturesOk, "live without FEATURES_OK");
    uint64_t f = rig.transport().driver_features();
    check((f & kFeatureVersion1) && !(f & ~((1ull << 0) | (1ull << 5) | kFeatureVersion1)),
          "live with features the device does not offer");
  }
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  VirtioProgram p;
  p.init().chain(0, {{0, 16, false, "0123456789abcdef"}, {64, 32, true, ""}}).kick(0);
  p.chain(1, {{128, 8, true, ""}}).kick(1).mmio_read(0x60).mmio_write(0x64, 1);
  seeds.add("both_queues", p.str());
  VirtioProgram regs;
  for (uint16_t off = 0; off < 0x100; off += 4) regs.mmio_read(off);
  regs.mmio_write(0x100, 0xffffffff, 0).mmio_read(0x100, 3).mmio_read(0x1fc);
  seeds.add("registers", regs.str());
  VirtioProgram manual;  // a driver that does it step by step, with a bad ring
  manual.mmio_write(0x70, 1).mmio_write(0x70, 3).mmio_write(0x24, 1).mmio_write(0x20, 1).mmio_write(0x70, 11);
  manual.mmio_write(0x30, 0).mmio_write(0x38, 8).mmio_write(0x80, 0x4000'0008).mmio_write(0x44, 1);
  manual.mmio_write(0x70, 15).mmio_read(0x70).mmio_write(0x70, 0).mmio_read(0x44);
  seeds.add("manual_setup", manual.str());
  VirtioProgram restore;
  restore.init().chain(0, {{0, 4, true, ""}}).kick(0).snapshot_restore().chain(0, {{0, 4, true, ""}}).kick(0);
  seeds.add("restore", restore.str());
  // A snapshot as state.bin holds it: live, queue 0 ready at 0x40000000.
  Encoder e;
  TransportSnapshot snap;
  snap.mmio.status = 15;
  snap.mmio.driver_features = kFeatureVersion1;
  snap.activated = true;
  QueueState q;
  q.max_size = kMaxQueueSize;
  q.size = 8;
  q.ready = true;
  q.desc_addr = kRamBase;
  q.avail_addr = kRamBase + 0x200;
  q.used_addr = kRamBase + 0x400;
  snap.queues = {q, QueueState{kMaxQueueSize}};
  snap.device_state = std::string(4, '\0');
  MmioTransport::save(e, snap);
  VirtioProgram raw;
  raw.restore_raw(e.take()).chain(0, {{0, 4, true, ""}}).kick(0);
  seeds.add("restore_raw", raw.str());
}
