// A spore's state.bin (vmm/spore/state.cc): vCPU registers, the GIC, every
// device's saved state. Checked: what decodes encodes to bytes that decode
// to the same encoding (decoding normalises a few masked fields, so the
// first encoding may differ from the input, never the second).
#include "fuzz/support/fuzz.h"
#include "fuzz/support/samples.h"
#include "vmm/spore/state.h"

using namespace spore;
using namespace spore::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto s = vmm::decode_machine_state(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!s.ok()) return 0;
  std::string once = vmm::encode_machine_state(*s);
  auto s2 = vmm::decode_machine_state(once);
  check(s2.ok(), "an encoded state does not decode", s2.ok() ? "" : s2.error().message);
  check(vmm::encode_machine_state(*s2) == once, "state.bin changes on a second round trip");
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  seeds.add("one_vcpu", vmm::encode_machine_state(sample_state(1)));
  seeds.add("two_vcpus", vmm::encode_machine_state(sample_state(2)));
}
