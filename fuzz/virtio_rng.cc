// virtio-rng behind the mmio transport, driven by a hostile guest
// (fuzz/support/virtio_rig.h): whatever the rings say, the device only
// writes into guest RAM the chain allows, and never more than it may.
#include "fuzz/support/virtio_rig.h"
#include "vmm/devices/virtio/rng.h"

using namespace spore;
using namespace spore::fuzz;

namespace {

DeviceOps rng_ops() {
  DeviceOps ops;
  ops.make = [](vmm::EventLoop&) { return std::make_unique<vmm::virtio::Rng>(); };
  return ops;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const DeviceOps ops = rng_ops();
  Input in(data, size);
  VirtioRig rig(ops);
  rig.run(in);
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  VirtioProgram p;
  p.init().chain(0, {{0, 64, true, ""}}).kick(0).chain(0, {{100, 16, true, ""}, {200, 32, true, ""}}).kick(0);
  seeds.add("two_requests", p.str());
  VirtioProgram bad;
  bad.init().raw_desc(0, 0, 0x4000'0000 + 0xfff0, 64, 2, 0).publish(0, 0).kick(0).mmio_read(0x70);
  seeds.add("buffer_past_ram", bad.str());
  VirtioProgram loop;
  loop.init().raw_desc(0, 0, 0x4000'4000, 8, 3, 1).raw_desc(0, 1, 0x4000'4100, 8, 3, 0).publish(0, 0).kick(0);
  seeds.add("chain_loop", loop.str());
  VirtioProgram restore;
  restore.init().chain(0, {{0, 8, true, ""}}).snapshot_restore().chain(0, {{0, 8, true, ""}}).kick(0);
  seeds.add("restore", restore.str());
}
