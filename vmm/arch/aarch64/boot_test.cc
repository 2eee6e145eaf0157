#include "vmm/arch/aarch64/boot.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>

#include "vmm/arch/aarch64/layout.h"

using namespace spore;
using namespace spore::vmm;
using namespace spore::vmm::aarch64;

namespace {

std::string image_bytes(uint64_t text_offset, uint64_t image_size, size_t file_size) {
  std::string d(file_size, 'k');
  std::memset(d.data(), 0, 64);
  std::memcpy(d.data() + 8, &text_offset, 8);
  std::memcpy(d.data() + 16, &image_size, 8);
  std::memcpy(d.data() + 56, "ARM\x64", 4);
  return d;
}

struct TempFile {
  explicit TempFile(const std::string& data) {
    char tmpl[] = "/tmp/spore-boot-XXXXXX";
    int fd = ::mkstemp(tmpl);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()));
    ::close(fd);
    path = tmpl;
  }
  ~TempFile() { ::unlink(path.c_str()); }
  std::string path;
};

}  // namespace

TEST_CASE("Image headers are validated", "[boot]") {
  std::string good = image_bytes(0, 1 << 20, 4096);
  auto h = parse_image_header(reinterpret_cast<const uint8_t*>(good.data()), good.size());
  REQUIRE(h.ok());
  CHECK(h->image_size == 1 << 20);

  std::string bad = good;
  bad[56] = 'X';
  CHECK_FALSE(parse_image_header(reinterpret_cast<const uint8_t*>(bad.data()), bad.size()).ok());
  CHECK_FALSE(parse_image_header(reinterpret_cast<const uint8_t*>(good.data()), 32).ok());
  std::string odd = image_bytes(123, 1 << 20, 4096);
  CHECK_FALSE(parse_image_header(reinterpret_cast<const uint8_t*>(odd.data()), odd.size()).ok());
}

TEST_CASE("kernel and initrd are placed without overlapping the device tree", "[boot]") {
  const uint64_t ram = 64ull << 20;
  auto mem = GuestMemory::create_anonymous(kRamBase, ram);
  REQUIRE(mem.ok());
  TempFile kernel(image_bytes(0, 8 << 20, 1 << 20));
  TempFile initrd(std::string(300000, 'i'));
  auto b = load_kernel_and_initrd(*mem, kRamBase, ram, kernel.path, initrd.path);
  REQUIRE(b.ok());
  CHECK(b->kernel_gpa == kRamBase);
  CHECK(b->initrd_gpa >= b->kernel_end);
  CHECK(b->initrd_gpa % (2 << 20) == 0);
  CHECK(b->initrd_gpa + b->initrd_size <= b->fdt_gpa);
  CHECK(*mem->ptr(b->initrd_gpa, 1) == 'i');
  CHECK(*mem->ptr(kRamBase + 100, 1) == 'k');
}

TEST_CASE("payloads that do not fit or do not exist give clear errors", "[boot]") {
  const uint64_t ram = 64ull << 20;
  auto mem = GuestMemory::create_anonymous(kRamBase, ram);
  REQUIRE(mem.ok());
  TempFile huge(image_bytes(0, 70ull << 20, 4096));
  auto b = load_kernel_and_initrd(*mem, kRamBase, ram, huge.path, "");
  REQUIRE_FALSE(b.ok());
  CHECK_THAT(b.error().message, Catch::Contains("does not fit"));

  auto missing = load_kernel_and_initrd(*mem, kRamBase, ram, "/nonexistent/Image", "");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().kind == ErrorKind::kNotFound);

  TempFile notimage(std::string(4096, 'x'));
  auto ni = load_kernel_and_initrd(*mem, kRamBase, ram, notimage.path, "");
  REQUIRE_FALSE(ni.ok());
  CHECK(ni.error().kind == ErrorKind::kCorrupt);
}
