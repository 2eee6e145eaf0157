#include "vmm/devices/virtio/rng.h"

#include <sys/random.h>

namespace spore::vmm::virtio {

namespace {
// Bounds the work one request can cause; the driver asks again for more.
constexpr size_t kMaxPerRequest = 64 << 10;
}

void Rng::notify(size_t q) {
  if (q != 0 || !transport_) return;
  const GuestMemory& mem = transport_->memory();
  serve_queue(*transport_, 0, [&](const DescChain& chain) -> Result<uint32_t> {
    ChainWriter w(mem, chain);
    size_t left = std::min<uint64_t>(w.remaining(), kMaxPerRequest);
    while (left > 0) {
      auto [p, n] = w.span(left);
      if (!p) break;
      ssize_t got = ::getrandom(p, n, 0);
      if (got <= 0) break;
      w.advance(static_cast<size_t>(got));
      left -= static_cast<size_t>(got);
    }
    return static_cast<uint32_t>(w.written());
  });
}

}  // namespace spore::vmm::virtio
