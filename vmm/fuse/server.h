// The FUSE protocol (the kernel's uapi <linux/fuse.h>, 7.31 and later) in
// front of a Volume: one request in, at most one reply out, both as lists
// of buffers (guest memory, as the virtio-fs device hands them over). The
// server never trusts a length, an id or a string in a request: a malformed
// one gets an error reply (or, for requests that take none, is dropped),
// never a crash. doc/volumes.md lists what is answered and how.
//
// Without a volume (an unbound slot) every request that takes a reply gets
// ENODEV, so a guest that mounts the slot anyway finds nothing there.
//
// Not thread-safe: one request at a time.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vmm/fuse/volume.h"

namespace spore::vmm::fuse {

inline constexpr uint32_t kMinMinor = 31;           // oldest protocol minor spoken (Linux 5.4)
inline constexpr uint32_t kMaxWrite = 1 << 20;       // max_write, and the cap on a READ
inline constexpr uint32_t kMaxReaddir = 64 << 10;    // bytes of entries per READDIR(PLUS)
inline constexpr size_t kMaxRequest = 64 << 10;      // a request other than WRITE, headers included
inline constexpr uint32_t kEntryTimeoutSec = 1;      // how long the guest may cache names and attributes

class Server {
 public:
  Server() = default;
  explicit Server(std::unique_ptr<Volume> volume) : volume_(std::move(volume)) {}

  // Serves one request; returns the bytes written into out (0 when the
  // request takes no reply or out cannot hold one).
  size_t handle(const struct iovec* req, size_t req_count, const struct iovec* out, size_t out_count);

  // The guest's FUSE session is gone (device reset): inodes and handles
  // are dropped, INIT is needed again.
  void reset();

  // Binding happens on the host side; the volume applies to the next INIT.
  void bind(std::unique_ptr<Volume> volume);
  bool bound() const { return volume_ != nullptr; }
  // INIT succeeded and no DESTROY or reset since.
  bool session_active() const { return initialized_; }
  Volume* volume() { return volume_.get(); }

 private:
  std::unique_ptr<Volume> volume_;
  bool initialized_ = false;
  std::string body_;              // the current request's bytes after its header (reused)
  std::vector<char> reply_;       // a reply being built (reused)
  std::vector<struct iovec> iov_; // data buffers of a READ or WRITE (reused)
};

}  // namespace spore::vmm::fuse
