// What the agent does as PID 1 before serving: mount the basics, put the
// read-only rootfs (with a tmpfs overlay) in place as /, and tidy /dev.
#pragma once

#include <string>

#include "base/result.h"

namespace spore::agent {

enum class RootMode {
  kOverlay,  // read-only image + writable tmpfs overlay (default)
  kReadOnly, // read-only image as /, writable tmpfs only on /tmp, /run, /dev/shm
  kNone,     // stay in the initramfs (no rootfs)
};

struct BootOptions {
  std::string root_device = "/dev/vda";
  std::string root_fstype = "auto";  // auto: erofs or ext4, from the superblock
  RootMode mode = RootMode::kOverlay;
  std::string hostname = "spore";
  bool hostname_explicit = false;  // spore.hostname= was given
  // spore.generation=0x...: the generation device's physical address, on
  // boards with no device tree to describe it (x86_64); 0 when not given.
  uint64_t generation_addr = 0;
};

// Parses spore.* parameters from a kernel command line.
BootOptions parse_cmdline(const std::string& cmdline);

// Mounts /proc, /sys, /dev in the initramfs and sends stdio to /dev/console.
void early_setup();

// Switches into the rootfs per opts. Returns an error only for problems the
// guest cannot run without (the caller reports it and keeps serving).
Status enter_rootfs(const BootOptions& opts);

// Hostname and the loopback interface.
void setup_identity(const BootOptions& opts);

}  // namespace spore::agent
