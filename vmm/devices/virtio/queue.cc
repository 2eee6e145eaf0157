#include "vmm/devices/virtio/queue.h"

#include "base/strings.h"

namespace spore::vmm::virtio {
namespace {

struct RawDesc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(RawDesc) == 16);

Error ring_error(std::string msg) { return make_error(ErrorKind::kGuest, "virtqueue: " + std::move(msg)); }

// Ring indices are shared with the guest's CPUs; these give the ordering the
// spec requires (read avail->idx before the entries it covers; publish used
// entries before used->idx).
uint16_t load_acquire16(const uint8_t* p) {
  return __atomic_load_n(reinterpret_cast<const uint16_t*>(p), __ATOMIC_ACQUIRE);
}
void store_release16(uint8_t* p, uint16_t v) {
  __atomic_store_n(reinterpret_cast<uint16_t*>(p), v, __ATOMIC_RELEASE);
}

}  // namespace

void save_queue_state(Encoder& e, const QueueState& s) {
  e.u16(s.max_size);
  e.u16(s.size);
  e.u8(s.ready ? 1 : 0);
  e.u64(s.desc_addr);
  e.u64(s.avail_addr);
  e.u64(s.used_addr);
  e.u16(s.next_avail);
  e.u16(s.next_used);
}

Result<QueueState> load_queue_state(Decoder& d) {
  QueueState s;
  s.max_size = d.u16();
  s.size = d.u16();
  uint8_t ready = d.u8();
  s.desc_addr = d.u64();
  s.avail_addr = d.u64();
  s.used_addr = d.u64();
  s.next_avail = d.u16();
  s.next_used = d.u16();
  if (!d.ok() || ready > 1) return make_error(ErrorKind::kCorrupt, "virtqueue state is malformed");
  s.ready = ready;
  return s;
}

void Queue::reset() {
  uint16_t max = s_.max_size;
  s_ = QueueState{};
  s_.max_size = max;
}

Status Queue::validate(const GuestMemory& mem) const {
  const uint64_t n = s_.size;
  if (n == 0 || n > s_.max_size || (n & (n - 1)) != 0)
    return ring_error(strfmt("size %u is not a power of two in 1..%u", s_.size, s_.max_size));
  if (s_.desc_addr % 16 || s_.avail_addr % 2 || s_.used_addr % 4)
    return ring_error("ring address is misaligned");
  if (!mem.contains(s_.desc_addr, 16 * n)) return ring_error("descriptor table is outside guest RAM");
  if (!mem.contains(s_.avail_addr, 6 + 2 * n)) return ring_error("available ring is outside guest RAM");
  if (!mem.contains(s_.used_addr, 6 + 8 * n)) return ring_error("used ring is outside guest RAM");
  return ok_status();
}

uint16_t Queue::pending(const GuestMemory& mem) const {
  const uint8_t* avail = mem.ptr(s_.avail_addr, 4);
  if (!avail || s_.size == 0) return 0;
  uint16_t n = static_cast<uint16_t>(load_acquire16(avail + 2) - s_.next_avail);
  return n > s_.size ? 0 : n;
}

uint16_t Queue::avail_idx(const GuestMemory& mem) const {
  const uint8_t* avail = mem.ptr(s_.avail_addr, 4);
  return avail ? load_acquire16(avail + 2) : 0;
}

