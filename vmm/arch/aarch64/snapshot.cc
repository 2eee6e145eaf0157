#include "vmm/arch/aarch64/snapshot.h"

#include <asm/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>

#include "base/sha256.h"
#include "base/strings.h"
#include "vmm/arch/aarch64/layout.h"

namespace spore::vmm::aarch64 {
namespace {

// ---- GICv3 register map (offsets per the GICv3 architecture) ----
constexpr uint32_t kGicdCtlr = 0x0000;
constexpr uint32_t kGicdIidr = 0x0008;
constexpr uint32_t kGicdIgroupr = 0x0080;
constexpr uint32_t kGicdIsenabler = 0x0100;
constexpr uint32_t kGicdIspendr = 0x0200;
constexpr uint32_t kGicdIsactiver = 0x0300;
constexpr uint32_t kGicdIpriorityr = 0x0400;
constexpr uint32_t kGicdIcfgr = 0x0c00;
constexpr uint32_t kGicdIrouter = 0x6000;

constexpr uint32_t kGicrCtlr = 0x0000;
constexpr uint32_t kSgiBase = 0x10000;
constexpr uint32_t kGicrIgroupr0 = kSgiBase + 0x0080;
constexpr uint32_t kGicrIsenabler0 = kSgiBase + 0x0100;
constexpr uint32_t kGicrIspendr0 = kSgiBase + 0x0200;
constexpr uint32_t kGicrIsactiver0 = kSgiBase + 0x0300;
constexpr uint32_t kGicrIpriorityr0 = kSgiBase + 0x0400;
constexpr uint32_t kGicrIcfgr0 = kSgiBase + 0x0c00;

constexpr uint64_t sysreg(uint64_t op0, uint64_t op1, uint64_t crn, uint64_t crm, uint64_t op2) {
  return op0 << 14 | op1 << 11 | crn << 7 | crm << 3 | op2;
}
constexpr uint64_t kIccPmr = sysreg(3, 0, 4, 6, 0);
constexpr uint64_t kIccBpr0 = sysreg(3, 0, 12, 8, 3);
constexpr uint64_t kIccBpr1 = sysreg(3, 0, 12, 12, 3);
constexpr uint64_t kIccCtlr = sysreg(3, 0, 12, 12, 4);
constexpr uint64_t kIccSre = sysreg(3, 0, 12, 12, 5);
constexpr uint64_t kIccIgrpen0 = sysreg(3, 0, 12, 12, 6);
constexpr uint64_t kIccIgrpen1 = sysreg(3, 0, 12, 12, 7);
constexpr uint64_t icc_ap0r(uint64_t n) { return sysreg(3, 0, 12, 8, 4 + n); }
constexpr uint64_t icc_ap1r(uint64_t n) { return sysreg(3, 0, 12, 9, n); }

uint64_t mpidr_attr(uint32_t vcpu) { return vcpu_mpidr(vcpu) << KVM_DEV_ARM_VGIC_V3_MPIDR_SHIFT; }

Status gic_attr(int fd, bool set, uint32_t group, uint64_t attr, void* value, const char* what) {
  kvm_device_attr a{};
  a.group = group;
  a.attr = attr;
  a.addr = reinterpret_cast<uint64_t>(value);
  if (::ioctl(fd, set ? KVM_SET_DEVICE_ATTR : KVM_GET_DEVICE_ATTR, &a) < 0)
    return errno_error(strfmt("vGIC %s %s 0x%llx", set ? "set" : "get", what, static_cast<unsigned long long>(attr)));
  return ok_status();
}

// Distributor registers covering the SPIs, in restore order: configuration
// first, then pending and active state, enables last.
std::vector<uint32_t> dist_offsets() {
  std::vector<uint32_t> o = {kGicdCtlr};
  const uint32_t first = 32, end = kGicNumIrqs;
  for (uint32_t i = first; i < end; i += 32) o.push_back(kGicdIgroupr + i / 8);
  for (uint32_t i = first; i < end; i += 16) o.push_back(kGicdIcfgr + i / 4);
  for (uint32_t i = first; i < end; i += 4) o.push_back(kGicdIpriorityr + i);
  for (uint32_t i = first; i < end; i++) {
    o.push_back(kGicdIrouter + 8 * i);
    o.push_back(kGicdIrouter + 8 * i + 4);
  }
  for (uint32_t i = first; i < end; i += 32) o.push_back(kGicdIspendr + i / 8);
  for (uint32_t i = first; i < end; i += 32) o.push_back(kGicdIsactiver + i / 8);
  for (uint32_t i = first; i < end; i += 32) o.push_back(kGicdIsenabler + i / 8);
  return o;
}

std::vector<uint32_t> redist_offsets() {
  std::vector<uint32_t> o = {kGicrCtlr, kGicrIgroupr0, kGicrIcfgr0, kGicrIcfgr0 + 4};
  for (uint32_t i = 0; i < 8; i++) o.push_back(kGicrIpriorityr0 + 4 * i);
  o.push_back(kGicrIspendr0);
  o.push_back(kGicrIsactiver0);
  o.push_back(kGicrIsenabler0);
  return o;
}

std::vector<uint64_t> cpu_sysregs() {
  std::vector<uint64_t> r = {kIccSre, kIccCtlr, kIccPmr, kIccBpr0, kIccBpr1};
  for (uint64_t n = 0; n < 4; n++) r.push_back(icc_ap0r(n));
  for (uint64_t n = 0; n < 4; n++) r.push_back(icc_ap1r(n));
  r.push_back(kIccIgrpen0);
  r.push_back(kIccIgrpen1);
  return r;
}

uint64_t id_reg(uint64_t op0, uint64_t op1, uint64_t crn, uint64_t crm, uint64_t op2) {
  return KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG | sysreg(op0, op1, crn, crm, op2);
}

struct IdReg {
  const char* name;
  uint64_t id;
};
// Guest-visible identification: KVM 6.1 cannot rewrite these, so the
// contract records them and restore demands equality.
const IdReg kIdRegs[] = {
    {"MIDR_EL1", id_reg(3, 0, 0, 0, 0)},          {"REVIDR_EL1", id_reg(3, 0, 0, 0, 6)},
    {"ID_AA64PFR0_EL1", id_reg(3, 0, 0, 4, 0)},   {"ID_AA64PFR1_EL1", id_reg(3, 0, 0, 4, 1)},
    {"ID_AA64ZFR0_EL1", id_reg(3, 0, 0, 4, 4)},   {"ID_AA64DFR0_EL1", id_reg(3, 0, 0, 5, 0)},
    {"ID_AA64DFR1_EL1", id_reg(3, 0, 0, 5, 1)},   {"ID_AA64ISAR0_EL1", id_reg(3, 0, 0, 6, 0)},
    {"ID_AA64ISAR1_EL1", id_reg(3, 0, 0, 6, 1)},  {"ID_AA64ISAR2_EL1", id_reg(3, 0, 0, 6, 2)},
    {"ID_AA64MMFR0_EL1", id_reg(3, 0, 0, 7, 0)},  {"ID_AA64MMFR1_EL1", id_reg(3, 0, 0, 7, 1)},
    {"ID_AA64MMFR2_EL1", id_reg(3, 0, 0, 7, 2)},  {"CTR_EL0", id_reg(3, 3, 0, 0, 1)},
    {"CLIDR_EL1", id_reg(3, 1, 0, 0, 1)},
};

}  // namespace

Result<VcpuState> save_vcpu(const kvm::Vcpu& vcpu) {
  VcpuState s;
  s.index = vcpu.index();
  SPORE_ASSIGN_OR_RETURN(std::vector<uint64_t> ids, vcpu.reg_list());
  s.regs.reserve(ids.size());
  for (uint64_t id : ids) {
    size_t size = kvm::one_reg_size(id);
    if (size > 2048) return make_error(ErrorKind::kInternal, "register wider than 2048 bytes");
    RegValue r;
    r.id = id;
    r.value.resize(size);
    SPORE_TRY(vcpu.get_one_reg(id, r.value.data()));
    s.regs.push_back(std::move(r));
  }
  SPORE_ASSIGN_OR_RETURN(kvm_mp_state mp, vcpu.get_mp_state());
  s.mp_state = mp.mp_state;
  kvm_vcpu_events ev{};
  if (::ioctl(vcpu.fd(), KVM_GET_VCPU_EVENTS, &ev) < 0) return errno_error("KVM_GET_VCPU_EVENTS");
  s.events.assign(reinterpret_cast<const char*>(&ev), sizeof ev);
  return s;
}

Status restore_vcpu(const kvm::Vcpu& vcpu, const VcpuState& s) {
  for (const auto& r : s.regs) {
    if (r.value.size() != kvm::one_reg_size(r.id))
      return make_error(ErrorKind::kCorrupt, "register value size does not match its id");
    auto st = vcpu.set_one_reg(r.id, r.value.data());
    if (!st.ok()) return std::move(st).error().wrap(strfmt("restoring vCPU %u", s.index));
  }
  kvm_mp_state mp{s.mp_state};
  SPORE_TRY(vcpu.set_mp_state(mp));
  if (s.events.size() != sizeof(kvm_vcpu_events)) return make_error(ErrorKind::kCorrupt, "bad vCPU events size");
  kvm_vcpu_events ev;
  std::memcpy(&ev, s.events.data(), sizeof ev);
  if (::ioctl(vcpu.fd(), KVM_SET_VCPU_EVENTS, &ev) < 0) return errno_error("KVM_SET_VCPU_EVENTS");
  return ok_status();
}

Result<GicState> save_gic(int fd, uint32_t vcpus) {
  GicState g;
  for (uint32_t off : dist_offsets()) {
    uint32_t v = 0;
    SPORE_TRY(gic_attr(fd, false, KVM_DEV_ARM_VGIC_GRP_DIST_REGS, off, &v, "distributor register"));
    g.dist.emplace_back(off, v);
  }
  for (uint32_t c = 0; c < vcpus; c++) {
    GicCpuState cs;
    cs.vcpu = c;
    for (uint32_t off : redist_offsets()) {
      uint32_t v = 0;
      SPORE_TRY(gic_attr(fd, false, KVM_DEV_ARM_VGIC_GRP_REDIST_REGS, mpidr_attr(c) | off, &v,
                         "redistributor register"));
      cs.redist.emplace_back(off, v);
    }
    for (uint64_t instr : cpu_sysregs()) {
      uint64_t v = 0;
      // Only as many active-priority registers exist as the priority bits
      // need; KVM refuses the others, which is how we learn the count.
      if (!gic_attr(fd, false, KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS, mpidr_attr(c) | instr, &v, "CPU register").ok()) {
        if (instr == kIccSre || instr == kIccCtlr || instr == kIccPmr)
          return make_error(ErrorKind::kInternal, "cannot read the vGIC CPU interface");
        continue;
      }
      cs.sysregs.emplace_back(instr, v);
    }
    g.cpus.push_back(std::move(cs));
  }
  for (uint32_t intid = 32; intid < kGicNumIrqs; intid += 32) {
    uint32_t bits = 0;
    uint64_t attr = mpidr_attr(0) |
                    (static_cast<uint64_t>(VGIC_LEVEL_INFO_LINE_LEVEL) << KVM_DEV_ARM_VGIC_LINE_LEVEL_INFO_SHIFT) | intid;
    SPORE_TRY(gic_attr(fd, false, KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO, attr, &bits, "line level"));
    g.levels.emplace_back(intid, bits);
  }
  return g;
}

Status restore_gic(int fd, uint32_t vcpus, const GicState& g) {
  if (g.cpus.size() != vcpus) return make_error(ErrorKind::kCorrupt, "GIC state is for another vCPU count");
  for (auto [off, val] : g.dist) {
    if (off >= kGicDistSize) return make_error(ErrorKind::kCorrupt, "GIC distributor offset out of range");
    uint32_t v = val;
    SPORE_TRY(gic_attr(fd, true, KVM_DEV_ARM_VGIC_GRP_DIST_REGS, off, &v, "distributor register"));
  }
  for (const auto& cs : g.cpus) {
    if (cs.vcpu >= vcpus) return make_error(ErrorKind::kCorrupt, "GIC state names a vCPU that does not exist");
    for (auto [off, val] : cs.redist) {
      if (off >= kGicRedistSizePerCpu) return make_error(ErrorKind::kCorrupt, "GIC redistributor offset out of range");
      uint32_t v = val;
      SPORE_TRY(gic_attr(fd, true, KVM_DEV_ARM_VGIC_GRP_REDIST_REGS, mpidr_attr(cs.vcpu) | off, &v,
                         "redistributor register"));
    }
  }
  for (auto [intid, bits] : g.levels) {
    if (intid % 32 || intid < 32 || intid >= kGicNumIrqs) return make_error(ErrorKind::kCorrupt, "bad GIC level entry");
    uint32_t v = bits;
    uint64_t attr = mpidr_attr(0) |
                    (static_cast<uint64_t>(VGIC_LEVEL_INFO_LINE_LEVEL) << KVM_DEV_ARM_VGIC_LINE_LEVEL_INFO_SHIFT) | intid;
    SPORE_TRY(gic_attr(fd, true, KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO, attr, &v, "line level"));
  }
  for (const auto& cs : g.cpus) {
    for (auto [instr, val] : cs.sysregs) {
      if (instr & ~static_cast<uint64_t>(KVM_DEV_ARM_VGIC_SYSREG_INSTR_MASK))
        return make_error(ErrorKind::kCorrupt, "bad GIC CPU register");
      uint64_t v = val;
      SPORE_TRY(gic_attr(fd, true, KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS, mpidr_attr(cs.vcpu) | instr, &v, "CPU register"));
    }
  }
  return ok_status();
}

Result<PlatformFacts> host_platform(const kvm::Kvm& kvm, const kvm::Vm& vm, const kvm::Vcpu& vcpu0, int gic_fd,
                                    const CpuTemplate& tmpl, uint32_t ipa_bits) {
  PlatformFacts p;
  p.arch = "aarch64";
  p.board_version = kBoardVersion;
  p.page_size = static_cast<uint32_t>(::sysconf(_SC_PAGESIZE));
  p.ipa_bits = ipa_bits;
  p.vcpu_target = tmpl.target;
  p.vcpu_features = tmpl.features0;
  p.gic = "v3";
  uint32_t iidr = 0;
  SPORE_TRY(gic_attr(gic_fd, false, KVM_DEV_ARM_VGIC_GRP_DIST_REGS, kGicdIidr, &iidr, "distributor register"));
  p.gic_iidr = iidr;
  struct Cap {
    const char* name;
    long cap;
    bool vm;
  };
  const Cap caps[] = {{"IOEVENTFD", KVM_CAP_IOEVENTFD, true},     {"IRQFD", KVM_CAP_IRQFD, true},
                      {"ONE_REG", KVM_CAP_ONE_REG, false},        {"MP_STATE", KVM_CAP_MP_STATE, false},
                      {"VCPU_EVENTS", KVM_CAP_VCPU_EVENTS, false}, {"IMMEDIATE_EXIT", KVM_CAP_IMMEDIATE_EXIT, false},
                      {"ARM_PSCI_0_2", KVM_CAP_ARM_PSCI_0_2, false}, {"DEVICE_CTRL", KVM_CAP_DEVICE_CTRL, false}};
  for (const auto& c : caps)
    if ((c.vm ? vm.check_extension(c.cap) : kvm.check_extension(c.cap)) > 0) p.kvm_caps.push_back(c.name);
  std::sort(p.kvm_caps.begin(), p.kvm_caps.end());
  for (const auto& r : kIdRegs) {
    uint64_t v = 0;
    if (vcpu0.get_one_reg(r.id, &v).ok()) p.id_regs.emplace_back(r.name, v);
  }
  SPORE_ASSIGN_OR_RETURN(std::vector<uint64_t> ids, vcpu0.reg_list());
  std::sort(ids.begin(), ids.end());
  p.reg_list_sha256 = digest_hex(sha256(ids.data(), ids.size() * sizeof(uint64_t)));
  return p;
}

}  // namespace spore::vmm::aarch64
