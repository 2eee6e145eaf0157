// virtio-blk (virtio 1.x, 5.2) backed by an image file. The rootfs is
// exported read-only; writes are supported for images opened writable.
#pragma once

#include <memory>
#include <string>

#include "base/fd.h"
#include "vmm/devices/virtio/device.h"

namespace spore::vmm::virtio {

inline constexpr uint32_t kBlkSectorSize = 512;

class Block final : public Device {
 public:
  // id is what the guest reads with VIRTIO_BLK_T_GET_ID (at most 20 bytes).
  static Result<std::unique_ptr<Block>> open(const std::string& path, bool read_only, std::string id);
  Block(UniqueFd fd, uint64_t size, bool read_only, std::string id);

  uint32_t type() const override { return kTypeBlock; }
  const char* name() const override { return "blk"; }
  uint64_t features() const override;
  size_t queue_count() const override { return 1; }
  void read_config(uint64_t offset, uint8_t* data, size_t len) const override;
  Status activate(Transport&) override { return ok_status(); }
  void reset() override {}
  void notify(size_t q) override;

  uint64_t capacity_sectors() const { return size_ / kBlkSectorSize; }

 private:
  // Returns the status byte for the request.
  uint8_t handle(const DescChain& chain, uint64_t data_len, uint32_t* written);

  UniqueFd fd_;
  uint64_t size_;
  bool read_only_;
  std::string id_;
};

}  // namespace spore::vmm::virtio
