#include "vmm/memory.h"

namespace spore::vmm {

Result<GuestMemory> GuestMemory::create_anonymous(uint64_t gpa, uint64_t size) {
  SPORE_ASSIGN_OR_RETURN(Mapping m, Mapping::anonymous(size));
  GuestMemory mem;
  mem.add_region(gpa, std::move(m));
  return mem;
}

void GuestMemory::add_region(uint64_t gpa, Mapping mapping) {
  regions_.push_back({gpa, mapping.size(), mapping.data()});
  owned_.push_back(std::move(mapping));
}

void GuestMemory::add_borrowed_region(uint64_t gpa, uint8_t* host, uint64_t size) {
  regions_.push_back({gpa, size, host});
}

uint8_t* GuestMemory::ptr(uint64_t gpa, uint64_t len) const {
  for (const auto& r : regions_) {
    if (gpa < r.gpa) continue;
    uint64_t off = gpa - r.gpa;
    if (off > r.size || len > r.size - off) continue;
    return r.host + off;
  }
  return nullptr;
}

bool GuestMemory::read(uint64_t gpa, void* dst, size_t len) const {
  uint8_t* p = ptr(gpa, len);
  if (!p) return false;
  std::memcpy(dst, p, len);
  return true;
}

bool GuestMemory::write(uint64_t gpa, const void* src, size_t len) const {
  uint8_t* p = ptr(gpa, len);
  if (!p) return false;
  std::memcpy(p, src, len);
  return true;
}

}  // namespace spore::vmm
