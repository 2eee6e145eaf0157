// Guest MMIO dispatch: address ranges to devices. Built before the vCPUs
// start and immutable afterwards, so lookups need no lock.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"

namespace spore::vmm {

class MmioDevice {
 public:
  virtual ~MmioDevice() = default;
  // offset is relative to the device's base; len is 1, 2, 4 or 8. Reads must
  // fill data[0..len) (zeros for unknown registers).
  virtual void mmio_read(uint64_t offset, uint8_t* data, size_t len) = 0;
  virtual void mmio_write(uint64_t offset, const uint8_t* data, size_t len) = 0;
};

class MmioBus {
 public:
  Status add(uint64_t base, uint64_t size, MmioDevice* dev, std::string name);
  // False when nothing is mapped at addr (the caller decides what the guest sees).
  bool read(uint64_t addr, uint8_t* data, size_t len) const;
  bool write(uint64_t addr, const uint8_t* data, size_t len) const;

 private:
  struct Range {
    uint64_t base, size;
    MmioDevice* dev;
    std::string name;
  };
  const Range* find(uint64_t addr, size_t len) const;
  std::vector<Range> ranges_;  // sorted by base, non-overlapping
};

// Little-endian register value helpers for MMIO data buffers.
uint64_t mmio_value(const uint8_t* data, size_t len);
void mmio_fill(uint8_t* data, size_t len, uint64_t value);

}  // namespace spore::vmm
