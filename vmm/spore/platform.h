// The platform contract: the host facts a spore depends on. Recorded at
// capture, compared field by field before a restore; any difference refuses
// the restore with a message naming it (fail closed).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace spore::vmm {

struct PlatformFacts {
  std::string arch;              // "aarch64"
  uint32_t board_version = 0;    // the fixed board (doc/board-aarch64.md)
  uint32_t page_size = 0;        // host page size: RAM files are mapped in these units
  uint32_t ipa_bits = 0;         // guest physical address width the VM was created with
  uint32_t vcpu_target = 0;      // KVM_ARM_PREFERRED_TARGET
  uint32_t vcpu_features = 0;    // KVM_ARM_VCPU_INIT feature bits (word 0)
  std::string gic;               // "v3"
  uint32_t gic_iidr = 0;         // GICD_IIDR: KVM's vGIC implementation revision
  std::vector<std::string> kvm_caps;                       // capabilities relied on, sorted
  std::vector<std::pair<std::string, uint64_t>> id_regs;   // guest-visible CPU identification
  std::string reg_list_sha256;   // digest of the vCPU's KVM_GET_REG_LIST
};

// One line per difference, e.g. "ID_AA64ISAR0_EL1: spore has 0x.., this host 0x..".
// Empty when the host satisfies the contract.
std::vector<std::string> compare_platform(const PlatformFacts& spore, const PlatformFacts& host);

void to_json(nlohmann::json& j, const PlatformFacts& p);
void from_json(const nlohmann::json& j, PlatformFacts& p);

// A manifest number: a JSON integer from 0 to max, else nlohmann's
// type_error (a negative, fractional or too large value would otherwise be
// converted silently, e.g. -40 to 4294967256).
uint64_t json_unsigned(const nlohmann::json& v, uint64_t max);

}  // namespace spore::vmm
