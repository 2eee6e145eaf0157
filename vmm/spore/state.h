// state.bin: the machine state of a spore, everything but RAM
// (doc/spore-format.md). Plain data; each device's part is encoded by the
// device's own save/load functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "vmm/devices/generation.h"
#include "vmm/devices/rtc.h"
#include "vmm/devices/serial.h"
#include "vmm/devices/virtio/mmio.h"

namespace spore::vmm {

struct RegValue {
  uint64_t id = 0;     // KVM ONE_REG id; its size is encoded in the id
  std::string value;   // raw bytes, one_reg_size(id) long
};

struct VcpuState {
  uint32_t index = 0;
  uint32_t mp_state = 0;   // KVM_MP_STATE_*
  std::vector<RegValue> regs;  // in KVM_GET_REG_LIST order: also the restore order
  std::string events;      // struct kvm_vcpu_events, raw
};

// In-kernel GICv3, as KVM's device attributes expose it.
struct GicCpuState {
  uint32_t vcpu = 0;
  std::vector<std::pair<uint32_t, uint32_t>> redist;   // redistributor offset -> value
  std::vector<std::pair<uint64_t, uint64_t>> sysregs;  // ICC_* instruction encoding -> value
};
struct GicState {
  std::vector<std::pair<uint32_t, uint32_t>> dist;    // distributor offset -> value, restore order
  std::vector<GicCpuState> cpus;
  std::vector<std::pair<uint32_t, uint32_t>> levels;  // first INTID of 32 -> line-level bitmap
};

struct VirtioSlotState {
  uint32_t slot = 0;
  uint32_t device_type = 0;
  virtio::TransportSnapshot transport;
};

struct MachineState {
  uint32_t board_version = 0;
  std::vector<VcpuState> vcpus;
  GicState gic;
  SerialState uart;
  RtcState rtc;
  GenerationState generation;
  std::vector<VirtioSlotState> virtio;
};

std::string encode_machine_state(const MachineState& s);
Result<MachineState> decode_machine_state(std::string_view data);

}  // namespace spore::vmm
