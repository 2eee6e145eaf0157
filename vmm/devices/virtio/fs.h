// virtio-fs (virtio 1.2, 5.11): a host directory the guest mounts with its
// virtiofs driver, served inside the VMM by the FUSE server in vmm/fuse/
// (no virtiofsd, no helper process). Two queues: hiprio (FORGET) and one
// request queue; no notification queue, no DAX window.
//
// The tag is fixed when the board is built (a slot's name, which a spore
// records); the host directory behind it is bound later, at resume
// (doc/volumes.md). An unbound slot answers every request with ENODEV.
#pragma once

#include <sys/uio.h>

#include <memory>
#include <string>
#include <vector>

#include "vmm/devices/virtio/device.h"
#include "vmm/fuse/server.h"

namespace spore::vmm::virtio {

inline constexpr size_t kFsTagSize = 36;  // virtio_fs_config.tag, NUL-padded

class Fs final : public Device {
 public:
  // tag: 1..36 bytes.
  explicit Fs(std::string tag);

  uint32_t type() const override { return kTypeFs; }
  const char* name() const override { return "fs"; }
  uint64_t features() const override { return 0; }
  size_t queue_count() const override { return 2; }
  void read_config(uint64_t offset, uint8_t* data, size_t len) const override;
  Status activate(Transport&) override { return ok_status(); }
  // The driver reset the device: the FUSE session ends (inodes and handles
  // are dropped); the binding stays.
  void reset() override { server_.reset(); }
  void notify(size_t q) override;

  const std::string& tag() const { return tag_; }
  // Binds the host directory (nullptr unbinds). Host side: before the
  // machine runs, or with the transport lock held.
  void bind(std::unique_ptr<fuse::Volume> volume) { server_.bind(std::move(volume)); }
  bool bound() const { return server_.bound(); }
  // The guest has the volume mounted (INIT done, no DESTROY or reset since):
  // such a device cannot go into a spore (its inodes live in this process).
  bool session_active() const { return server_.session_active(); }
  fuse::Volume* volume() { return server_.volume(); }

 private:
  std::string tag_;
  fuse::Server server_;
  std::vector<struct iovec> in_, out_;
};

}  // namespace spore::vmm::virtio
