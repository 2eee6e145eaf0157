// A spore's manifest.json (vmm/spore/manifest.cc), with the platform
// contract inside it. Checked beyond "no crash": what parses writes back
// to JSON that parses to the same thing, and what the parser accepted is
// what the JSON says: every number is an unsigned integer that fits its
// field (doc/spore-format.md), nothing truncated or wrapped on the way.
#include <nlohmann/json.hpp>

#include "fuzz/support/fuzz.h"
#include "fuzz/support/samples.h"
#include "vmm/spore/manifest.h"

using namespace spore;
using namespace spore::fuzz;
using nlohmann::json;

namespace {

void same_number(const json& v, uint64_t got, uint64_t max, const char* name) {
  check(v.is_number_unsigned() && v.get<uint64_t>() == got && got <= max,
        "the manifest parser accepted a number that is not what the JSON says", name + (": " + v.dump()));
}

void same_hex(const json& v, uint64_t got, uint64_t max, const char* name) {
  std::string s = v.get<std::string>();
  check(s.size() > 2 && std::stoull(s.substr(2), nullptr, 16) == got && got <= max,
        "the manifest parser accepted a hex value that does not fit its field", name + (": " + s));
}

// Everything the parser returned, compared with the document itself.
void compare(const std::string& text, const vmm::SporeManifest& m) {
  json j = json::parse(text);
  constexpr uint64_t k32 = UINT32_MAX, k64 = UINT64_MAX;
  same_number(j["generation"], m.generation, k64, "generation");
  const json& p = j["platform"];
  same_number(p["board_version"], m.platform.board_version, k32, "board_version");
  same_number(p["page_size"], m.platform.page_size, k32, "page_size");
  same_number(p["ipa_bits"], m.platform.ipa_bits, k32, "ipa_bits");
  same_number(p["vcpu_target"], m.platform.vcpu_target, k32, "vcpu_target");
  same_hex(p["vcpu_features"], m.platform.vcpu_features, k32, "vcpu_features");
  same_hex(p["gic_iidr"], m.platform.gic_iidr, k32, "gic_iidr");
  same_number(j["machine"]["vcpus"], m.machine.vcpus, k32, "vcpus");
  same_number(j["machine"]["mem_mib"], m.machine.mem_mib, k64, "mem_mib");
  if (m.rootfs) same_number(j["rootfs"]["size"], m.rootfs->size, k64, "rootfs.size");
  same_number(j["state"]["size"], m.state.size, k64, "state.size");
  same_number(j["memory_index"]["size"], m.memory_index.size, k64, "memory_index.size");
  const json& mem = j["memory"];
  same_number(mem["chunk_size"], m.memory.chunk_size, k32, "chunk_size");
  same_number(mem["ram_size"], m.memory.ram_size, k64, "ram_size");
  same_number(mem["chunks"], m.memory.chunks, k64, "chunks");
  same_number(mem["stored_bytes"], m.memory.stored_bytes, k64, "stored_bytes");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto m = vmm::parse_manifest(text);
  if (!m.ok()) return 0;
  compare(text, *m);
  std::string again = vmm::manifest_to_json(*m);
  auto m2 = vmm::parse_manifest(again);
  check(m2.ok(), "a parsed manifest does not parse after writing it back", m2.ok() ? "" : m2.error().message);
  check(vmm::manifest_to_json(*m2) == again, "a manifest changes on a second round trip");
  (void)vmm::compare_platform(m->platform, sample_platform());
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  seeds.add("with_rootfs", vmm::manifest_to_json(sample_manifest(true)));
  seeds.add("without_rootfs", vmm::manifest_to_json(sample_manifest(false)));
}
