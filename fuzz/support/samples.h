// Well-formed values of the spore and bundle formats, for seeds.
#pragma once

#include "bundle/app_config.h"
#include "vmm/spore/manifest.h"
#include "vmm/spore/memory.h"
#include "vmm/spore/state.h"

namespace spore::fuzz {

inline vmm::PlatformFacts sample_platform() {
  vmm::PlatformFacts p;
  p.arch = "aarch64";
  p.board_version = 1;
  p.page_size = 4096;
  p.ipa_bits = 40;
  p.vcpu_target = 5;
  p.vcpu_features = 4;
  p.gic = "v3";
  p.gic_iidr = 0x4b00343b;
  p.kvm_caps = {"ARM_PSCI_0_2", "IOEVENTFD", "IRQFD"};
  p.id_regs = {{"ID_AA64ISAR0_EL1", 0x1111}, {"MIDR_EL1", 0x410fd0c1}};
  p.reg_list_sha256 = std::string(64, 'a');
  return p;
}

inline vmm::SporeManifest sample_manifest(bool with_rootfs) {
  vmm::SporeManifest m;
  m.id = std::string(32, 'a');
  m.parent = with_rootfs ? std::string(64, 'e') : "";
  m.created = "2026-11-26T00:00:00Z";
  m.generation = 3;
  m.platform = sample_platform();
  m.machine = {2, 256, "console=ttyAMA0 quiet"};
  if (with_rootfs) m.rootfs = vmm::SporeManifest::Rootfs{"/images/root.img", 4096, std::string(64, 'b')};
  m.state = {"state.bin", std::string(64, 'c'), 100};
  m.memory_index = {"memory.idx", std::string(64, 'd'), 40};
  m.memory = {262144, 256ull << 20, 10, 12345, "chunks"};
  return m;
}

inline vmm::MachineState sample_state(size_t vcpus) {
  vmm::MachineState s;
  s.board_version = 1;
  for (uint32_t i = 0; i < vcpus; i++) {
    vmm::VcpuState v;
    v.index = i;
    v.mp_state = i ? 1 : 0;
    v.regs = {{0x6030000000100000ull, std::string(8, '\1')}, {0x6040000000100054ull, std::string(16, '\2')}};
    v.events = std::string(64, '\0');
    s.vcpus.push_back(v);
  }
  s.gic.dist = {{0x0, 0x37}, {0x100, 0xffffffff}};
  for (uint32_t i = 0; i < vcpus; i++) s.gic.cpus.push_back({i, {{0x80, 1}}, {{0xc660, 0xf0}}});
  s.gic.levels = {{32, 0x10}};
  s.uart.imsc = 0x20;
  s.rtc.offset_s = -5;
  s.generation.generation = 2;
  s.generation.int_status = 1;
  vmm::VirtioSlotState v;
  v.slot = 0;
  v.device_type = 19;
  v.transport.mmio.status = 15;
  v.transport.mmio.driver_features = 1ull << 32;
  v.transport.activated = true;
  vmm::virtio::QueueState q;
  q.size = 128;
  q.ready = true;
  q.desc_addr = 0x8000'0000;
  q.avail_addr = 0x8000'1000;
  q.used_addr = 0x8000'2000;
  v.transport.queues = {q, q, q};
  v.transport.device_state = std::string(8, '\0');
  s.virtio.push_back(v);
  v.slot = 1;
  v.device_type = 2;
  v.transport.queues = {q};
  v.transport.device_state.clear();
  s.virtio.push_back(v);
  return s;
}

inline vmm::MemoryIndex sample_index() {
  vmm::MemoryIndex idx;
  idx.chunk_size = 4096;
  idx.ram_size = 64 << 12;
  for (uint32_t i : {0u, 1u, 7u, 63u}) {
    vmm::ChunkEntry e;
    e.index = i;
    e.stored_size = 100 + i;
    e.digest.fill(static_cast<uint8_t>(i));
    idx.entries.push_back(e);
  }
  return idx;
}

inline bundle::AppConfig sample_app_config() {
  bundle::AppConfig c;
  c.name = "py";
  c.image = "python:3.12-slim";
  c.image_digest = "sha256:" + std::string(64, 'f');
  c.entrypoint = {"/docker-entrypoint.sh"};
  c.cmd = {"python3"};
  c.env = {"PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8"};
  c.workdir = "/srv";
  c.user = "1000:1000";
  c.cpus = 2;
  c.mem_mib = 512;
  c.warm = {"python3", "-c", "import json"};
  c.cmdline = "console=ttyAMA0 quiet";
  c.packer_version = "0.1.0";
  return c;
}

}  // namespace spore::fuzz
