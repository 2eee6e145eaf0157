// The PL031 RTC: guest MMIO accesses, and its state loaded from a spore
// (the clock offset is the interesting part: UBSan reports any overflow
// of the counter arithmetic). Checked: state survives save/load, and a
// loaded offset is within what the guest can set.
#include "fuzz/support/mmio_program.h"
#include "vmm/devices/rtc.h"

using namespace spore;
using namespace spore::fuzz;
using namespace spore::vmm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  Pl031 rtc;
  auto other = [&](Input& p) {
    std::string bytes = p.bytes(20);
    Decoder d(bytes);
    auto s = Pl031::load(d);
    if (!s.ok()) return;
    check(s->offset_s <= (int64_t{1} << 32) && s->offset_s >= -(int64_t{1} << 32), "RTC offset out of range loaded");
    Encoder e;
    Pl031::save(e, *s);
    std::string again = e.take();
    Decoder d2(again);
    auto s2 = Pl031::load(d2);
    check(s2.ok() && d2.done() && s2->offset_s == s->offset_s && s2->match == s->match && s2->imsc == s->imsc &&
              s2->ris == s->ris,
          "RTC state does not survive save and load");
    rtc.restore(*s);
  };
  run_mmio_program(in, [&]() -> MmioDevice& { return rtc; }, 0x1000, other);
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  MmioProgram p;
  for (uint16_t off = 0xfe0; off < 0x1000; off += 4) p.read(off);
  p.read(0x00).write(0x08, 1700000000).read(0x00).read(0x0c).write(0x10, 1).read(0x18).write(0x1c, 1);
  seeds.add("linux_probe", p.str());
  for (int64_t off : {int64_t{0}, int64_t{1} << 32, -(int64_t{1} << 32), int64_t{1} << 62}) {
    Encoder e;
    Pl031::save(e, RtcState{off, 0, 1, 1});
    MmioProgram r;
    r.other().bytes(e.take());
    r.read(0x00).read(0x08);
    seeds.add("restore_" + std::to_string(off < 0 ? 0 : off) + (off < 0 ? "_neg" : ""), r.str());
  }
}
