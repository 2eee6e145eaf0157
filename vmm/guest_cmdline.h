// The guest kernel command line of a cold boot: kernel options the board
// needs plus the agent's spore.* options (agent/boot.h). One definition for
// spore-vm, spore-pack and the stub. The machine adds what only it knows
// (on x86_64, the virtio-mmio devices).
#pragma once

#include <string>

namespace spore::vmm {

enum class RootMode { kOverlay, kReadOnly, kNone };

// The board a command line is for (spore-pack may pack for another one).
enum class GuestArch { kAarch64, kX86_64 };

// The board this build's VMM runs.
constexpr GuestArch native_guest_arch() {
#if defined(__x86_64__)
  return GuestArch::kX86_64;
#else
  return GuestArch::kAarch64;
#endif
}

std::string guest_cmdline(GuestArch arch, bool verbose_console, RootMode root);

}  // namespace spore::vmm
