// virtio-rng (virtio 1.x, 5.4): fills guest buffers from the host's getrandom().
#pragma once

#include "vmm/devices/virtio/device.h"

namespace spore::vmm::virtio {

class Rng final : public Device {
 public:
  uint32_t type() const override { return kTypeRng; }
  const char* name() const override { return "rng"; }
  uint64_t features() const override { return 0; }
  size_t queue_count() const override { return 1; }
  void read_config(uint64_t, uint8_t* data, size_t len) const override { read_config_bytes(nullptr, 0, 0, data, len); }
  Status activate(Transport&) override { return ok_status(); }
  void reset() override {}
  void notify(size_t q) override;

 private:
};

}  // namespace spore::vmm::virtio
