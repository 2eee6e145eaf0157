// A guest's MMIO accesses to one device, as a program: each operation an
// opcode byte and its operands (fuzz::Input). Accesses are 1, 2, 4 or 8
// bytes anywhere inside the device's window, as a vCPU can make them; the
// target adds its own operations (state loads, resumes).
#pragma once

#include <cstring>
#include <functional>

#include "fuzz/support/fuzz.h"
#include "vmm/devices/mmio_bus.h"

namespace spore::fuzz {

enum MmioOp : uint8_t { kMmioRead = 0, kMmioWrite = 1, kMmioOther = 2 };

inline size_t mmio_len(uint8_t code) {
  static constexpr size_t kLens[4] = {4, 1, 2, 8};
  return kLens[code % 4];
}

// Runs at most 512 operations on device() (which other() may replace, as
// a restore does). other(in) handles the target's own operations.
inline void run_mmio_program(Input& in, const std::function<vmm::MmioDevice&()>& device, uint64_t window,
                             const std::function<void(Input&)>& other, const std::function<void()>& after_each = {}) {
  for (int steps = 0; !in.empty() && steps < 512; steps++) {
    uint8_t op = in.u8() % 3;
    if (op == kMmioOther) {
      if (other) other(in);
    } else {
      uint64_t off = in.u16() % window;
      size_t len = mmio_len(in.u8());
      if (off + len > window) off = window - len;
      uint8_t data[8];
      if (op == kMmioRead) {
        std::memset(data, 0xa5, sizeof data);
        device().mmio_read(off, data, len);
      } else {
        uint64_t v = in.u64();
        std::memcpy(data, &v, 8);
        device().mmio_write(off, data, len);
      }
    }
    if (after_each) after_each();
  }
}

// Writes such programs (for seeds).
class MmioProgram {
 public:
  MmioProgram& read(uint16_t off, uint8_t len_code = 0) {
    o_.u8(kMmioRead).u16(off).u8(len_code);
    return *this;
  }
  MmioProgram& write(uint16_t off, uint64_t v, uint8_t len_code = 0) {
    o_.u8(kMmioWrite).u16(off).u8(len_code).u64(v);
    return *this;
  }
  Output& other() { return o_.u8(kMmioOther); }
  const std::string& str() const { return o_.str(); }

 private:
  Output o_;
};

}  // namespace spore::fuzz
