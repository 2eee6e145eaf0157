#include "vmm/arch/x86_64/boot.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include "base/fd.h"
#include "base/strings.h"
#include "vmm/arch/x86_64/layout.h"

namespace spore::vmm::x86_64 {
namespace {

// Offsets in the bzImage file and in the zero page (the setup header sits
// at the same place in both).
enum : size_t {
  kSetupSects = 0x1f1,
  kBootFlag = 0x1fe,
  kJump = 0x200,
  kHeaderMagic = 0x202,
  kVersion = 0x206,
  kTypeOfLoader = 0x210,
  kLoadflags = 0x211,
  kRamdiskImage = 0x218,
  kRamdiskSize = 0x21c,
  kCmdLinePtr = 0x228,
  kInitrdAddrMax = 0x22c,
  kKernelAlignment = 0x230,
  kRelocatable = 0x234,
  kXloadflags = 0x236,
  kCmdlineSize = 0x238,
  kSetupData = 0x250,
  kPrefAddress = 0x258,
  kInitSize = 0x260,
  kHeaderEnd = 0x290,  // where boot_params' next field starts
  // boot_params fields outside the setup header.
  kAcpiRsdpAddr = 0x070,
  kE820Entries = 0x1e8,
  kSentinel = 0x1ef,
  kE820Table = 0x2d0,
  kZeroPageSize = 0x1000,
};

constexpr uint32_t kHdrS = 0x53726448;  // "HdrS"
constexpr uint16_t kBootFlagValue = 0xaa55;
constexpr uint16_t kXlfKernel64 = 1 << 0;
constexpr uint8_t kLoadedHigh = 1 << 0;
constexpr uint8_t kLoaderUndefined = 0xff;
constexpr uint32_t kSetupRngSeed = 9;
constexpr size_t kMaxE820 = 128;
constexpr uint64_t kPage = 4096;
constexpr uint64_t k2M = 2ull << 20;
constexpr uint64_t k1G = 1ull << 30;

template <class T>
T get(const uint8_t* p, size_t off) {
  T v;
  std::memcpy(&v, p + off, sizeof v);
  return v;
}
template <class T>
void put(uint8_t* p, size_t off, T v) {
  std::memcpy(p + off, &v, sizeof v);
}

uint64_t align_down(uint64_t v, uint64_t a) { return v & ~(a - 1); }

Status load_file(const GuestMemory& mem, int fd, uint64_t file_off, uint64_t size, uint64_t gpa,
                 const std::string& path) {
  uint8_t* p = mem.ptr(gpa, size);
  if (!p) return make_error(ErrorKind::kUsage, path + ": does not fit in guest RAM (use a larger --mem)");
  auto s = pread_exact(fd, p, size, static_cast<off_t>(file_off));
  if (!s.ok()) return std::move(s).error().wrap(path);
  return ok_status();
}

}  // namespace

Result<SetupHeader> parse_setup_header(const uint8_t* data, size_t len) {
  if (len < 0x400) return make_error(ErrorKind::kCorrupt, "too short to be an x86 kernel bzImage");
  if (get<uint32_t>(data, kHeaderMagic) != kHdrS || get<uint16_t>(data, kBootFlag) != kBootFlagValue)
    return make_error(ErrorKind::kCorrupt, "not an x86 kernel bzImage (no \"HdrS\" setup header; a vmlinux ELF "
                                           "is not supported)");
  SetupHeader h;
  h.version = get<uint16_t>(data, kVersion);
  if (h.version < 0x020c)
    return make_error(ErrorKind::kCorrupt, strfmt("the bzImage speaks boot protocol %u.%02u; 2.12 or later is needed",
                                                  h.version >> 8, h.version & 0xff));
  h.setup_sects = data[kSetupSects] ? data[kSetupSects] : 4;
  h.loadflags = data[kLoadflags];
  h.initrd_addr_max = get<uint32_t>(data, kInitrdAddrMax);
  h.kernel_alignment = get<uint32_t>(data, kKernelAlignment);
  h.relocatable = data[kRelocatable];
  h.xloadflags = get<uint16_t>(data, kXloadflags);
  h.cmdline_size = get<uint32_t>(data, kCmdlineSize);
  h.pref_address = get<uint64_t>(data, kPrefAddress);
  h.init_size = get<uint32_t>(data, kInitSize);
  if (!(h.xloadflags & kXlfKernel64))
    return make_error(ErrorKind::kCorrupt, "the bzImage has no 64-bit entry point (not an x86_64 kernel)");
  if (!(h.loadflags & kLoadedHigh))
    return make_error(ErrorKind::kCorrupt, "the bzImage is a zImage (loaded low): not supported");
  // The kernel decompresses itself at pref_address: it must lie in low RAM.
  if (h.pref_address < kKernelAddr || h.pref_address >= kMmioHoleStart || h.init_size == 0 ||
      h.init_size > kMmioHoleStart - h.pref_address)
    return make_error(ErrorKind::kCorrupt, strfmt("the bzImage asks for %u bytes at 0x%llx: implausible", h.init_size,
                                                  static_cast<unsigned long long>(h.pref_address)));
  return h;
}

uint64_t low_ram_size(uint64_t ram_size) { return std::min(ram_size, kMmioHoleStart); }

std::vector<E820Entry> e820_map(uint64_t ram_size) {
  std::vector<E820Entry> m;
  uint64_t low = low_ram_size(ram_size);
  m.push_back({0, kLowRamEnd, kE820Ram});
  m.push_back({kMpTableAddr, 0xa'0000 - kMpTableAddr, kE820Reserved});
  m.push_back({kAcpiAddr, kBiosEnd - kAcpiAddr, kE820Reserved});
  m.push_back({kBiosEnd, low - kBiosEnd, kE820Ram});
  if (ram_size > low) m.push_back({kHighRamStart, ram_size - low, kE820Ram});
  return m;
}

Result<BootLayout> load_kernel_and_initrd(const GuestMemory& mem, uint64_t ram_size, const std::string& kernel_path,
                                          const std::string& initrd_path) {
  auto kfd = open_file(kernel_path, O_RDONLY);
  if (!kfd.ok()) return std::move(kfd).error().wrap("kernel");
  auto ksize = file_size(kfd->get());
  if (!ksize.ok()) return std::move(ksize).error().wrap("kernel " + kernel_path);
  uint8_t hdr[0x400] = {};
  if (*ksize < sizeof hdr) return make_error(ErrorKind::kCorrupt, "kernel " + kernel_path + ": file too short");
  SPORE_TRY(pread_exact(kfd->get(), hdr, sizeof hdr, 0));
  auto h = parse_setup_header(hdr, sizeof hdr);
  if (!h.ok()) return std::move(h).error().wrap("kernel " + kernel_path);

  BootLayout b;
  // The header runs from 0x1f1 to the end its jump instruction skips to.
  size_t end = std::min<size_t>(kJump + 2 + hdr[kJump + 1], kHeaderEnd);
  b.setup_header.assign(hdr + kSetupSects, hdr + end);
  b.cmdline_size = h->cmdline_size;

  const uint64_t pm_offset = (static_cast<uint64_t>(h->setup_sects) + 1) * 512;
  if (pm_offset >= *ksize) return make_error(ErrorKind::kCorrupt, "kernel " + kernel_path + ": truncated bzImage");
  const uint64_t pm_size = *ksize - pm_offset;
  const uint64_t low = low_ram_size(ram_size);
  b.kernel_gpa = kKernelAddr;
  b.entry = kKernelAddr + 0x200;
  // The image is loaded at 1 MiB, then decompresses itself at
  // pref_address; both ranges must be RAM, and the initrd must stay clear.
  b.kernel_end = std::max(kKernelAddr + pm_size, h->pref_address + h->init_size);
  if (b.kernel_end > low) return make_error(ErrorKind::kUsage, "kernel does not fit in guest RAM (use a larger --mem)");
  SPORE_TRY(load_file(mem, kfd->get(), pm_offset, pm_size, b.kernel_gpa, kernel_path));

  if (!initrd_path.empty()) {
    auto ifd = open_file(initrd_path, O_RDONLY);
    if (!ifd.ok()) return std::move(ifd).error().wrap("initrd");
    auto isize = file_size(ifd->get());
    if (!isize.ok()) return std::move(isize).error().wrap("initrd " + initrd_path);
    uint64_t top = std::min<uint64_t>(low, static_cast<uint64_t>(h->initrd_addr_max) + 1);
    b.initrd_size = *isize;
    if (b.initrd_size > top || align_down(top - b.initrd_size, kPage) < b.kernel_end)
      return make_error(ErrorKind::kUsage, "initrd does not fit in guest RAM (use a larger --mem)");
    b.initrd_gpa = align_down(top - b.initrd_size, kPage);
    SPORE_TRY(load_file(mem, ifd->get(), 0, *isize, b.initrd_gpa, initrd_path));
  }
  return b;
}

Status write_boot_params(const GuestMemory& mem, const BootLayout& layout, const BootParamsConfig& c) {
  size_t limit = std::min<size_t>(layout.cmdline_size, kCmdlineMax - 1);
  if (c.cmdline.size() > limit)
    return make_error(ErrorKind::kUsage, strfmt("the kernel command line is %zu bytes; this kernel takes at most %zu",
                                                c.cmdline.size(), limit));
  if (c.cmdline.find('\0') != std::string::npos)
    return make_error(ErrorKind::kUsage, "the kernel command line contains a NUL byte");
  if (!mem.write(kCmdlineAddr, c.cmdline.c_str(), c.cmdline.size() + 1))
    return make_error(ErrorKind::kInternal, "no guest RAM for the command line");

  uint8_t zp[kZeroPageSize] = {};
  if (layout.setup_header.size() > kHeaderEnd - kSetupSects)
    return make_error(ErrorKind::kInternal, "setup header too long");
  std::memcpy(zp + kSetupSects, layout.setup_header.data(), layout.setup_header.size());
  zp[kSentinel] = 0;
  zp[kTypeOfLoader] = kLoaderUndefined;
  zp[kLoadflags] |= kLoadedHigh;
  put<uint32_t>(zp, kCmdLinePtr, static_cast<uint32_t>(kCmdlineAddr));
  put<uint32_t>(zp, kRamdiskImage, static_cast<uint32_t>(layout.initrd_gpa));
  put<uint32_t>(zp, kRamdiskSize, static_cast<uint32_t>(layout.initrd_size));
  put<uint64_t>(zp, kAcpiRsdpAddr, c.rsdp_addr);

  auto map = e820_map(c.ram_size);
  if (map.size() > kMaxE820) return make_error(ErrorKind::kInternal, "e820 map too long");
  zp[kE820Entries] = static_cast<uint8_t>(map.size());
  for (size_t i = 0; i < map.size(); i++) {
    put<uint64_t>(zp, kE820Table + 20 * i, map[i].addr);
    put<uint64_t>(zp, kE820Table + 20 * i + 8, map[i].size);
    put<uint32_t>(zp, kE820Table + 20 * i + 16, map[i].type);
  }

  if (!c.rng_seed.empty()) {
    // struct setup_data { u64 next; u32 type; u32 len; u8 data[]; }
    std::vector<uint8_t> sd(16 + c.rng_seed.size());
    put<uint64_t>(sd.data(), 0, 0);
    put<uint32_t>(sd.data(), 8, kSetupRngSeed);
    put<uint32_t>(sd.data(), 12, static_cast<uint32_t>(c.rng_seed.size()));
    std::memcpy(sd.data() + 16, c.rng_seed.data(), c.rng_seed.size());
    if (sd.size() > kCmdlineAddr - kSetupDataAddr || !mem.write(kSetupDataAddr, sd.data(), sd.size()))
      return make_error(ErrorKind::kInternal, "no room for the RNG seed");
    put<uint64_t>(zp, kSetupData, kSetupDataAddr);
  }
  if (!mem.write(kBootParamsAddr, zp, sizeof zp)) return make_error(ErrorKind::kInternal, "no guest RAM for boot_params");
  return ok_status();
}

Status write_boot_page_tables(const GuestMemory& mem) {
  constexpr uint64_t kPresentRw = 0x3, kHuge = 0x80;
  bool ok = mem.store<uint64_t>(kPml4Addr, kPdptAddr | kPresentRw);
  for (uint64_t g = 0; g < kIdentityMapGiB; g++) {
    uint64_t pd = kPdAddr + g * kPage;
    ok = ok && mem.store<uint64_t>(kPdptAddr + 8 * g, pd | kPresentRw);
    for (uint64_t i = 0; i < 512; i++) ok = ok && mem.store<uint64_t>(pd + 8 * i, (g * k1G + i * k2M) | kPresentRw | kHuge);
  }
  if (!ok) return make_error(ErrorKind::kInternal, "no guest RAM for the boot page tables");
  return ok_status();
}

uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit) {
  return ((static_cast<uint64_t>(base) & 0xff00'0000) << 32) | ((static_cast<uint64_t>(flags) & 0xf0ff) << 40) |
         ((static_cast<uint64_t>(limit) & 0xf'0000) << 32) | ((static_cast<uint64_t>(base) & 0xff'ffff) << 16) |
         (static_cast<uint64_t>(limit) & 0xffff);
}

Status write_boot_gdt(const GuestMemory& mem) {
  const uint64_t gdt[6] = {
      0,
      0,
      gdt_entry(0xa09b, 0, 0xfffff),  // 0x10: 64-bit code, present, execute/read
      gdt_entry(0xc093, 0, 0xfffff),  // 0x18: flat data, present, read/write
      gdt_entry(0x008b, 0, 0x67),     // 0x20: busy 64-bit TSS (low half; the high half is 0)
      0,
  };
  if (!mem.write(kGdtAddr, gdt, sizeof gdt)) return make_error(ErrorKind::kInternal, "no guest RAM for the GDT");
  return ok_status();
}

}  // namespace spore::vmm::x86_64
