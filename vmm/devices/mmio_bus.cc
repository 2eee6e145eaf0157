#include "vmm/devices/mmio_bus.h"

#include <algorithm>
#include <cstring>

#include "base/strings.h"

namespace spore::vmm {

Status MmioBus::add(uint64_t base, uint64_t size, MmioDevice* dev, std::string name) {
  if (size == 0 || base + size < base) return make_error(ErrorKind::kInternal, "bad MMIO range for " + name);
  for (const auto& r : ranges_) {
    if (base < r.base + r.size && r.base < base + size)
      return make_error(ErrorKind::kInternal, strfmt("MMIO range of %s overlaps %s", name.c_str(), r.name.c_str()));
  }
  ranges_.push_back({base, size, dev, std::move(name)});
  std::sort(ranges_.begin(), ranges_.end(), [](const Range& a, const Range& b) { return a.base < b.base; });
  return ok_status();
}

const MmioBus::Range* MmioBus::find(uint64_t addr, size_t len) const {
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), addr,
                             [](uint64_t a, const Range& r) { return a < r.base; });
  if (it == ranges_.begin()) return nullptr;
  --it;
  if (addr - it->base >= it->size || len > it->size - (addr - it->base)) return nullptr;
  return &*it;
}

bool MmioBus::read(uint64_t addr, uint8_t* data, size_t len) const {
  const Range* r = find(addr, len);
  if (!r) return false;
  r->dev->mmio_read(addr - r->base, data, len);
  return true;
}

bool MmioBus::write(uint64_t addr, const uint8_t* data, size_t len) const {
  const Range* r = find(addr, len);
  if (!r) return false;
  r->dev->mmio_write(addr - r->base, data, len);
  return true;
}

uint64_t mmio_value(const uint8_t* data, size_t len) {
  uint64_t v = 0;
  std::memcpy(&v, data, std::min<size_t>(len, 8));
  return v;
}

void mmio_fill(uint8_t* data, size_t len, uint64_t value) {
  std::memset(data, 0, len);
  std::memcpy(data, &value, std::min<size_t>(len, 8));
}

}  // namespace spore::vmm
