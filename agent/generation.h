// The guest side of the generation device (doc/generation-device.md): the
// agent maps its registers through uio_pdrv_genirq (or, on boards without a
// device tree, through /dev/mem at the address the command line gives) and,
// whenever the generation changes (every resume or fork), reseeds the kernel
// RNG, steps the clock to the host's time and refreshes the VM's identity,
// before it runs anything else.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/fd.h"

namespace spore::agent {

class Generation {
 public:
  // Finds the device: a uio node named "generation", or else the page at
  // phys_addr (if not 0) through /dev/mem, without its interrupt. nullptr
  // without either (e.g. a kernel without UIO): then nothing is ever
  // refreshed. fixed_hostname: keep this hostname instead of deriving one.
  static std::unique_ptr<Generation> open(const std::string& fixed_hostname, uint64_t phys_addr = 0);
  ~Generation();

  // Becomes readable when the device interrupts; -1 without an interrupt
  // (the device mapped through /dev/mem), which poll() ignores.
  int fd() const { return fd_.get(); }
  // Call when fd() is readable: re-arms the interrupt and applies changes.
  void on_interrupt();
  // Applies fixups if the generation moved since the last look. Cheap when
  // it did not (one register read). Returns true when it applied them.
  bool refresh();

  uint64_t generation() const { return generation_; }
  const std::string& instance_id() const { return instance_id_; }
  const std::string& spore_id() const { return spore_id_; }  // empty after a cold boot
  // Variables every command sees: SPORE_INSTANCE_ID, SPORE_GENERATION, SPORE_ID.
  std::vector<std::string> environment() const;
  // The fixed hostname, or one derived from the instance identity
  // ("spore-" + 12 hex digits).
  std::string hostname() const;

 private:
  Generation() = default;
  uint32_t reg(uint32_t offset) const;
  void apply();

  UniqueFd fd_;
  volatile uint32_t* regs_ = nullptr;
  size_t map_size_ = 0;
  uint64_t generation_ = 0;
  std::string instance_id_, spore_id_, fixed_hostname_;
};

}  // namespace spore::agent
