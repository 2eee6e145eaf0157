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

// ELF64 header and program header fields (offsets).
constexpr uint8_t kElfMagic[4] = {0x7f, 'E', 'L', 'F'};
constexpr uint16_t kEmX86_64 = 62, kEtExec = 2;
constexpr uint32_t kPtLoad = 1;
constexpr size_t kElfHeaderSize = 64, kPhdrSize = 56, kMaxPhdrs = 64;
constexpr uint64_t kStartKernelMap = 0xffff'ffff'8000'0000;

// The setup header a vmlinux lacks, as a bzImage of the same kernel would
// carry it: protocol 2.15 (the 6.1 kernel's own, which makes it read
// acpi_rsdp_addr), loaded high, a 2047-byte command line.
std::vector<uint8_t> vmlinux_setup_header() {
  uint8_t zp[kHeaderEnd] = {};
  put<uint16_t>(zp, kBootFlag, kBootFlagValue);
  put<uint32_t>(zp, kHeaderMagic, kHdrS);
  put<uint16_t>(zp, kVersion, 0x020f);
  zp[kLoadflags] = kLoadedHigh;
  put<uint32_t>(zp, kInitrdAddrMax, 0x7fff'ffff);
  put<uint32_t>(zp, kKernelAlignment, 2 << 20);
  put<uint16_t>(zp, kXloadflags, kXlfKernel64);
  put<uint32_t>(zp, kCmdlineSize, 2047);
  return std::vector<uint8_t>(zp + kSetupSects, zp + kHeaderEnd);
}

}  // namespace

