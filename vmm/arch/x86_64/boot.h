// The Linux x86 64-bit boot protocol (Documentation/x86/boot.rst): loading
// a bzImage and initrd, the zero page (boot_params) with the e820 map and
// command line, identity page tables and the boot GDT. Host-independent so
// it is unit-tested anywhere.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "vmm/memory.h"

namespace spore::vmm::x86_64 {

// What the loader uses from a bzImage's setup header.
struct SetupHeader {
  uint8_t setup_sects = 0;     // real-mode setup sectors (0 means 4)
  uint16_t version = 0;        // boot protocol version, e.g. 0x020f
  uint8_t loadflags = 0;
  uint32_t initrd_addr_max = 0;
  uint32_t kernel_alignment = 0;
  uint8_t relocatable = 0;
  uint16_t xloadflags = 0;
  uint32_t cmdline_size = 0;   // longest command line, without its NUL
  uint64_t pref_address = 0;   // where the kernel decompresses itself
  uint32_t init_size = 0;      // memory it needs there while initialising
};

// Validates a bzImage with a 64-bit entry point (magic "HdrS", protocol
// 2.12 or later, XLF_KERNEL_64). data holds at least the first 1 KiB.
Result<SetupHeader> parse_setup_header(const uint8_t* data, size_t len);

// A vmlinux: an x86_64 ELF executable whose loadable segments name their
// physical addresses, and whose entry point is startup_64's.
struct ElfSegment {
  uint64_t offset = 0, filesz = 0, paddr = 0, memsz = 0;
};
struct ElfKernel {
  uint64_t entry = 0;
  std::vector<ElfSegment> segments;  // PT_LOAD only
};
// Validates the ELF header and program headers read from the file's start
// (data: the first len bytes, file_size: the whole file): every segment
// inside the file, at or above 1 MiB and below the MMIO hole, the entry in
// a segment the kernel maps at __START_KERNEL_map (kernel text, which tells
// a vmlinux from any other x86_64 executable).
Result<ElfKernel> parse_elf_kernel(const uint8_t* data, size_t len, uint64_t file_size);

// Boot GDT selectors (the protocol's __BOOT_CS and __BOOT_DS) and the TSS.
inline constexpr uint16_t kBootCodeSelector = 0x10;
inline constexpr uint16_t kBootDataSelector = 0x18;
inline constexpr uint16_t kBootTssSelector = 0x20;
inline constexpr uint16_t kBootGdtLimit = 6 * 8 - 1;  // null, null, code, data, 16-byte TSS

struct E820Entry {
  uint64_t addr = 0;
  uint64_t size = 0;
  uint32_t type = 0;  // 1 RAM, 2 reserved
};
inline constexpr uint32_t kE820Ram = 1;
inline constexpr uint32_t kE820Reserved = 2;

// RAM below the MMIO hole, and the board's e820 map for ram_size bytes.
uint64_t low_ram_size(uint64_t ram_size);
std::vector<E820Entry> e820_map(uint64_t ram_size);

struct BootLayout {
  uint64_t kernel_gpa = 0;   // the protected-mode kernel
  uint64_t kernel_end = 0;   // end of the memory it needs to initialise
  uint64_t entry = 0;        // 64-bit entry point (kernel_gpa + 0x200)
  uint64_t initrd_gpa = 0;
  uint64_t initrd_size = 0;
  uint32_t cmdline_size = 0;
  std::vector<uint8_t> setup_header;  // the kernel's header bytes, copied into the zero page
};

// Loads the kernel, a vmlinux (its segments where they say) or a bzImage
// (at 1 MiB), and the initrd (optional) as high in low RAM as the kernel
// allows. Fails with a clear message when a file is missing, not a kernel,
// or does not fit.
Result<BootLayout> load_kernel_and_initrd(const GuestMemory& mem, uint64_t ram_size, const std::string& kernel_path,
                                          const std::string& initrd_path);

struct BootParamsConfig {
  uint64_t ram_size = 0;
  std::string cmdline;
  uint64_t rsdp_addr = 0;         // ACPI root pointer, 0 for none
  std::vector<uint8_t> rng_seed;  // handed over as SETUP_RNG_SEED setup_data, if not empty
};

// The zero page, the command line and the setup_data chain.
Status write_boot_params(const GuestMemory& mem, const BootLayout& layout, const BootParamsConfig& config);
// Identity-maps the first 4 GiB with 2 MiB pages (PML4 at kPml4Addr).
Status write_boot_page_tables(const GuestMemory& mem);
// The GDT at kGdtAddr with the selectors above.
Status write_boot_gdt(const GuestMemory& mem);
// A GDT descriptor (flags: the access byte in bits 0..7, G/DB/L in 12..15).
uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit);

}  // namespace spore::vmm::x86_64
