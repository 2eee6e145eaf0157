#include "vmm/devices/virtio/fs.h"

#include <cstring>

#include "base/log.h"

namespace spore::vmm::virtio {
namespace {

struct __attribute__((packed)) FsConfig {
  char tag[kFsTagSize];
  uint32_t num_request_queues;
};

}  // namespace

Fs::Fs(std::string tag) : tag_(std::move(tag)) {
  if (tag_.size() > kFsTagSize) tag_.resize(kFsTagSize);
}

void Fs::read_config(uint64_t offset, uint8_t* data, size_t len) const {
  FsConfig c{};
  std::memcpy(c.tag, tag_.data(), tag_.size());
  c.num_request_queues = 1;
  read_config_bytes(&c, sizeof c, offset, data, len);
}

void Fs::notify(size_t q) {
  if (q >= queue_count() || !transport_) return;
  const GuestMemory& mem = transport_->memory();
  // Any request on either queue is served the same way: the guest's driver
  // puts only FORGETs on hiprio, and a hostile one gains nothing by mixing.
  serve_queue(*transport_, q, [&](const DescChain& chain) -> Result<uint32_t> {
    in_.clear();
    out_.clear();
    // Queue::pop checked every segment lies in guest RAM.
    for (const Segment& s : chain.readable) in_.push_back({mem.ptr(s.gpa, s.len), s.len});
    for (const Segment& s : chain.writable) out_.push_back({mem.ptr(s.gpa, s.len), s.len});
    size_t n = server_.handle(in_.data(), in_.size(), out_.data(), out_.size());
    return static_cast<uint32_t>(n);
  });
}

}  // namespace spore::vmm::virtio
