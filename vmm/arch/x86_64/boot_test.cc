#include "vmm/arch/x86_64/boot.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "vmm/arch/x86_64/layout.h"

using namespace spore;
using namespace spore::vmm;
using namespace spore::vmm::x86_64;

namespace {

constexpr uint64_t kMiB = 1ull << 20;

template <class T>
void put(std::string& d, size_t off, T v) {
  std::memcpy(d.data() + off, &v, sizeof v);
}
template <class T>
T get(const uint8_t* p, size_t off) {
  T v;
  std::memcpy(&v, p + off, sizeof v);
  return v;
}

// A bzImage as far as a loader can tell: setup sectors, then the
// protected-mode part (filled with 'k').
std::string bzimage(size_t pm_size, uint32_t init_size = 8 << 20, uint16_t version = 0x020f, uint16_t xlf = 1) {
  const uint8_t setup_sects = 4;
  std::string d((setup_sects + 1) * 512 + pm_size, 'k');
  std::memset(d.data(), 0, (setup_sects + 1) * 512);
  d[0x1f1] = static_cast<char>(setup_sects);
  put<uint16_t>(d, 0x1fe, 0xaa55);
  d[0x200] = static_cast<char>(0xeb);  // jmp over the header, to 0x26c
  d[0x201] = 0x6a;
  std::memcpy(d.data() + 0x202, "HdrS", 4);
  put<uint16_t>(d, 0x206, version);
  d[0x211] = 1;                              // LOADED_HIGH
  put<uint32_t>(d, 0x22c, 0x7fffffff);       // initrd_addr_max
  put<uint32_t>(d, 0x230, 2 << 20);          // kernel_alignment
  d[0x234] = 1;                              // relocatable
  put<uint16_t>(d, 0x236, xlf);
  put<uint32_t>(d, 0x238, 2047);             // cmdline_size
  put<uint64_t>(d, 0x258, 16 * kMiB);        // pref_address
  put<uint32_t>(d, 0x260, init_size);
  return d;
}

// A vmlinux as far as a loader can tell: ELF header, program headers, a
// text segment mapped at __START_KERNEL_map and a per-CPU one at 0 (as
// x86_64 vmlinux files have), then the segments' bytes.
struct Seg {
  uint64_t vaddr, paddr, filesz, memsz;
  char fill;
};
std::string vmlinux(const std::vector<Seg>& segs, uint64_t entry, uint16_t machine = 62, uint64_t vaddr_base = 0) {
  const size_t phoff = 64, data_at = 0x1000;
  std::string d(data_at, '\0');
  std::memcpy(d.data(), "\x7f" "ELF", 4);
  d[4] = 2;  // 64-bit
  d[5] = 1;  // little-endian
  d[6] = 1;
  put<uint16_t>(d, 16, 2);  // ET_EXEC
  put<uint16_t>(d, 18, machine);
  put<uint64_t>(d, 24, entry);
  put<uint64_t>(d, 32, phoff);
  put<uint16_t>(d, 54, 56);
  put<uint16_t>(d, 56, static_cast<uint16_t>(segs.size()));
  for (size_t i = 0; i < segs.size(); i++) {
    size_t ph = phoff + 56 * i;
    put<uint32_t>(d, ph, 1);  // PT_LOAD
    put<uint64_t>(d, ph + 8, d.size());
    put<uint64_t>(d, ph + 16, segs[i].vaddr + vaddr_base);
    put<uint64_t>(d, ph + 24, segs[i].paddr);
    put<uint64_t>(d, ph + 32, segs[i].filesz);
    put<uint64_t>(d, ph + 40, segs[i].memsz);
    d.append(segs[i].filesz, segs[i].fill);
  }
  return d;
}
constexpr uint64_t kKernelMap = 0xffff'ffff'8000'0000;

const uint8_t* bytes(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

struct TempFile {
  explicit TempFile(const std::string& data) {
    char tmpl[] = "/tmp/spore-boot-XXXXXX";
    int fd = ::mkstemp(tmpl);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()));
    ::close(fd);
    path = tmpl;
  }
  // A sparse file of size bytes.
  explicit TempFile(uint64_t size) : TempFile(std::string()) { REQUIRE(::truncate(path.c_str(), static_cast<off_t>(size)) == 0); }
  ~TempFile() { ::unlink(path.c_str()); }
  std::string path;
};

}  // namespace

