#include "vmm/arch/aarch64/boot.h"

#include <fcntl.h>

#include <cstring>

#include "base/fd.h"
#include "base/strings.h"
#include "vmm/arch/aarch64/layout.h"

namespace spore::vmm::aarch64 {
namespace {

constexpr uint32_t kImageMagic = 0x644d5241;  // "ARM\x64"
constexpr uint64_t k2M = 2ull << 20;

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

// Reads the whole file at fd into guest memory at gpa.
Status load_file(const GuestMemory& mem, int fd, uint64_t size, uint64_t gpa, const std::string& path) {
  uint8_t* p = mem.ptr(gpa, size);
  if (!p) return make_error(ErrorKind::kUsage, path + ": does not fit in guest RAM (use a larger --mem)");
  auto s = pread_exact(fd, p, size, 0);
  if (!s.ok()) return std::move(s).error().wrap(path);
  return ok_status();
}

}  // namespace

Result<ImageHeader> parse_image_header(const uint8_t* data, size_t len) {
  if (len < 64) return make_error(ErrorKind::kCorrupt, "too short to be an arm64 kernel Image");
  uint32_t magic;
  std::memcpy(&magic, data + 56, 4);
  if (magic != kImageMagic)
    return make_error(ErrorKind::kCorrupt, "not an arm64 kernel Image (bad magic; a compressed Image.gz or a "
                                           "vmlinux ELF is not supported)");
  ImageHeader h;
  std::memcpy(&h.text_offset, data + 8, 8);
  std::memcpy(&h.image_size, data + 16, 8);
  std::memcpy(&h.flags, data + 24, 8);
  if (h.text_offset % 4096 || h.text_offset > k2M)
    return make_error(ErrorKind::kCorrupt, strfmt("kernel text_offset 0x%llx is implausible",
                                                  static_cast<unsigned long long>(h.text_offset)));
  // Bit 0: big-endian kernel.
  if (h.flags & 1) return make_error(ErrorKind::kCorrupt, "big-endian kernels are not supported");
  return h;
}

Result<BootLayout> load_kernel_and_initrd(const GuestMemory& mem, uint64_t ram_base, uint64_t ram_size,
                                          const std::string& kernel_path, const std::string& initrd_path) {
  auto kfd = open_file(kernel_path, O_RDONLY);
  if (!kfd.ok()) return std::move(kfd).error().wrap("kernel");
  auto ksize = file_size(kfd->get());
  if (!ksize.ok()) return std::move(ksize).error().wrap("kernel " + kernel_path);
  uint8_t hdr[64] = {};
  if (*ksize < sizeof hdr) return make_error(ErrorKind::kCorrupt, "kernel " + kernel_path + ": file too short");
  SPORE_TRY(pread_exact(kfd->get(), hdr, sizeof hdr, 0));
  auto h = parse_image_header(hdr, sizeof hdr);
  if (!h.ok()) return std::move(h).error().wrap("kernel " + kernel_path);

  BootLayout b;
  // Pre-3.17 Images report image_size 0; then assume the file plus slack for bss.
  uint64_t effective = h->image_size ? h->image_size : *ksize + (16ull << 20);
  if (effective < *ksize) effective = *ksize;
  b.kernel_gpa = ram_base + h->text_offset;
  b.kernel_end = b.kernel_gpa + effective;
  b.fdt_gpa = ram_base + ram_size - kFdtMaxSize;
  if (b.kernel_end > b.fdt_gpa)
    return make_error(ErrorKind::kUsage, "kernel does not fit in guest RAM (use a larger --mem)");
  SPORE_TRY(load_file(mem, kfd->get(), *ksize, b.kernel_gpa, kernel_path));

  if (!initrd_path.empty()) {
    auto ifd = open_file(initrd_path, O_RDONLY);
    if (!ifd.ok()) return std::move(ifd).error().wrap("initrd");
    auto isize = file_size(ifd->get());
    if (!isize.ok()) return std::move(isize).error().wrap("initrd " + initrd_path);
    b.initrd_gpa = align_up(b.kernel_end, k2M);
    b.initrd_size = *isize;
    if (b.initrd_gpa + b.initrd_size > b.fdt_gpa)
      return make_error(ErrorKind::kUsage, "initrd does not fit in guest RAM (use a larger --mem)");
    SPORE_TRY(load_file(mem, ifd->get(), *isize, b.initrd_gpa, initrd_path));
  }
  return b;
}

}  // namespace spore::vmm::aarch64
