// The working-set file a resume prefetches from (vmm/spore/working_set.cc),
// read back against the RAM size the caller expects: the input's first 4
// bytes give that page count (or 0xffffffff: take the file's own). Checked:
// what decodes is one state 0..2 per page and encodes back to the input.
#include "fuzz/support/fuzz.h"
#include "base/codec.h"
#include "vmm/spore/working_set.h"

using namespace spore;
using namespace spore::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  uint32_t want = in.u32();
  std::string file = in.rest();
  uint64_t pages = want;
  if (want == 0xffffffff) {
    Decoder d(file);
    d.view(8);
    pages = d.u64();
  }
  auto states = vmm::decode_working_set(file, pages);
  if (!states.ok()) return 0;
  check(states->size() == pages, "working set of the wrong length");
  for (char c : *states) check(c >= 0 && c <= 2, "invalid page state decoded");
  check(vmm::encode_working_set(*states) == file, "working set does not encode back to its bytes");
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  std::string states;
  for (int i = 0; i < 1000; i++) states.push_back(static_cast<char>(i % 7 == 0 ? 2 : i % 3 == 0 ? 1 : 0));
  seeds.add("pages_1000", Output().u32(1000).bytes(vmm::encode_working_set(states)).str());
  seeds.add("own_count", Output().u32(0xffffffff).bytes(vmm::encode_working_set(states.substr(0, 13))).str());
}