TEST_CASE("x86 boot: only a bzImage with a 64-bit entry point is accepted", "[x86boot]") {
  std::string good = bzimage(4096);
  auto h = parse_setup_header(bytes(good), good.size());
  REQUIRE(h.ok());
  CHECK(h->setup_sects == 4);
  CHECK(h->pref_address == 16 * kMiB);
  CHECK(h->cmdline_size == 2047);

  CHECK_FALSE(parse_setup_header(bytes(good), 0x200).ok());  // too short
  std::string no_magic = good;
  no_magic[0x202] = 'X';
  auto e = parse_setup_header(bytes(no_magic), no_magic.size());
  REQUIRE_FALSE(e.ok());
  CHECK(e.error().kind == ErrorKind::kCorrupt);
  CHECK_THAT(e.error().message, Catch::Contains("bzImage"));
  std::string old = bzimage(4096, 8 << 20, 0x020b);
  CHECK_FALSE(parse_setup_header(bytes(old), old.size()).ok());
  std::string no64 = bzimage(4096, 8 << 20, 0x020f, 0);
  CHECK_THAT(parse_setup_header(bytes(no64), no64.size()).error().message, Catch::Contains("64-bit"));
  std::string huge = bzimage(4096, 0xffffffff);
  CHECK_FALSE(parse_setup_header(bytes(huge), huge.size()).ok());
}

TEST_CASE("x86 boot: the e820 map covers RAM exactly, around the BIOS area and the MMIO hole", "[x86boot]") {
  for (uint64_t mib : {64ull, 256ull, 3072ull, 4096ull, 65536ull}) {
    INFO(mib << " MiB");
    const uint64_t ram = mib * kMiB;
    auto map = e820_map(ram);
    uint64_t usable = 0, prev_end = 0;
    for (const auto& e : map) {
      CHECK(e.addr >= prev_end);  // sorted, no overlaps
      prev_end = e.addr + e.size;
      CHECK((e.type == kE820Ram || e.type == kE820Reserved));
      if (e.type == kE820Ram) {
        usable += e.size;
        // RAM never reaches into the MMIO hole.
        CHECK((e.addr + e.size <= kMmioHoleStart || e.addr >= kHighRamStart));
      }
    }
    // Everything but the reserved BIOS-area pieces and the VGA hole is usable.
    CHECK(usable == ram - (kBiosEnd - kLowRamEnd));
    CHECK((ram > kMmioHoleStart) == (map.back().addr == kHighRamStart));
  }
}

TEST_CASE("x86 boot: kernel at 1 MiB, initrd at the top of low RAM, clear of where the kernel decompresses",
          "[x86boot]") {
  const uint64_t ram = 128 * kMiB;
  auto mem = GuestMemory::create_anonymous(0, ram);
  REQUIRE(mem.ok());
  std::string image = bzimage(1 * kMiB);
  TempFile kernel(image);
  TempFile initrd(std::string(300000, 'i'));
  auto b = load_kernel_and_initrd(*mem, ram, kernel.path, initrd.path);
  REQUIRE(b.ok());
  CHECK(b->kernel_gpa == kKernelAddr);
  CHECK(b->entry == kKernelAddr + 0x200);
  CHECK(b->kernel_end == 16 * kMiB + (8 << 20));
  CHECK(b->initrd_gpa % 4096 == 0);
  CHECK(b->initrd_gpa >= b->kernel_end);
  CHECK(b->initrd_gpa + b->initrd_size <= ram);
  CHECK(b->initrd_size == 300000);
  // The protected-mode part, without the setup sectors, is what lands at 1 MiB.
  CHECK(mem->ptr(kKernelAddr, 1)[0] == 'k');
  CHECK(std::memcmp(mem->ptr(kKernelAddr, 1 * kMiB), image.data() + 5 * 512, 1 * kMiB) == 0);
  CHECK(mem->ptr(b->initrd_gpa, 1)[0] == 'i');
  // The header copy runs from 0x1f1 to where the jump lands.
  CHECK(b->setup_header.size() == 0x26c - 0x1f1);

  SECTION("an initrd that does not fit is refused with advice") {
    TempFile big(120 * kMiB);
    auto r = load_kernel_and_initrd(*mem, ram, kernel.path, big.path);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::kUsage);
    CHECK_THAT(r.error().message, Catch::Contains("--mem"));
  }
  SECTION("missing files are named") {
    auto r = load_kernel_and_initrd(*mem, ram, "/nonexistent/bzImage", "");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::kNotFound);
    CHECK_THAT(r.error().message, Catch::Contains("/nonexistent/bzImage"));
  }
}

