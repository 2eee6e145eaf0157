// The generation device: guest MMIO accesses, its state loaded from a
// spore, cold boots and resumes in any order. Checked: every resume bumps
// the generation by one and changes the seed and instance id; a 64-bit
// read of the counter and two 32-bit reads agree; state survives
// save/load.
#include "fuzz/support/mmio_program.h"
#include "vmm/devices/generation.h"

using namespace spore;
using namespace spore::fuzz;
using namespace spore::vmm;

namespace {

class NullIrq final : public virtio::IrqLine {
 public:
  void trigger() override {}
};

uint64_t read64(GenerationDevice& g, uint64_t off) {
  uint8_t d[8];
  g.mmio_read(off, d, 8);
  uint64_t v;
  std::memcpy(&v, d, 8);
  return v;
}
uint32_t read32(GenerationDevice& g, uint64_t off) {
  uint8_t d[4];
  g.mmio_read(off, d, 4);
  uint32_t v;
  std::memcpy(&v, d, 4);
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  GenerationDevice gen(std::make_unique<NullIrq>());
  if (in.flag()) (void)gen.init_fresh();
  auto other = [&](Input& p) {
    switch (p.u8() % 3) {
      case 0:
        (void)gen.init_fresh();
        break;
      case 1: {  // resume from a spore's state (decoded from the input)
        std::string bytes = p.bytes(92);
        Decoder d(bytes);
        auto s = GenerationDevice::load(d);
        if (!s.ok()) return;
        Encoder e;
        GenerationDevice::save(e, *s);
        std::string again = e.take();
        check(again == bytes.substr(0, again.size()), "generation state does not encode back to its bytes");
        std::array<uint8_t, 16> id{};
        std::string idb = p.bytes(16);
        std::memcpy(id.data(), idb.data(), idb.size());
        if (!gen.resume_from(*s, id).ok()) return;
        GenerationState now = gen.state();
        check(now.generation == s->generation + 1, "a resume did not bump the generation by one");
        check(now.seed != s->seed && now.instance_id != s->instance_id, "a resume kept the seed or identity");
        check(now.spore_id == id, "a resume did not take the spore's id");
        gen.notify_guest();
        break;
      }
      case 2: {  // the counter reads the same both ways
        uint64_t wide = read64(gen, 0x08);
        uint64_t lo = read32(gen, 0x08), hi = read32(gen, 0x0c);
        check(wide == (lo | hi << 32), "64-bit and 32-bit reads of the generation disagree");
        break;
      }
    }
  };
  run_mmio_program(in, [&]() -> MmioDevice& { return gen; }, 0x1000, other);
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  // What the agent does on an interrupt: status, counter, time, seed, ids, ack.
  MmioProgram p;
  p.read(0x00).read(0x04).read(0x60).read(0x08, 3).read(0x08).read(0x0c).read(0x10).read(0x14).read(0x18, 3);
  for (uint16_t off = 0x20; off < 0x60; off += 4) p.read(off);
  p.write(0x64, 1).read(0x60);
  seeds.add("agent_reads", std::string(1, '\1') + p.str());
  GenerationState s;
  s.generation = 41;
  s.resumed_ns = 1'700'000'000'000'000'000ull;
  s.int_status = 1;
  Encoder e;
  GenerationDevice::save(e, s);
  MmioProgram r;
  r.other().u8(1).bytes(e.take()).bytes(std::string(16, '\x42'));
  r.other().u8(2);
  r.read(0x50).read(0x5c).write(0x64, 0xffffffff);
  s.generation = ~0ull;  // the counter wraps on the next resume
  Encoder e2;
  GenerationDevice::save(e2, s);
  r.other().u8(1).bytes(e2.take()).bytes(std::string(16, '\x43'));
  seeds.add("resumes", std::string(1, '\0') + r.str());
}
