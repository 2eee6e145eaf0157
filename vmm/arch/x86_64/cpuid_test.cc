#include "vmm/arch/x86_64/cpuid.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <set>

using namespace spore;
using namespace spore::vmm::x86_64;

namespace {

constexpr uint32_t kAll = 0xffff'ffff;

uint32_t word(const char* s) {
  uint32_t v;
  std::memcpy(&v, s, 4);
  return v;
}

// What KVM_GET_SUPPORTED_CPUID could say on a generous AMD host: every
// feature bit set, plus leaves full of host detail.
std::vector<CpuidEntry> generous_host(uint32_t xcr0 = 0xe7) {
  std::vector<CpuidEntry> v = {
      {0, 0, 0, 0x10, word("Auth"), word("cAMD"), word("enti")},
      {1, 0, 0, 0x00a00f11, 0x00020800, kAll, kAll},
      {2, 0, 0, 1, 2, 3, 4},
      {4, 0, 1, 0x1234, 0x5678, 0x9abc, 0xdef0},
      {5, 0, 0, 0x40, 0x40, 3, 0x11142120},
      {6, 0, 0, kAll, kAll, kAll, kAll},
      {7, 0, 1, 1, kAll, kAll, kAll},
      {7, 1, 1, kAll, kAll, kAll, kAll},
      {0xa, 0, 0, kAll, kAll, kAll, kAll},
      {0xd, 0, 1, xcr0 | 0x200, 0x980, 0x988, 0},
      {0xd, 1, 1, 0xf, 0x340, 0x1800, 0},
      {0xd, 2, 1, 0x100, 0x240, 0, 0},
      {0xd, 5, 1, 0x40, 0x340, 0, 0},
      {0xd, 6, 1, 0x200, 0x380, 0, 0},
      {0xd, 7, 1, 0x400, 0x580, 0, 0},
      {0xd, 9, 1, 8, 0x980, 0, 0},
      {0x10, 0, 0, kAll, kAll, kAll, kAll},
      {0x4000'0000, 0, 0, 0x4000'0001, word("KVMK"), word("VMKV"), word("M\0\0\0")},
      {0x4000'0001, 0, 0, kAll, 0, 0, 1},
      {0x8000'0000, 0, 0, 0x8000'0021, word("Auth"), word("cAMD"), word("enti")},
      {0x8000'0001, 0, 0, 0x00a00f11, kAll, kAll, kAll},
      {0x8000'0002, 0, 0, word("AMD "), word("EPYC"), word(" 737"), word("3X  ")},
      {0x8000'0003, 0, 0, 1, 2, 3, 4},
      {0x8000'0004, 0, 0, 5, 6, 7, 8},
      {0x8000'0005, 0, 0, 0xff40ff40, 0xff40ff40, 0x20080140, 0x20080140},
      {0x8000'0006, 0, 0, 0x48002200, 0x68004200, 0x02006140, 0x01009140},
      {0x8000'0007, 0, 0, kAll, kAll, kAll, kAll},
      {0x8000'0008, 0, 0, 0x3030, kAll, 0x707f, kAll},
      {0x8000'000a, 0, 0, 1, 0x8000, 0, kAll},
      {0x8000'001d, 0, 1, 0x121, 0x1c0003f, 0x3f, 0},
      {0x8000'001f, 0, 0, kAll, kAll, kAll, kAll},
  };
  return v;
}

const CpuidEntry& leaf(const std::vector<CpuidEntry>& t, uint32_t f, uint32_t i = 0) {
  const CpuidEntry* e = find_cpuid(t, f, i);
  REQUIRE(e != nullptr);
  return *e;
}

std::vector<CpuidEntry> normalized(const std::vector<CpuidEntry>& host, uint32_t vcpus = 1) {
  CpuidOptions o;
  o.vcpus = vcpus;
  o.tsc_deadline = true;
  auto t = normalize_cpuid(host, o);
  REQUIRE(t.ok());
  return *t;
}

}  // namespace

TEST_CASE("CPUID: only the board's leaves, and none of the host's caches, model name, PMU or virtualization",
          "[cpuid]") {
  auto t = normalized(generous_host());
  std::set<uint32_t> functions;
  for (const auto& e : t) functions.insert(e.function);
  CHECK(functions == std::set<uint32_t>{0, 1, 6, 7, 0xb, 0xd, 0x4000'0000, 0x4000'0001, 0x8000'0000, 0x8000'0001,
                                         0x8000'0002, 0x8000'0003, 0x8000'0004, 0x8000'0005, 0x8000'0006,
                                         0x8000'0007, 0x8000'0008});
  CHECK(leaf(t, 0).eax == 0xd);
  CHECK(leaf(t, 0).ebx == word("Auth"));  // the vendor stays
  CHECK(leaf(t, 0x8000'0000).eax == 0x8000'0008);
  CHECK(leaf(t, 1).eax == 0x00a00f11);    // and so do family, model, stepping
  // Not shown: VMX (1.ECX 5), monitor (3), PDCM (15), OSXSAVE (27, KVM's),
  // MCE/MCA (1.EDX 7, 14), SVM (0x80000001.ECX 2), TOPOEXT (22).
  for (int bit : {3, 5, 15, 27}) CHECK((leaf(t, 1).ecx & (1u << bit)) == 0);
  for (int bit : {7, 14}) CHECK((leaf(t, 1).edx & (1u << bit)) == 0);
  for (int bit : {2, 22}) CHECK((leaf(t, 0x8000'0001).ecx & (1u << bit)) == 0);
  CHECK((leaf(t, 1).ecx & (1u << 31)) != 0);  // hypervisor present
  CHECK((leaf(t, 1).ecx & (1u << 24)) != 0);  // TSC deadline, as asked
  CHECK(leaf(t, 6).eax == 4);                  // ARAT only
  CHECK(leaf(t, 7).eax == 0);                  // no subleaf 1
  CHECK(find_cpuid(t, 7, 1) == nullptr);
  CHECK((leaf(t, 7).edx & (1u << 26)) == 0);   // no SPEC_CTRL MSR
  CHECK((leaf(t, 7).ecx & (1u << 3)) == 0);    // no PKU
  CHECK((leaf(t, 7).ecx & (1u << 16)) == 0);   // no LA57
  CHECK(leaf(t, 0x8000'0005) == CpuidEntry{0x8000'0005, 0, 0, 0, 0, 0, 0});
  CHECK(leaf(t, 0x8000'0006) == CpuidEntry{0x8000'0006, 0, 0, 0, 0, 0, 0});
  char brand[49] = {};
  for (uint32_t i = 0; i < 3; i++) std::memcpy(brand + 16 * i, &leaf(t, 0x8000'0002 + i).eax, 16);
  CHECK(std::string(brand) == "spore x86_64 vCPU");
  // kvmclock and the stable bit, not async page faults or PV EOI.
  CHECK(leaf(t, 0x4000'0001).eax == ((1u << 0) | (1u << 1) | (1u << 3) | (1u << 24)));
  CHECK(leaf(t, 0x4000'0001).edx == 0);
  CHECK((leaf(t, 0x8000'0008).eax & 0xff) == 0x30);  // the host's physical address width
}

TEST_CASE("CPUID: two hosts with the same features but different caches and names give the same table", "[cpuid]") {
  auto a = generous_host();
  auto b = generous_host();
  for (auto& e : b) {
    if (e.function == 4 || e.function == 2 || e.function == 0x8000'0005 || e.function == 0x8000'0006 ||
        e.function == 0x8000'001d || e.function == 0x8000'0002)
      e.eax ^= 0x5555;
  }
  CHECK(normalized(a, 2) == normalized(b, 2));
}

TEST_CASE("CPUID: the topology is one package of vCPU cores, with each vCPU's APIC ID", "[cpuid]") {
  auto t = normalized(generous_host(), 3);
  CHECK(((leaf(t, 1).ebx >> 16) & 0xff) == 3);
  CHECK((leaf(t, 1).edx & (1u << 28)) != 0);  // HTT: more than one logical processor
  CHECK(leaf(t, 0xb, 1).eax == 2);            // 2 bits of APIC ID for 3 cores
  CHECK(leaf(t, 0xb, 1).ebx == 3);
  CHECK(leaf(t, 0xb, 0).ebx == 1);            // one thread per core
  CHECK((leaf(t, 0x8000'0008).ecx & 0xff) == 2);
  auto v2 = cpuid_for_vcpu(t, 2);
  CHECK(leaf(v2, 1).ebx >> 24 == 2);
  CHECK(leaf(v2, 0xb, 0).edx == 2);
  CHECK(leaf(v2, 0xb, 1).edx == 2);
  auto one = normalized(generous_host(), 1);
  CHECK((leaf(one, 1).edx & (1u << 28)) == 0);
  CHECK((leaf(one, 0x8000'0001).ecx & 2) == 0);  // CmpLegacy only with several cores
}

TEST_CASE("CPUID: XSAVE shows the allowed state components and their sizes, and features follow their state",
          "[cpuid]") {
  auto t = normalized(generous_host());
  const CpuidEntry& d0 = leaf(t, 0xd, 0);
  CHECK(d0.eax == 0xe7);  // x87 SSE AVX + AVX-512's three, never PKRU (bit 9)
  CHECK(d0.edx == 0);
  CHECK(d0.ecx == 0x980);  // the end of the last component (0x580 + 0x400)
  CHECK(leaf(t, 0xd, 1).eax == 0x7);  // XSAVEOPT, XSAVEC, XGETBV1; not XSAVES
  CHECK(find_cpuid(t, 0xd, 9) == nullptr);
  CHECK(leaf(t, 0xd, 7).eax == 0x400);
  CHECK((leaf(t, 7).ebx & (1u << 16)) != 0);  // AVX512F

  SECTION("half of AVX-512's state: no AVX-512 at all") {
    auto u = normalized(generous_host(0x67));
    CHECK(leaf(u, 0xd, 0).eax == 0x7);
    CHECK(leaf(u, 0xd, 0).ecx == 0x340);
    CHECK((leaf(u, 7).ebx & (1u << 16)) == 0);
    CHECK((leaf(u, 7).ebx & (1u << 5)) != 0);  // AVX2 stays
    CHECK(find_cpuid(u, 0xd, 5) == nullptr);
  }
  SECTION("no AVX state: no AVX, AVX2, FMA or AVX-512 either") {
    auto u = normalized(generous_host(0x3));
    CHECK(leaf(u, 0xd, 0).eax == 0x3);
    CHECK((leaf(u, 1).ecx & (1u << 28)) == 0);
    CHECK((leaf(u, 1).ecx & (1u << 12)) == 0);
    CHECK((leaf(u, 7).ebx & (1u << 5)) == 0);
    CHECK((leaf(u, 7).ebx & (1u << 16)) == 0);
  }
}

TEST_CASE("CPUID: a host without what the board needs is refused with a reason", "[cpuid]") {
  auto without = [](uint32_t function) {
    auto h = generous_host();
    std::erase_if(h, [function](const CpuidEntry& e) { return e.function == function; });
    return h;
  };
  for (uint32_t f : {0x4000'0000u, 0x4000'0001u, 0xdu, 0x8000'0001u}) {
    INFO(std::hex << f);
    auto r = normalize_cpuid(without(f), CpuidOptions{});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::kUnavailable);
  }
  auto no_lm = generous_host();
  for (auto& e : no_lm)
    if (e.function == 0x8000'0001) e.edx &= ~(1u << 29);
  auto r = normalize_cpuid(no_lm, CpuidOptions{});
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message, Catch::Contains("long mode"));
}
