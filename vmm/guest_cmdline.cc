#include "vmm/guest_cmdline.h"

namespace spore::vmm {

std::string guest_cmdline(GuestArch arch, bool verbose_console, RootMode root) {
  // quiet: every console byte is a trap to the VMM. panic=-1: a panic
  // resets, which the VMM reports. trust_bootloader: the device tree's
  // rng-seed (arm64) or the boot protocol's setup_data seed (x86_64) makes
  // the CRNG ready at once. The generation device is driven from user space
  // through UIO.
  std::string console = arch == GuestArch::kX86_64 ? "console=ttyS0" : "console=ttyAMA0";
  std::string c = console + (verbose_console ? " loglevel=6" : " quiet");
  c += " panic=-1 random.trust_bootloader=on uio_pdrv_genirq.of_id=spore,generation";
  if (root == RootMode::kReadOnly) c += " spore.rootmode=ro";
  else if (root == RootMode::kNone) c += " spore.rootmode=none";
  return c;
}

}  // namespace spore::vmm
