// The generation device: tells a guest that it was resumed or forked.
//
// A 4 KiB MMIO page (doc/generation-device.md) with a 64-bit generation
// counter, the host's wall-clock time, a fresh entropy seed and the identity
// of this VM instance. Every resume bumps the generation, draws a new seed and
// identity, and raises an edge interrupt; the guest agent then reseeds the
// kernel RNG, steps the clock and refreshes its identity. Forks therefore
// never share randomness.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>

#include "base/codec.h"
#include "base/result.h"
#include "vmm/devices/mmio_bus.h"
#include "vmm/devices/virtio/device.h"

namespace spore::vmm {

struct GenerationState {
  uint64_t generation = 0;
  uint64_t resumed_ns = 0;  // host CLOCK_REALTIME at the last resume; 0 after a cold boot
  std::array<uint8_t, 32> seed{};
  std::array<uint8_t, 16> instance_id{};
  std::array<uint8_t, 16> spore_id{};
  uint32_t int_status = 0;
};

class GenerationDevice final : public MmioDevice {
 public:
  static constexpr uint32_t kMagic = 0x4e475053;  // "SPGN"
  static constexpr uint32_t kVersion = 1;

  explicit GenerationDevice(std::unique_ptr<virtio::IrqLine> irq) : irq_(std::move(irq)) {}

  // Cold boot: generation 1, fresh seed and identity.
  Status init_fresh();
  // Resume: state from the spore, then a new generation, seed and identity;
  // the interrupt is raised by notify_guest() once the vCPUs run.
  Status resume_from(const GenerationState& saved, const std::array<uint8_t, 16>& spore_id);
  void notify_guest();

  GenerationState state() const;
  static void save(Encoder& e, const GenerationState& s);
  static Result<GenerationState> load(Decoder& d);

  void mmio_read(uint64_t offset, uint8_t* data, size_t len) override;
  void mmio_write(uint64_t offset, const uint8_t* data, size_t len) override;

 private:
  mutable std::mutex mu_;
  std::unique_ptr<virtio::IrqLine> irq_;
  GenerationState s_;
  uint64_t time_latch_ = 0;  // TIME_HI reads the sample TIME_LO took
};

}  // namespace spore::vmm
