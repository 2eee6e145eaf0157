// A spore's memory.idx (vmm/spore/memory.cc). Checked: what decodes has
// its chunk numbers strictly increasing and inside RAM, and encodes back
// to exactly the input.
#include "fuzz/support/fuzz.h"
#include "fuzz/support/samples.h"
#include "vmm/spore/memory.h"

using namespace spore;
using namespace spore::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto idx = vmm::decode_memory_index(in);
  if (!idx.ok()) return 0;
  const uint64_t chunks = idx->ram_size / idx->chunk_size;
  for (size_t i = 0; i < idx->entries.size(); i++) {
    check(idx->entries[i].index < chunks, "a chunk outside RAM");
    check(i == 0 || idx->entries[i].index > idx->entries[i - 1].index, "chunk numbers not increasing");
  }
  check(vmm::encode_memory_index(*idx) == in, "memory.idx does not encode back to its bytes");
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  seeds.add("four_chunks", vmm::encode_memory_index(sample_index()));
  vmm::MemoryIndex empty = sample_index();
  empty.entries.clear();
  seeds.add("empty", vmm::encode_memory_index(empty));
}
