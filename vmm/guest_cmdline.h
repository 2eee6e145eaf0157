// The guest kernel command line of a cold boot: kernel options the board
// needs plus the agent's spore.* options (agent/boot.h). One definition for
// spore-vm, spore-pack and the stub.
#pragma once

#include <string>

namespace spore::vmm {

enum class RootMode { kOverlay, kReadOnly, kNone };

std::string guest_cmdline(bool verbose_console, RootMode root);

}  // namespace spore::vmm
