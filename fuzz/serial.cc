// The PL011 UART: guest MMIO accesses, and its state loaded from a spore.
// Checked: the interrupt line the device drives always equals
// (RIS & IMSC) != 0, and state survives save/load unchanged.
#include <memory>

#include "fuzz/support/mmio_program.h"
#include "vmm/devices/serial.h"

using namespace spore;
using namespace spore::fuzz;
using namespace spore::vmm;

namespace {

bool same(const SerialState& a, const SerialState& b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  bool level = false;
  size_t out = 0;
  auto make = [&] { return std::make_unique<Pl011>([&out](const char*, size_t n) { out += n; }, [&level](bool l) { level = l; }); };
  auto uart = make();
  auto other = [&](Input& p) {
    // A spore's UART state: decode it and restore it.
    std::string bytes = p.bytes(32);
    Decoder d(bytes);
    auto s = Pl011::load(d);
    if (!s.ok()) return;
    Encoder e;
    Pl011::save(e, *s);
    std::string again = e.take();
    Decoder d2(again);
    auto s2 = Pl011::load(d2);
    check(s2.ok() && d2.done() && same(*s, *s2), "UART state does not survive save and load");
    // As a resume does: onto a fresh device, whose line starts low.
    uart = make();
    level = false;
    uart->restore(*s);
  };
  run_mmio_program(in, [&]() -> MmioDevice& { return *uart; }, 0x1000, other, [&] {
    SerialState s = uart->state();
    check(level == ((s.ris & s.imsc) != 0), "UART interrupt line disagrees with RIS & IMSC");
  });
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  // What Linux's amba-pl011 does at probe and while printing.
  MmioProgram p;
  for (uint16_t off = 0xfe0; off < 0x1000; off += 4) p.read(off);
  p.write(0x30, 0).write(0x24, 1).write(0x28, 0).write(0x2c, 0x70).write(0x30, 0x301).write(0x38, 0x20);
  for (char c : std::string("hello\n")) p.write(0x00, static_cast<uint8_t>(c), 1).read(0x18);
  p.read(0x40).write(0x44, 0x20).read(0x3c).write(0x38, 0);
  seeds.add("linux_probe", p.str());
  Encoder e;
  Pl011::save(e, SerialState{0, 0, 0x70, 0x301, 0x12, 0x20, 0x20, 0});
  MmioProgram r;
  r.other().bytes(e.take());
  r.read(0x40).write(0x44, 0x7ff);
  seeds.add("restore", r.str());
}