Result<SetupHeader> parse_setup_header(const uint8_t* data, size_t len) {
  if (len < 0x400) return make_error(ErrorKind::kCorrupt, "too short to be an x86_64 kernel");
  if (get<uint32_t>(data, kHeaderMagic) != kHdrS || get<uint16_t>(data, kBootFlag) != kBootFlagValue)
    return make_error(ErrorKind::kCorrupt, "not an x86_64 kernel (neither a vmlinux ELF nor a bzImage)");
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

Result<ElfKernel> parse_elf_kernel(const uint8_t* data, size_t len, uint64_t file_size) {
  if (len < kElfHeaderSize || std::memcmp(data, kElfMagic, 4) != 0)
    return make_error(ErrorKind::kCorrupt, "not an ELF file");
  if (data[4] != 2 || data[5] != 1 || get<uint16_t>(data, 18) != kEmX86_64)
    return make_error(ErrorKind::kCorrupt, "not an x86_64 ELF (a vmlinux for another architecture?)");
  if (get<uint16_t>(data, 16) != kEtExec) return make_error(ErrorKind::kCorrupt, "the ELF file is not an executable");
  ElfKernel k;
  k.entry = get<uint64_t>(data, 24);
  const uint64_t phoff = get<uint64_t>(data, 32);
  const uint16_t phentsize = get<uint16_t>(data, 54), phnum = get<uint16_t>(data, 56);
  if (phentsize != kPhdrSize || phnum == 0 || phnum > kMaxPhdrs || phoff > len || phnum * kPhdrSize > len - phoff)
    return make_error(ErrorKind::kCorrupt, "the ELF program headers are missing or implausible");
  bool entry_inside = false;
  for (uint16_t i = 0; i < phnum; i++) {
    const uint8_t* ph = data + phoff + i * kPhdrSize;
    if (get<uint32_t>(ph, 0) != kPtLoad) continue;
    ElfSegment seg{get<uint64_t>(ph, 8), get<uint64_t>(ph, 32), get<uint64_t>(ph, 24), get<uint64_t>(ph, 40)};
    if (seg.offset > file_size || seg.filesz > file_size - seg.offset || seg.filesz > seg.memsz ||
        seg.paddr < kKernelAddr || seg.paddr >= kMmioHoleStart || seg.memsz > kMmioHoleStart - seg.paddr)
      return make_error(ErrorKind::kCorrupt, strfmt("ELF segment %u lies outside the file or low RAM", i));
    // The kernel maps itself at __START_KERNEL_map + its physical address:
    // the segment it starts in says so (a user program's ELF does not).
    const uint64_t vaddr = get<uint64_t>(ph, 16);
    if (k.entry >= seg.paddr && k.entry - seg.paddr < seg.memsz && vaddr - seg.paddr == kStartKernelMap)
      entry_inside = true;
    k.segments.push_back(seg);
  }
  if (k.segments.empty()) return make_error(ErrorKind::kCorrupt, "the ELF file has nothing to load");
  if (!entry_inside)
    return make_error(ErrorKind::kCorrupt, "an ELF file that is not an x86_64 Linux kernel (vmlinux): its entry point "
                                           "is not in kernel text");
  return k;
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
  uint8_t hdr[0x1000] = {};  // the bzImage header, or the ELF and program headers
  if (*ksize < 0x400) return make_error(ErrorKind::kCorrupt, "kernel " + kernel_path + ": file too short");
  const size_t hlen = static_cast<size_t>(std::min<uint64_t>(*ksize, sizeof hdr));
  SPORE_TRY(pread_exact(kfd->get(), hdr, hlen, 0));
  const uint64_t low = low_ram_size(ram_size);

  BootLayout b;
  uint32_t initrd_addr_max = 0x7fff'ffff;
  if (std::memcmp(hdr, kElfMagic, 4) == 0) {
    auto k = parse_elf_kernel(hdr, hlen, *ksize);
    if (!k.ok()) return std::move(k).error().wrap("kernel " + kernel_path);
    b.setup_header = vmlinux_setup_header();
    b.cmdline_size = 2047;
    b.entry = k->entry;
    b.kernel_gpa = UINT64_MAX;
    for (const auto& seg : k->segments) {
      b.kernel_gpa = std::min(b.kernel_gpa, seg.paddr);
      b.kernel_end = std::max(b.kernel_end, seg.paddr + seg.memsz);
    }
    if (b.kernel_end > low)
      return make_error(ErrorKind::kUsage, "kernel does not fit in guest RAM (use a larger --mem)");
    for (const auto& seg : k->segments) {
      SPORE_TRY(load_file(mem, kfd->get(), seg.offset, seg.filesz, seg.paddr, kernel_path));
      std::memset(mem.ptr(seg.paddr + seg.filesz, seg.memsz - seg.filesz), 0, seg.memsz - seg.filesz);  // bss
    }
  } else {
    auto h = parse_setup_header(hdr, hlen);
    if (!h.ok()) return std::move(h).error().wrap("kernel " + kernel_path);
    // The header runs from 0x1f1 to the end its jump instruction skips to.
    size_t end = std::min<size_t>(kJump + 2 + hdr[kJump + 1], kHeaderEnd);
    b.setup_header.assign(hdr + kSetupSects, hdr + end);
    b.cmdline_size = h->cmdline_size;
    initrd_addr_max = h->initrd_addr_max;

    const uint64_t pm_offset = (static_cast<uint64_t>(h->setup_sects) + 1) * 512;
    if (pm_offset >= *ksize) return make_error(ErrorKind::kCorrupt, "kernel " + kernel_path + ": truncated bzImage");
    const uint64_t pm_size = *ksize - pm_offset;
    b.kernel_gpa = kKernelAddr;
    b.entry = kKernelAddr + 0x200;
    // The image is loaded at 1 MiB, then decompresses itself at
    // pref_address; both ranges must be RAM, and the initrd must stay clear.
    b.kernel_end = std::max(kKernelAddr + pm_size, h->pref_address + h->init_size);
    if (b.kernel_end > low)
      return make_error(ErrorKind::kUsage, "kernel does not fit in guest RAM (use a larger --mem)");
    SPORE_TRY(load_file(mem, kfd->get(), pm_offset, pm_size, b.kernel_gpa, kernel_path));
  }

  if (!initrd_path.empty()) {
    auto ifd = open_file(initrd_path, O_RDONLY);
    if (!ifd.ok()) return std::move(ifd).error().wrap("initrd");
    auto isize = file_size(ifd->get());
    if (!isize.ok()) return std::move(isize).error().wrap("initrd " + initrd_path);
    uint64_t top = std::min<uint64_t>(low, uint64_t{initrd_addr_max} + 1);
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
