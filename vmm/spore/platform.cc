#include "vmm/spore/platform.h"

#include <map>
#include <nlohmann/json.hpp>

#include "base/strings.h"

namespace spore::vmm {
namespace {

std::string hex(uint64_t v) { return strfmt("0x%llx", static_cast<unsigned long long>(v)); }

template <class T>
void diff(std::vector<std::string>& out, const char* name, const T& spore, const T& host,
          std::string (*fmt)(const T&)) {
  if (!(spore == host)) out.push_back(strfmt("%s: the spore has %s, this host %s", name, fmt(spore).c_str(), fmt(host).c_str()));
}

std::string fmt_str(const std::string& s) { return s.empty() ? "(none)" : s; }
std::string fmt_u32(const uint32_t& v) { return std::to_string(v); }
std::string fmt_hex32(const uint32_t& v) { return hex(v); }

}  // namespace

std::vector<std::string> compare_platform(const PlatformFacts& s, const PlatformFacts& h) {
  std::vector<std::string> out;
  diff(out, "architecture", s.arch, h.arch, fmt_str);
  diff(out, "board version", s.board_version, h.board_version, fmt_u32);
  diff(out, "page size", s.page_size, h.page_size, fmt_u32);
  diff(out, "IPA bits", s.ipa_bits, h.ipa_bits, fmt_u32);
  diff(out, "vCPU target", s.vcpu_target, h.vcpu_target, fmt_u32);
  diff(out, "vCPU features", s.vcpu_features, h.vcpu_features, fmt_hex32);
  diff(out, "interrupt controller", s.gic, h.gic, fmt_str);
  diff(out, "GICD_IIDR", s.gic_iidr, h.gic_iidr, fmt_hex32);
  for (const auto& cap : s.kvm_caps) {
    bool found = false;
    for (const auto& c : h.kvm_caps) found |= c == cap;
    if (!found) out.push_back("KVM capability " + cap + ": the spore needs it, this host lacks it");
  }
  std::map<std::string, uint64_t> host_regs(h.id_regs.begin(), h.id_regs.end());
  for (const auto& [name, value] : s.id_regs) {
    auto it = host_regs.find(name);
    if (it == host_regs.end()) out.push_back(name + ": recorded in the spore, unknown on this host");
    else if (it->second != value)
      out.push_back(strfmt("%s: the spore has %s, this host %s", name.c_str(), hex(value).c_str(), hex(it->second).c_str()));
  }
  if (s.reg_list_sha256 != h.reg_list_sha256)
    out.push_back("vCPU register list: this host's KVM exposes a different set of registers");
  return out;
}

void to_json(nlohmann::json& j, const PlatformFacts& p) {
  nlohmann::json regs = nlohmann::json::object();
  for (const auto& [name, value] : p.id_regs) regs[name] = hex(value);
  j = nlohmann::json{{"arch", p.arch},
                     {"board_version", p.board_version},
                     {"page_size", p.page_size},
                     {"ipa_bits", p.ipa_bits},
                     {"vcpu_target", p.vcpu_target},
                     {"vcpu_features", hex(p.vcpu_features)},
                     {"gic", p.gic},
                     {"gic_iidr", hex(p.gic_iidr)},
                     {"kvm_caps", p.kvm_caps},
                     {"id_registers", regs},
                     {"reg_list_sha256", p.reg_list_sha256}};
}

uint64_t json_unsigned(const nlohmann::json& v, uint64_t max) {
  if (!v.is_number_unsigned() || v.get<uint64_t>() > max)
    throw nlohmann::json::type_error::create(302, "expected an unsigned integer up to " + std::to_string(max) +
                                                      ", got " + v.dump(), &v);
  return v.get<uint64_t>();
}

namespace {
uint64_t parse_hex(const nlohmann::json& v) {
  std::string s = v.get<std::string>();
  if (s.size() < 3 || s.size() > 18 || s.compare(0, 2, "0x") != 0)
    throw nlohmann::json::type_error::create(302, "expected a hex string like 0x1f", &v);
  // Digits only: std::stoull alone would also take a sign or spaces.
  uint64_t out = 0;
  for (char c : s.substr(2)) {
    int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (digit < 0) throw nlohmann::json::type_error::create(302, "bad hex string", &v);
    out = out << 4 | static_cast<uint64_t>(digit);
  }
  return out;
}

uint32_t parse_hex32(const nlohmann::json& v) {
  uint64_t x = parse_hex(v);
  if (x > UINT32_MAX) throw nlohmann::json::type_error::create(302, "hex value does not fit 32 bits", &v);
  return static_cast<uint32_t>(x);
}
}  // namespace

void from_json(const nlohmann::json& j, PlatformFacts& p) {
  p.arch = j.at("arch").get<std::string>();
  p.board_version = static_cast<uint32_t>(json_unsigned(j.at("board_version"), UINT32_MAX));
  p.page_size = static_cast<uint32_t>(json_unsigned(j.at("page_size"), UINT32_MAX));
  p.ipa_bits = static_cast<uint32_t>(json_unsigned(j.at("ipa_bits"), UINT32_MAX));
  p.vcpu_target = static_cast<uint32_t>(json_unsigned(j.at("vcpu_target"), UINT32_MAX));
  p.vcpu_features = parse_hex32(j.at("vcpu_features"));
  p.gic = j.at("gic").get<std::string>();
  p.gic_iidr = parse_hex32(j.at("gic_iidr"));
  p.kvm_caps = j.at("kvm_caps").get<std::vector<std::string>>();
  p.id_regs.clear();
  for (const auto& [name, value] : j.at("id_registers").items()) p.id_regs.emplace_back(name, parse_hex(value));
  p.reg_list_sha256 = j.at("reg_list_sha256").get<std::string>();
  bool hex = p.reg_list_sha256.size() == 64;
  for (char c : p.reg_list_sha256) hex &= (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  if (!hex) throw nlohmann::json::type_error::create(302, "reg_list_sha256 must be 64 lower-case hex digits", &j);
}

}  // namespace spore::vmm
