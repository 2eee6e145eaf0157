#include "agent/boot.h"

#include <catch2/catch.hpp>

using namespace spore::agent;

TEST_CASE("agent: spore.* options are read from the kernel command line, others ignored", "[agent-boot]") {
  auto o = parse_cmdline("console=ttyS0 quiet spore.rootmode=ro spore.hostname=web spore.generation=0xd0100000 "
                         "virtio_mmio.device=4K@0xd0000000:17\n");
  CHECK(o.mode == RootMode::kReadOnly);
  CHECK(o.hostname == "web");
  CHECK(o.hostname_explicit);
  CHECK(o.generation_addr == 0xd010'0000);
  auto d = parse_cmdline("console=ttyAMA0");
  CHECK(d.mode == RootMode::kOverlay);
  CHECK(d.root_device == "/dev/vda");
  CHECK_FALSE(d.hostname_explicit);
  CHECK(d.generation_addr == 0);
}

TEST_CASE("agent: a generation address that is not a page-aligned hex number is ignored", "[agent-boot]") {
  for (const char* bad : {"spore.generation=", "spore.generation=0x", "spore.generation=3490709504",
                          "spore.generation=0xd0100010", "spore.generation=0xd01000zz",
                          "spore.generation=0x0", "spore.generation=0x10000000000000000"})
    CHECK(parse_cmdline(bad).generation_addr == 0);
  CHECK(parse_cmdline("spore.generation=0XFEE00000").generation_addr == 0xfee0'0000);
}
