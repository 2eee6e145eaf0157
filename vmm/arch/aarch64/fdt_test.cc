#include "vmm/arch/aarch64/fdt.h"

#include <libfdt.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "vmm/arch/aarch64/layout.h"

using namespace spore;
using namespace spore::vmm::aarch64;

namespace {

std::string prop_string(const void* fdt, const char* path, const char* name) {
  int node = fdt_path_offset(fdt, path);
  REQUIRE(node >= 0);
  int len = 0;
  const void* p = fdt_getprop(fdt, node, name, &len);
  REQUIRE(p);
  return std::string(static_cast<const char*>(p), static_cast<size_t>(len));
}

std::vector<uint32_t> prop_cells(const void* fdt, const char* path, const char* name) {
  int node = fdt_path_offset(fdt, path);
  REQUIRE(node >= 0);
  int len = 0;
  const auto* p = static_cast<const fdt32_t*>(fdt_getprop(fdt, node, name, &len));
  REQUIRE(p);
  std::vector<uint32_t> out;
  for (int i = 0; i < len / 4; i++) out.push_back(fdt32_to_cpu(p[i]));
  return out;
}

FdtConfig sample() {
  FdtConfig c;
  c.vcpus = 2;
  c.ram_size = 256ull << 20;
  c.cmdline = "console=ttyAMA0 quiet";
  c.initrd_start = 0x8400'0000;
  c.initrd_end = 0x8410'0000;
  c.virtio_slots = {0, 1, 2};
  c.rng_seed = std::vector<uint8_t>(64, 7);
  return c;
}

}  // namespace

TEST_CASE("the device tree describes the board", "[fdt]") {
  auto blob = build_fdt(sample());
  REQUIRE(blob.ok());
  const void* fdt = blob->data();
  REQUIRE(fdt_check_header(fdt) == 0);

  CHECK(prop_string(fdt, "/chosen", "bootargs") == std::string("console=ttyAMA0 quiet") + '\0');
  CHECK(prop_cells(fdt, "/chosen", "linux,initrd-start") == std::vector<uint32_t>{0, 0x8400'0000});
  CHECK(prop_cells(fdt, "/memory@80000000", "reg") == std::vector<uint32_t>{0, 0x8000'0000, 0, 256u << 20});
  CHECK(fdt_path_offset(fdt, "/cpus/cpu@0") >= 0);
  CHECK(fdt_path_offset(fdt, "/cpus/cpu@1") >= 0);
  CHECK(fdt_path_offset(fdt, "/cpus/cpu@2") < 0);
  CHECK(prop_string(fdt, "/psci", "method") == std::string("hvc") + '\0');

  auto gic = prop_cells(fdt, "/intc@8000000", "reg");
  REQUIRE(gic.size() == 8);
  CHECK(gic[7] == 2 * kGicRedistSizePerCpu);  // one redistributor frame per vCPU

  for (uint32_t slot : {0u, 1u, 2u}) {
    char path[64];
    std::snprintf(path, sizeof path, "/virtio_mmio@%llx", static_cast<unsigned long long>(virtio_mmio_base(slot)));
    auto irq = prop_cells(fdt, path, "interrupts");
    CHECK(irq == std::vector<uint32_t>{0, virtio_spi(slot), 1});
  }
  CHECK(prop_cells(fdt, "/pl011@9000000", "interrupts") == std::vector<uint32_t>{0, kUartSpi, 4});
  CHECK(fdt_path_offset(fdt, "/generation@9020000") < 0);
}

TEST_CASE("CPU nodes carry KVM's MPIDR numbering", "[fdt]") {
  FdtConfig c = sample();
  c.vcpus = 20;
  auto blob = build_fdt(c);
  REQUIRE(blob.ok());
  CHECK(prop_cells(blob->data(), "/cpus/cpu@103", "reg") == std::vector<uint32_t>{0x103});  // vCPU 19
}

TEST_CASE("the generation device appears only when asked for", "[fdt]") {
  FdtConfig c = sample();
  c.generation_device = true;
  auto blob = build_fdt(c);
  REQUIRE(blob.ok());
  CHECK(prop_string(blob->data(), "/generation@9020000", "compatible") == std::string("spore,generation") + '\0');
}

TEST_CASE("impossible boards are refused", "[fdt]") {
  FdtConfig c = sample();
  c.vcpus = 0;
  CHECK_FALSE(build_fdt(c).ok());
  c.vcpus = kMaxVcpus + 1;
  CHECK_FALSE(build_fdt(c).ok());
  c = sample();
  c.virtio_slots = {kVirtioSlots};
  CHECK_FALSE(build_fdt(c).ok());
}