TEST_CASE("x86 boot: the zero page carries the header, command line, initrd, e820 map, RSDP and RNG seed",
          "[x86boot]") {
  const uint64_t ram = 64 * kMiB;
  auto mem = GuestMemory::create_anonymous(0, ram);
  REQUIRE(mem.ok());
  TempFile kernel(bzimage(64 * 1024));
  TempFile initrd(std::string(5000, 'i'));
  auto b = load_kernel_and_initrd(*mem, ram, kernel.path, initrd.path);
  REQUIRE(b.ok());
  BootParamsConfig c;
  c.ram_size = ram;
  c.cmdline = "console=ttyS0 quiet";
  c.rsdp_addr = kAcpiAddr;
  c.rng_seed.assign(64, 0x5a);
  REQUIRE(write_boot_params(*mem, *b, c).ok());

  const uint8_t* zp = mem->ptr(kBootParamsAddr, 4096);
  CHECK(get<uint16_t>(zp, 0x1fe) == 0xaa55);
  CHECK(std::memcmp(zp + 0x202, "HdrS", 4) == 0);
  CHECK(zp[0x210] == 0xff);  // type_of_loader: undefined
  CHECK(get<uint32_t>(zp, 0x228) == kCmdlineAddr);
  CHECK(std::string(reinterpret_cast<const char*>(mem->ptr(kCmdlineAddr, 1))) == c.cmdline);
  CHECK(get<uint32_t>(zp, 0x218) == b->initrd_gpa);
  CHECK(get<uint32_t>(zp, 0x21c) == 5000);
  CHECK(get<uint64_t>(zp, 0x070) == kAcpiAddr);
  auto map = e820_map(ram);
  REQUIRE(zp[0x1e8] == map.size());
  for (size_t i = 0; i < map.size(); i++) {
    CHECK(get<uint64_t>(zp, 0x2d0 + 20 * i) == map[i].addr);
    CHECK(get<uint64_t>(zp, 0x2d0 + 20 * i + 8) == map[i].size);
    CHECK(get<uint32_t>(zp, 0x2d0 + 20 * i + 16) == map[i].type);
  }
  // setup_data: one SETUP_RNG_SEED node with the seed.
  uint64_t sd = get<uint64_t>(zp, 0x250);
  REQUIRE(sd == kSetupDataAddr);
  const uint8_t* node = mem->ptr(sd, 16 + 64);
  CHECK(get<uint64_t>(node, 0) == 0);
  CHECK(get<uint32_t>(node, 8) == 9);
  CHECK(get<uint32_t>(node, 12) == 64);
  CHECK(node[16] == 0x5a);
  CHECK(node[16 + 63] == 0x5a);

  SECTION("a command line longer than the kernel takes is refused") {
    c.cmdline = std::string(2048, 'x');
    auto s = write_boot_params(*mem, *b, c);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().kind == ErrorKind::kUsage);
    c.cmdline = std::string(2047, 'x');
    CHECK(write_boot_params(*mem, *b, c).ok());
  }
}

