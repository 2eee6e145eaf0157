#include "vmm/spore/state.h"

#include <cstring>
#include <initializer_list>

#include "base/codec.h"
#include "base/strings.h"

namespace spore::vmm {
namespace {

constexpr char kMagic[8] = {'S', 'P', 'O', 'R', 'S', 'T', 'A', 'T'};
constexpr uint32_t kVersion = 1;

enum Tag : uint32_t {
  kTagVcpu = 1,
  kTagGic = 2,
  kTagUart = 3,
  kTagRtc = 4,
  kTagGeneration = 5,
  kTagVirtio = 6,
  kTagEnd = 0xffffffff,  // last section, empty: a file cut at a section boundary is still caught
};

constexpr uint32_t kMaxSection = 16u << 20;
constexpr uint32_t kMaxItems = 1u << 16;

void section(Encoder& out, Tag tag, Encoder& body) {
  std::string b = body.take();
  out.u32(tag);
  out.u32(static_cast<uint32_t>(b.size()));
  out.bytes(b.data(), b.size());
}

Error corrupt(const char* what) { return make_error(ErrorKind::kCorrupt, strfmt("spore state: %s", what)); }

Result<VcpuState> load_vcpu(Decoder& d) {
  VcpuState v;
  v.index = d.u32();
  v.mp_state = d.u32();
  uint32_t n = d.u32();
  if (!d.ok() || n > kMaxItems) return corrupt("bad vCPU register count");
  v.regs.resize(n);
  for (auto& r : v.regs) {
    r.id = d.u64();
    uint32_t len = d.u32();
    // ONE_REG sizes are powers of two up to 2048 bytes (SVE).
    if (!d.ok() || len == 0 || len > 2048 || (len & (len - 1))) return corrupt("bad vCPU register size");
    r.value = std::string(d.view(len));
  }
  v.events = d.str();
  if (!d.ok() || v.events.size() > 4096) return corrupt("truncated vCPU state");
  return v;
}

Result<GicState> load_gic(Decoder& d) {
  GicState g;
  uint32_t n = d.u32();
  if (!d.ok() || n > kMaxItems) return corrupt("bad GIC distributor count");
  for (uint32_t i = 0; i < n; i++) {
    uint32_t off = d.u32();
    g.dist.emplace_back(off, d.u32());
  }
  uint32_t cpus = d.u32();
  if (!d.ok() || cpus > 1024) return corrupt("bad GIC CPU count");
  for (uint32_t c = 0; c < cpus; c++) {
    GicCpuState cs;
    cs.vcpu = d.u32();
    uint32_t nr = d.u32();
    if (!d.ok() || nr > kMaxItems) return corrupt("bad GIC redistributor count");
    for (uint32_t i = 0; i < nr; i++) {
      uint32_t off = d.u32();
      cs.redist.emplace_back(off, d.u32());
    }
    uint32_t ns = d.u32();
    if (!d.ok() || ns > kMaxItems) return corrupt("bad GIC sysreg count");
    for (uint32_t i = 0; i < ns; i++) {
      uint64_t instr = d.u64();
      cs.sysregs.emplace_back(instr, d.u64());
    }
    g.cpus.push_back(std::move(cs));
  }
  uint32_t nl = d.u32();
  if (!d.ok() || nl > kMaxItems) return corrupt("bad GIC level count");
  for (uint32_t i = 0; i < nl; i++) {
    uint32_t intid = d.u32();
    g.levels.emplace_back(intid, d.u32());
  }
  if (!d.ok()) return corrupt("truncated GIC state");
  return g;
}

}  // namespace

std::string encode_machine_state(const MachineState& s) {
  Encoder out;
  out.bytes(kMagic, sizeof kMagic);
  out.u32(kVersion);
  out.u32(s.board_version);
  for (const auto& v : s.vcpus) {
    Encoder b;
    b.u32(v.index);
    b.u32(v.mp_state);
    b.u32(static_cast<uint32_t>(v.regs.size()));
    for (const auto& r : v.regs) {
      b.u64(r.id);
      b.u32(static_cast<uint32_t>(r.value.size()));
      b.bytes(r.value.data(), r.value.size());
    }
    b.str(v.events);
    section(out, kTagVcpu, b);
  }
  {
    Encoder b;
    b.u32(static_cast<uint32_t>(s.gic.dist.size()));
    for (auto [off, val] : s.gic.dist) {
      b.u32(off);
      b.u32(val);
    }
    b.u32(static_cast<uint32_t>(s.gic.cpus.size()));
    for (const auto& c : s.gic.cpus) {
      b.u32(c.vcpu);
      b.u32(static_cast<uint32_t>(c.redist.size()));
      for (auto [off, val] : c.redist) {
        b.u32(off);
        b.u32(val);
      }
      b.u32(static_cast<uint32_t>(c.sysregs.size()));
      for (auto [instr, val] : c.sysregs) {
        b.u64(instr);
        b.u64(val);
      }
    }
    b.u32(static_cast<uint32_t>(s.gic.levels.size()));
    for (auto [intid, bits] : s.gic.levels) {
      b.u32(intid);
      b.u32(bits);
    }
    section(out, kTagGic, b);
  }
  {
    Encoder b;
    Pl011::save(b, s.uart);
    section(out, kTagUart, b);
  }
  {
    Encoder b;
    Pl031::save(b, s.rtc);
    section(out, kTagRtc, b);
  }
  {
    Encoder b;
    GenerationDevice::save(b, s.generation);
    section(out, kTagGeneration, b);
  }
  for (const auto& v : s.virtio) {
    Encoder b;
    b.u32(v.slot);
    b.u32(v.device_type);
    virtio::MmioTransport::save(b, v.transport);
    section(out, kTagVirtio, b);
  }
  Encoder end;
  section(out, kTagEnd, end);
  return out.take();
}

Result<MachineState> decode_machine_state(std::string_view data) {
  Decoder d(data);
  char magic[8];
  if (!d.bytes(magic, sizeof magic) || std::memcmp(magic, kMagic, sizeof magic) != 0) return corrupt("bad magic");
  uint32_t version = d.u32();
  if (d.ok() && version != kVersion)
    return make_error(ErrorKind::kCorrupt, strfmt("spore state version %u is not supported", version));
  MachineState s;
  s.board_version = d.u32();
  // Sections come in one order, each at most once (doc/spore-format.md):
  // VCPU+ GIC UART RTC GENERATION VIRTIO* END. `at` is the last one seen.
  uint32_t at = 0;  // nothing yet
  bool ended = false;
  while (d.ok() && d.remaining() > 0 && !ended) {
    uint32_t tag = d.u32();
    uint32_t len = d.u32();
    if (!d.ok() || len > kMaxSection || len > d.remaining()) return corrupt("section overruns the file");
    Decoder body(d.view(len));
    // Which section may come before this one (VCPU and VIRTIO repeat).
    auto follows = [&](std::initializer_list<uint32_t> allowed, const char* name) -> Status {
      for (uint32_t a : allowed)
        if (at == a) return ok_status();
      return make_error(ErrorKind::kCorrupt,
                        strfmt("spore state: %s section out of order or repeated", name));
    };
    switch (tag) {
      case kTagVcpu: {
        SPORE_TRY(follows({0, kTagVcpu}, "VCPU"));
        SPORE_ASSIGN_OR_RETURN(VcpuState v, load_vcpu(body));
        if (v.index != s.vcpus.size()) return corrupt("vCPU sections out of order");
        s.vcpus.push_back(std::move(v));
        break;
      }
      case kTagGic: {
        SPORE_TRY(follows({kTagVcpu}, "GIC"));
        SPORE_ASSIGN_OR_RETURN(s.gic, load_gic(body));
        break;
      }
      case kTagUart: {
        SPORE_TRY(follows({kTagGic}, "UART"));
        SPORE_ASSIGN_OR_RETURN(s.uart, Pl011::load(body));
        break;
      }
      case kTagRtc: {
        SPORE_TRY(follows({kTagUart}, "RTC"));
        SPORE_ASSIGN_OR_RETURN(s.rtc, Pl031::load(body));
        break;
      }
      case kTagGeneration: {
        SPORE_TRY(follows({kTagRtc}, "GENERATION"));
        SPORE_ASSIGN_OR_RETURN(s.generation, GenerationDevice::load(body));
        break;
      }
      case kTagVirtio: {
        SPORE_TRY(follows({kTagGeneration, kTagVirtio}, "VIRTIO"));
        VirtioSlotState v;
        v.slot = body.u32();
        v.device_type = body.u32();
        // One section per device, by increasing slot: a slot given twice
        // would restore one device twice and leave another as it was.
        if (body.ok() && !s.virtio.empty() && v.slot <= s.virtio.back().slot)
          return corrupt("VIRTIO sections out of slot order or repeated");
        SPORE_ASSIGN_OR_RETURN(v.transport, virtio::MmioTransport::load(body));
        s.virtio.push_back(std::move(v));
        break;
      }
      case kTagEnd:
        if (at != kTagGeneration && at != kTagVirtio) return corrupt("a required section is missing");
        ended = true;
        break;
      default:
        return corrupt("unknown section");
    }
    at = tag;
    if (!body.done()) return corrupt("section has trailing or missing bytes");
  }
  if (!ended || !d.done()) return corrupt("truncated or followed by garbage");
  return s;
}

}  // namespace spore::vmm