Result<std::optional<DescChain>> Queue::pop(const GuestMemory& mem) {
  const uint16_t size = s_.size;
  const uint8_t* avail = mem.ptr(s_.avail_addr, 4 + 2ull * size);
  const uint8_t* table = mem.ptr(s_.desc_addr, 16ull * size);
  if (!s_.ready || size == 0 || !avail || !table) return ring_error("queue used before it was set up");

  uint16_t avail_idx = load_acquire16(avail + 2);
  uint16_t count = static_cast<uint16_t>(avail_idx - s_.next_avail);
  if (count == 0) return std::optional<DescChain>();
  if (count > size) return ring_error(strfmt("available index jumped by %u on a queue of %u", count, size));

  uint16_t head;
  std::memcpy(&head, avail + 4 + 2 * (s_.next_avail % size), 2);
  if (head >= size) return ring_error(strfmt("head index %u out of range", head));

  DescChain chain;
  chain.head = head;
  uint16_t idx = head;
  for (unsigned seen = 0;; seen++) {
    if (seen >= size) return ring_error("descriptor chain loops or is longer than the queue");
    RawDesc d;
    std::memcpy(&d, table + 16ull * idx, sizeof d);  // one copy: the guest may rewrite it
    if (d.flags & kDescFlagIndirect) return ring_error("indirect descriptor not negotiated");
    if (d.len > 0 && !mem.contains(d.addr, d.len))
      return ring_error(strfmt("descriptor %u points outside guest RAM", idx));
    if (d.flags & kDescFlagWrite) {
      if (d.len) chain.writable.push_back({d.addr, d.len});
      chain.writable_len += d.len;
    } else {
      if (!chain.writable.empty() || chain.writable_len)
        return ring_error("device-readable descriptor after a writable one");
      if (d.len) chain.readable.push_back({d.addr, d.len});
      chain.readable_len += d.len;
    }
    if (!(d.flags & kDescFlagNext)) break;
    if (d.next >= size) return ring_error(strfmt("next index %u out of range", d.next));
    idx = d.next;
  }
  s_.next_avail++;
  return std::optional<DescChain>(std::move(chain));
}

Status Queue::push_used(const GuestMemory& mem, uint16_t head, uint32_t written) {
  const uint16_t size = s_.size;
  uint8_t* used = mem.ptr(s_.used_addr, 4 + 8ull * size);
  if (!used || size == 0) return ring_error("used ring is outside guest RAM");
  uint8_t* elem = used + 4 + 8 * (s_.next_used % size);
  uint32_t id = head;
  std::memcpy(elem, &id, 4);
  std::memcpy(elem + 4, &written, 4);
  s_.next_used++;
  store_release16(used + 2, s_.next_used);
  return ok_status();
}

bool Queue::needs_interrupt(const GuestMemory& mem) const {
  // Full barrier: our used->idx store must be visible before we sample the
  // driver's suppression flag, or both sides can decide the other will act.
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  const uint8_t* avail = mem.ptr(s_.avail_addr, 2);
  if (!avail) return true;
  return !(load_acquire16(avail) & kAvailFlagNoInterrupt);
}

bool ChainReader::read(void* dst, size_t len) {
  auto* out = static_cast<uint8_t*>(dst);
  while (len > 0) {
    if (seg_ >= chain_.readable.size()) return false;
    const Segment& s = chain_.readable[seg_];
    size_t n = std::min<size_t>(len, s.len - seg_off_);
    if (out) {
      if (!mem_.read(s.gpa + seg_off_, out, n)) return false;
      out += n;
    }
    len -= n;
    consumed_ += n;
    seg_off_ += static_cast<uint32_t>(n);
    if (seg_off_ == s.len) {
      seg_++;
      seg_off_ = 0;
    }
  }
  return true;
}

bool ChainWriter::write(const void* src, size_t len) {
  auto* in = static_cast<const uint8_t*>(src);
  while (len > 0) {
    auto [p, n] = span(len);
    if (!p) return false;
    std::memcpy(p, in, n);
    in += n;
    len -= n;
    advance(n);
  }
  return true;
}

std::pair<uint8_t*, size_t> ChainWriter::span(size_t max_len) const {
  if (seg_ >= chain_.writable.size()) return {nullptr, 0};
  const Segment& s = chain_.writable[seg_];
  size_t n = std::min<size_t>(max_len, s.len - seg_off_);
  return {mem_.ptr(s.gpa + seg_off_, n), n};
}

void ChainWriter::advance(size_t len) {
  while (len > 0 && seg_ < chain_.writable.size()) {
    const Segment& s = chain_.writable[seg_];
    size_t n = std::min<size_t>(len, s.len - seg_off_);
    len -= n;
    written_ += n;
    seg_off_ += static_cast<uint32_t>(n);
    if (seg_off_ == s.len) {
      seg_++;
      seg_off_ = 0;
    }
  }
}

}  // namespace spore::vmm::virtio
