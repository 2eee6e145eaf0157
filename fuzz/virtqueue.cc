// Split virtqueues (vmm/devices/virtio/queue.h) on their own: the queue's
// registers and guest RAM both come from the input (RAM is 16 KiB at a
// fixed address; the register values may point anywhere). The device pops
// chains, reads and writes them through ChainReader/ChainWriter and
// returns them, as every device does.
//
// Checked beyond "no crash": every segment of a popped chain lies inside
// RAM; readable segments come before writable ones; lengths add up; a
// chain is never longer than the queue; reading and writing a chain moves
// exactly its bytes; a failed pop leaves the queue where it was.
#include <algorithm>
#include <array>
#include <cstring>

#include "fuzz/support/fuzz.h"
#include "vmm/devices/virtio/queue.h"
#include "vmm/memory.h"

using namespace spore;
using namespace spore::fuzz;
using namespace spore::vmm::virtio;

namespace {

constexpr uint64_t kBase = 0x8000'0000;
constexpr size_t kRam = 16 << 10;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static uint8_t* ram = new uint8_t[kRam];
  Input in(data, size);
  Queue q(static_cast<uint16_t>(1u << (in.u8() % 9)));  // max size 1..256
  QueueState& s = q.state();
  s.size = in.u16();
  s.ready = in.u8() % 4 != 0;
  // Ring addresses: usually inside RAM (an offset), sometimes raw.
  auto addr = [&in] {
    uint8_t sel = in.u8();
    return sel < 200 ? kBase + in.u16() % kRam : in.u64();
  };
  s.desc_addr = addr();
  s.avail_addr = addr();
  s.used_addr = addr();
  s.next_avail = in.u16();
  s.next_used = in.u16();
  std::memset(ram, 0, kRam);
  std::string image = in.bytes(kRam);
  std::memcpy(ram, image.data(), image.size());
  vmm::GuestMemory mem;
  mem.add_borrowed_region(kBase, ram, kRam);

  (void)q.validate(mem);
  (void)q.pending(mem);
  (void)q.needs_interrupt(mem);
  for (int i = 0; i < 64; i++) {
    const QueueState before = q.state();
    auto next = q.pop(mem);
    if (!next.ok()) {
      check(q.state().next_avail == before.next_avail, "a failed pop moved the queue");
      break;
    }
    if (!*next) break;
    const DescChain& c = **next;
    check(s.ready, "popped from a queue that is not ready");
    check(c.head < s.size, "head outside the queue");
    check(c.readable.size() + c.writable.size() <= s.size, "chain longer than the queue");
    uint64_t rlen = 0, wlen = 0;
    for (const auto& seg : c.readable) {
      check(seg.len > 0 && mem.contains(seg.gpa, seg.len), "readable segment outside RAM");
      rlen += seg.len;
    }
    for (const auto& seg : c.writable) {
      check(seg.len > 0 && mem.contains(seg.gpa, seg.len), "writable segment outside RAM");
      wlen += seg.len;
    }
    check(rlen == c.readable_len && wlen == c.writable_len, "chain lengths do not add up");

    ChainReader r(mem, c);
    std::string got(std::min<uint64_t>(rlen, 1 << 20), '\0');
    check(r.read(got.data(), got.size()), "a chain does not read its own length");
    check(r.remaining() == rlen - got.size(), "reader's remaining() is off");
    check(!r.read(nullptr, r.remaining() + 1), "read past the end of a chain");

    ChainWriter w(mem, c);
    uint64_t left = std::min<uint64_t>(wlen, 1 << 20);
    while (left > 0) {
      auto [p, n] = w.span(left);
      check(p != nullptr && n > 0 && n <= left, "span() inside a chain failed");
      std::memset(p, 0xab, n);
      w.advance(n);
      left -= n;
    }
    check(w.written() == std::min<uint64_t>(wlen, 1 << 20), "writer's written() is off");
    uint8_t extra = 0;
    if (w.remaining() == 0) check(!w.write(&extra, 1), "wrote past the end of a chain");
    (void)q.push_used(mem, c.head, static_cast<uint32_t>(w.written()));
  }
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  // A ready queue of 8 at RAM offsets 0 (desc), 0x100 (avail), 0x200
  // (used), one chain: readable 16 bytes at 0x1000, writable 32 at 0x2000.
  auto queue = [](uint16_t avail_idx, std::vector<std::array<uint64_t, 4>> descs, uint16_t head) {
    Output o;
    o.u8(3).u16(8).u8(1);
    o.u8(0).u16(0).u8(0).u16(0x100).u8(0).u16(0x200);
    o.u16(0).u16(0);
    std::string ram(0x3000, '\0');
    for (size_t i = 0; i < descs.size(); i++) {
      uint64_t addr = descs[i][0];
      uint32_t len = static_cast<uint32_t>(descs[i][1]);
      uint16_t flags = static_cast<uint16_t>(descs[i][2]), next = static_cast<uint16_t>(descs[i][3]);
      std::memcpy(&ram[16 * i], &addr, 8);
      std::memcpy(&ram[16 * i + 8], &len, 4);
      std::memcpy(&ram[16 * i + 12], &flags, 2);
      std::memcpy(&ram[16 * i + 14], &next, 2);
    }
    std::memcpy(&ram[0x102], &avail_idx, 2);
    std::memcpy(&ram[0x104], &head, 2);
    o.bytes(ram);
    return o.str();
  };
  seeds.add("one_chain", queue(1, {{kBase + 0x1000, 16, 1, 1}, {kBase + 0x2000, 32, 2, 0}}, 0));
  seeds.add("loop", queue(1, {{kBase + 0x1000, 16, 1, 1}, {kBase + 0x2000, 32, 1, 0}}, 0));
  seeds.add("outside_ram", queue(1, {{kBase + kRam - 8, 16, 0, 0}}, 0));
  seeds.add("write_then_read", queue(1, {{kBase + 0x1000, 16, 3, 1}, {kBase + 0x2000, 32, 0, 0}}, 0));
  seeds.add("index_jump", queue(200, {{kBase + 0x1000, 16, 0, 0}}, 0));
}
