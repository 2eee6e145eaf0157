// ARM PL031 real-time clock. Reads the host's wall clock plus an offset the
// guest may set, so a resumed guest sees the current time, not capture time.
#pragma once

#include <cstdint>
#include <mutex>

#include "base/codec.h"
#include "base/result.h"
#include "vmm/devices/mmio_bus.h"

namespace spore::vmm {

struct RtcState {
  int64_t offset_s = 0;  // guest time minus host time
  uint32_t match = 0, imsc = 0, ris = 0;
};

class Pl031 final : public MmioDevice {
 public:
  void mmio_read(uint64_t offset, uint8_t* data, size_t len) override;
  void mmio_write(uint64_t offset, const uint8_t* data, size_t len) override;
  RtcState state() const;
  void restore(const RtcState& s);

  static void save(Encoder& e, const RtcState& s);
  static Result<RtcState> load(Decoder& d);

 private:
  mutable std::mutex mu_;
  RtcState s_;
};

}  // namespace spore::vmm
