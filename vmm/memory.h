// Guest physical memory as seen by the VMM. Every access from device code goes
// through here and is bounds-checked: addresses and lengths come from the guest
// and are hostile.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace spore::vmm {

struct MemoryRegion {
  uint64_t gpa = 0;
  uint64_t size = 0;
  uint8_t* host = nullptr;
};

class GuestMemory {
 public:
  GuestMemory() = default;
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;
  GuestMemory(GuestMemory&&) = default;
  GuestMemory& operator=(GuestMemory&&) = default;

  // Anonymous RAM at [gpa, gpa+size).
  static Result<GuestMemory> create_anonymous(uint64_t gpa, uint64_t size);
  // Adopts an existing mapping (owned) as RAM at gpa.
  void add_region(uint64_t gpa, Mapping mapping);
  // Uses memory owned by someone else (tests).
  void add_borrowed_region(uint64_t gpa, uint8_t* host, uint64_t size);

  const std::vector<MemoryRegion>& regions() const { return regions_; }

  // Host pointer for [gpa, gpa+len) when it lies wholly inside one region,
  // else nullptr. Overflow-safe.
  uint8_t* ptr(uint64_t gpa, uint64_t len) const;
  bool contains(uint64_t gpa, uint64_t len) const { return ptr(gpa, len) != nullptr; }

  bool read(uint64_t gpa, void* dst, size_t len) const;
  bool write(uint64_t gpa, const void* src, size_t len) const;

  template <class T>
  std::optional<T> load(uint64_t gpa) const {
    T v;
    if (!read(gpa, &v, sizeof v)) return std::nullopt;
    return v;
  }
  template <class T>
  bool store(uint64_t gpa, const T& v) const {
    return write(gpa, &v, sizeof v);
  }

 private:
  std::vector<MemoryRegion> regions_;
  std::vector<Mapping> owned_;
};

}  // namespace spore::vmm