TEST_CASE("x86 boot: the page tables map the first 4 GiB onto itself and the GDT has the protocol's selectors",
          "[x86boot]") {
  auto mem = GuestMemory::create_anonymous(0, 64 * kMiB);
  REQUIRE(mem.ok());
  REQUIRE(write_boot_page_tables(*mem).ok());
  REQUIRE(write_boot_gdt(*mem).ok());
  auto walk = [&](uint64_t va) -> uint64_t {
    uint64_t pml4e = *mem->load<uint64_t>(kPml4Addr + 8 * ((va >> 39) & 511));
    REQUIRE((pml4e & 1));
    uint64_t pdpte = *mem->load<uint64_t>((pml4e & ~0xfffull) + 8 * ((va >> 30) & 511));
    REQUIRE((pdpte & 1));
    uint64_t pde = *mem->load<uint64_t>((pdpte & ~0xfffull) + 8 * ((va >> 21) & 511));
    REQUIRE((pde & 0x81) == 0x81);  // present, 2 MiB page
    return (pde & ~0x1fffffull) | (va & 0x1fffff);
  };
  for (uint64_t va : {uint64_t{0}, uint64_t{0x1234}, 16 * kMiB + 5, uint64_t{0xbfff'ffff}, uint64_t{0xfee0'0000}, uint64_t{0xffff'ffff}})
    CHECK(walk(va) == va);

  uint64_t code = *mem->load<uint64_t>(kGdtAddr + kBootCodeSelector);
  uint64_t data = *mem->load<uint64_t>(kGdtAddr + kBootDataSelector);
  CHECK(((code >> 40) & 0xff) == 0x9b);  // present, code, execute/read
  CHECK(((code >> 53) & 1) == 1);        // L: 64-bit
  CHECK(((data >> 40) & 0xff) == 0x93);  // present, data, read/write
  CHECK(gdt_entry(0xc093, 0, 0xfffff) == 0x00cf'9300'0000'ffffull);
  CHECK(kBootGdtLimit + 1 == 6 * 8);
}

TEST_CASE("x86 boot: a vmlinux is loaded segment by segment where it says, with a setup header made for it",
          "[x86boot]") {
  const uint64_t ram = 128 * kMiB;
  auto mem = GuestMemory::create_anonymous(0, ram);
  REQUIRE(mem.ok());
  std::memset(mem->ptr(16 * kMiB, 8 * kMiB), 0x77, 8 * kMiB);  // bss must come out zeroed
  const std::vector<Seg> segs = {{kKernelMap + 16 * kMiB, 16 * kMiB, 2 * kMiB, 2 * kMiB, 't'},
                                 {0, 18 * kMiB, 4096, 4096, 'p'},  // per-CPU data: virtual address 0
                                 {kKernelMap + 19 * kMiB, 19 * kMiB, 4096, 3 * kMiB, 'd'}};
  TempFile kernel(vmlinux(segs, 16 * kMiB + 0x40));
  TempFile initrd(std::string(5000, 'i'));
  auto b = load_kernel_and_initrd(*mem, ram, kernel.path, initrd.path);
  REQUIRE(b.ok());
  CHECK(b->entry == 16 * kMiB + 0x40);
  CHECK(b->kernel_gpa == 16 * kMiB);
  CHECK(b->kernel_end == 22 * kMiB);
  CHECK(b->initrd_gpa >= b->kernel_end);
  CHECK(mem->ptr(16 * kMiB, 1)[0] == 't');
  CHECK(mem->ptr(18 * kMiB, 1)[0] == 'p');
  CHECK(mem->ptr(19 * kMiB, 1)[0] == 'd');
  CHECK(mem->ptr(19 * kMiB + 4096, 1)[0] == 0);
  CHECK(mem->ptr(22 * kMiB - 1, 1)[0] == 0);
  // The header a bzImage would carry: what the zero page needs.
  REQUIRE(b->setup_header.size() == 0x290 - 0x1f1);
  std::string hdr(b->setup_header.begin(), b->setup_header.end());
  CHECK(hdr.substr(0x202 - 0x1f1, 4) == "HdrS");
  CHECK(b->cmdline_size == 2047);
  BootParamsConfig c;
  c.ram_size = ram;
  c.cmdline = "console=ttyS0";
  REQUIRE(write_boot_params(*mem, *b, c).ok());
  const uint8_t* zp = mem->ptr(kBootParamsAddr, 4096);
  CHECK(get<uint16_t>(zp, 0x1fe) == 0xaa55);
  CHECK(get<uint16_t>(zp, 0x206) >= 0x020e);  // new enough for acpi_rsdp_addr
}

TEST_CASE("x86 boot: ELF files that are not an x86_64 vmlinux are refused", "[x86boot]") {
  const uint64_t ram = 128 * kMiB;
  auto mem = GuestMemory::create_anonymous(0, ram);
  REQUIRE(mem.ok());
  auto refused = [&](const std::string& file) {
    TempFile f(file);
    auto r = load_kernel_and_initrd(*mem, ram, f.path, "");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::kCorrupt);
    return r.error().message;
  };
  const std::vector<Seg> text = {{kKernelMap + 16 * kMiB, 16 * kMiB, 4096, 4096, 't'}};
  // A program (mapped where it is loaded, like any static executable).
  CHECK_THAT(refused(vmlinux({{4 * kMiB, 4 * kMiB, 4096, 4096, 'u'}}, 4 * kMiB)), Catch::Contains("not an x86_64 Linux kernel"));
  CHECK_THAT(refused(vmlinux(text, 16 * kMiB, 183)), Catch::Contains("x86_64"));  // an arm64 vmlinux
  refused(vmlinux(text, 32 * kMiB));                                               // entry outside
  refused(vmlinux({{kKernelMap + 4096, 4096, 4096, 4096, 't'}}, 4096));              // below 1 MiB
  refused(vmlinux({{kKernelMap + 0xbff0'0000, 0xbff0'0000, 4096, 2 * kMiB, 't'}}, 0xbff0'0000));  // into the hole
  std::string truncated = vmlinux(text, 16 * kMiB);
  truncated.resize(truncated.size() - 100);
  CHECK_THAT(refused(truncated), Catch::Contains("outside the file"));
  std::string no_phdrs = vmlinux(text, 16 * kMiB);
  put<uint16_t>(no_phdrs, 56, 0);
  refused(no_phdrs);
  // Too big for the guest's RAM is the user's to fix.
  TempFile big(vmlinux({{kKernelMap + 16 * kMiB, 16 * kMiB, 4096, 200 * kMiB, 't'}}, 16 * kMiB));
  auto r = load_kernel_and_initrd(*mem, ram, big.path, "");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == ErrorKind::kUsage);
}
