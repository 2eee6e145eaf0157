// x86_64 half of Machine: builds the fixed board for a cold boot. Spores
// (capture and restore) are not implemented for this board yet.
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include <cstring>

#include "base/log.h"
#include "base/strings.h"
#include "vmm/arch/x86_64/acpi.h"
#include "vmm/arch/x86_64/boot.h"
#include "vmm/arch/x86_64/cpu.h"
#include "vmm/arch/x86_64/irqchip.h"
#include "vmm/arch/x86_64/layout.h"
#include "vmm/arch/x86_64/mptable.h"
#include "vmm/arch/x86_64/power.h"
#include "vmm/devices/uart8250.h"
#include "vmm/devices/virtio/block.h"
#include "vmm/devices/virtio/rng.h"
#include "vmm/machine.h"

namespace spore::vmm {
namespace {

using namespace x86_64;

// Edge interrupt through an irqfd: a write to the eventfd raises the GSI
// inside the kernel without a trip through this process's vCPU threads.
class IrqfdLine final : public virtio::IrqLine {
 public:
  explicit IrqfdLine(UniqueFd fd) : fd_(std::move(fd)) {}
  void trigger() override {
    uint64_t one = 1;
    ssize_t n = ::write(fd_.get(), &one, sizeof one);
    (void)n;
  }

 private:
  UniqueFd fd_;
};

Result<std::unique_ptr<virtio::IrqLine>> irqfd_line(kvm::Vm& vm, uint32_t gsi) {
  UniqueFd efd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!efd) return errno_error("eventfd");
  SPORE_TRY(vm.irqfd(efd.get(), gsi));
  return std::unique_ptr<virtio::IrqLine>(new IrqfdLine(std::move(efd)));
}

Status check_config(const MachineConfig& c) {
  if (c.vcpus < 1 || c.vcpus > kMaxVcpus)
    return make_error(ErrorKind::kUsage, strfmt("--cpus must be between 1 and %u", kMaxVcpus));
  if (c.mem_mib < kMinRamMiB || c.mem_mib > kMaxRamMiB)
    return make_error(ErrorKind::kUsage,
                      strfmt("--mem must be between %llu and %llu MiB", static_cast<unsigned long long>(kMinRamMiB),
                             static_cast<unsigned long long>(kMaxRamMiB)));
  return ok_status();
}

// The board's part of the command line: what x86 has no device tree to
// describe, the virtio-mmio devices and the generation device.
std::string board_cmdline(const std::vector<uint32_t>& virtio_slots) {
  std::string c = strfmt(" spore.generation=0x%llx", static_cast<unsigned long long>(kGenerationBase));
  for (uint32_t slot : virtio_slots)
    c += strfmt(" virtio_mmio.device=4K@0x%llx:%u", static_cast<unsigned long long>(virtio_mmio_base(slot)),
                virtio_gsi(slot));
  return c;
}

}  // namespace

struct Machine::ArchDevices {
  MmioBus ports;  // port I/O: the same dispatch as MMIO, by port number
  std::unique_ptr<Uart8250> uart;
  std::vector<std::unique_ptr<PowerControl>> power;
};

void Machine::ArchDevicesDeleter::operator()(ArchDevices* d) const { delete d; }

Status Machine::spores_supported() {
  return make_error(ErrorKind::kUnavailable, "spores (capture, resume) are not implemented on x86_64 yet");
}

const char* Machine::kernel_file_name() { return "vmlinux"; }

Status Machine::build_vm(const MachineConfig& c, const std::string& ram_file) {
  SPORE_TRY(check_config(c));
  if (!ram_file.empty()) return spores_supported();
  const uint64_t ram_size = c.mem_mib << 20;

  SPORE_ASSIGN_OR_RETURN(kvm_, kvm::Kvm::open());
  for (auto [cap, what] : {std::pair<long, const char*>{KVM_CAP_EXT_CPUID, "KVM_SET_CPUID2"},
                           {KVM_CAP_IMMEDIATE_EXIT, "immediate exits"},
                           {KVM_CAP_USER_MEMORY, "user memory"}}) {
    if (!kvm_->check_extension(cap)) return make_error(ErrorKind::kUnavailable, strfmt("this host's KVM lacks %s", what));
  }
  SPORE_ASSIGN_OR_RETURN(vm_, kvm::Vm::create(*kvm_, 0));

  // One host mapping for all of RAM, seen by the guest in two places: below
  // the MMIO hole and above 4 GiB.
  SPORE_ASSIGN_OR_RETURN(Mapping ram, Mapping::anonymous(ram_size));
  const uint64_t low = low_ram_size(ram_size);
  uint8_t* host = ram.data();
  Mapping high = ram.split_off(low);
  mem_.add_region(0, std::move(ram));
  SPORE_TRY(vm_->set_memory_region(0, 0, low, host));
  if (high.valid()) {
    mem_.add_region(kHighRamStart, std::move(high));
    SPORE_TRY(vm_->set_memory_region(1, kHighRamStart, ram_size - low, host + low));
  }

  // The interrupt controllers exist before the vCPUs, whose local APICs
  // then come in-kernel too.
  SPORE_TRY(create_irqchip(*vm_));
  SPORE_ASSIGN_OR_RETURN(std::vector<CpuidEntry> supported, supported_cpuid(*kvm_));
  CpuidOptions co;
  co.vcpus = c.vcpus;
  co.tsc_deadline = vm_->check_extension(KVM_CAP_TSC_DEADLINE_TIMER) > 0;
  SPORE_ASSIGN_OR_RETURN(std::vector<CpuidEntry> cpuid, normalize_cpuid(supported, co));
  SPORE_ASSIGN_OR_RETURN(size_t run_size, kvm_->vcpu_mmap_size());
  for (uint32_t i = 0; i < c.vcpus; i++) {
    SPORE_ASSIGN_OR_RETURN(kvm::Vcpu v, kvm::Vcpu::create(*vm_, i, run_size));
    SPORE_TRY(init_vcpu(v, cpuid));
    vcpus_.push_back(std::move(v));
  }
  arch_.reset(new ArchDevices());
  platform_.arch = "x86_64";
  platform_.board_version = kBoardVersion;
  platform_.page_size = static_cast<uint32_t>(::sysconf(_SC_PAGESIZE));
  return ok_status();
}

Status Machine::build_devices(const MachineConfig& c) {
  SPORE_ASSIGN_OR_RETURN(loop_, EventLoop::create());

  kvm::Vm* vm = &*vm_;
  arch_->uart = std::make_unique<Uart8250>(c.console, [vm](bool level) {
    (void)vm->irq_line(gsi_irq_line(kCom1Gsi), level);
  });
  SPORE_TRY(arch_->ports.add(kCom1Port, kUartPorts, arch_->uart.get(), "com1"));
  auto on_power = [this](PowerControl::Event e) {
    if (e == PowerControl::Event::kPowerOff) finish(ExitKind::kPoweroff, "guest powered off");
    else finish(ExitKind::kReset, "guest rebooted (or its kernel panicked)");
  };
  const std::pair<PowerControl::Port, uint16_t> ports[] = {
      {PowerControl::Port::kSleepControl, kSleepControlPort}, {PowerControl::Port::kSleepStatus, kSleepStatusPort},
      {PowerControl::Port::kResetControl, kResetControlPort}, {PowerControl::Port::kI8042Data, kI8042DataPort},
      {PowerControl::Port::kI8042Command, kI8042CommandPort}, {PowerControl::Port::kPost, kPostPort}};
  for (auto [port, number] : ports) {
    arch_->power.push_back(std::make_unique<PowerControl>(port, on_power));
    SPORE_TRY(arch_->ports.add(number, 1, arch_->power.back().get(), strfmt("port 0x%x", number)));
  }

  SPORE_ASSIGN_OR_RETURN(auto gen_irq, irqfd_line(*vm_, kGenerationGsi));
  generation_ = std::make_unique<GenerationDevice>(std::move(gen_irq));
  SPORE_TRY(bus_.add(kGenerationBase, kPeriphSize, generation_.get(), "generation"));

  // virtio-mmio slots: 0 rootfs (becomes /dev/vda), then vsock, then rng.
  std::vector<std::unique_ptr<virtio::Device>> devices;
  if (!c.rootfs.empty()) {
    auto blk = virtio::Block::open(c.rootfs, c.rootfs_read_only, "spore-rootfs");
    if (!blk.ok()) return std::move(blk).error().wrap("rootfs");
    devices.push_back(std::move(*blk));
  }
  auto vsock = std::make_unique<virtio::Vsock>(kGuestCid, *loop_);
  vsock_ = vsock.get();
  devices.push_back(std::move(vsock));
  devices.push_back(std::make_unique<virtio::Rng>());
  if (devices.size() > kVirtioSlots) return make_error(ErrorKind::kInternal, "more virtio devices than slots");

  if (!vm_->check_extension(KVM_CAP_IRQFD)) return make_error(ErrorKind::kUnavailable, "this host's KVM lacks irqfd");
  bool have_ioeventfd = vm_->check_extension(KVM_CAP_IOEVENTFD);
  for (uint32_t slot = 0; slot < devices.size(); slot++) {
    SPORE_ASSIGN_OR_RETURN(auto irq, irqfd_line(*vm_, virtio_gsi(slot)));
    SPORE_ASSIGN_OR_RETURN(auto t, virtio::MmioTransport::create(std::move(devices[slot]), mem_, *loop_, std::move(irq)));
    uint64_t base = virtio_mmio_base(slot);
    if (have_ioeventfd) {
      for (size_t q = 0; q < t->queue_count(); q++)
        SPORE_TRY(vm_->ioeventfd(t->notify_fd(q), base + virtio::kMmioQueueNotify, 4, q));
    }
    SPORE_TRY(bus_.add(base, virtio::kMmioSize, t.get(), strfmt("virtio-%s", t->device().name())));
    virtio_.push_back(std::move(t));
    virtio_slots_.push_back(slot);
  }
  return ok_status();
}

Status Machine::load_boot_payload(const MachineConfig& c) {
  if (c.kernel.empty()) return make_error(ErrorKind::kUsage, "no kernel given");
  const uint64_t ram_size = c.mem_mib << 20;
  SPORE_ASSIGN_OR_RETURN(BootLayout layout, load_kernel_and_initrd(mem_, ram_size, c.kernel, c.initrd));

  SPORE_ASSIGN_OR_RETURN(AcpiTables acpi, build_acpi_tables(kAcpiAddr));
  if (!mem_.write(acpi.rsdp_addr, acpi.bytes.data(), acpi.bytes.size()))
    return make_error(ErrorKind::kInternal, "no guest RAM for the ACPI tables");
  SPORE_ASSIGN_OR_RETURN(std::vector<uint8_t> mptable, build_mptable(c.vcpus, kMpTableAddr));
  if (!mem_.write(kMpTableAddr, mptable.data(), mptable.size()))
    return make_error(ErrorKind::kInternal, "no guest RAM for the MP table");

  BootParamsConfig bp;
  bp.ram_size = ram_size;
  bp.cmdline = c.cmdline + board_cmdline(virtio_slots_);
  bp.rsdp_addr = acpi.rsdp_addr;
  bp.rng_seed.resize(64);
  if (::getrandom(bp.rng_seed.data(), bp.rng_seed.size(), 0) != static_cast<ssize_t>(bp.rng_seed.size()))
    return errno_error("getrandom");
  SPORE_TRY(write_boot_params(mem_, layout, bp));
  std::fill(bp.rng_seed.begin(), bp.rng_seed.end(), 0);
  SPORE_TRY(write_boot_page_tables(mem_));
  SPORE_TRY(write_boot_gdt(mem_));
  SPORE_TRY(set_boot_regs(vcpus_[0], layout.entry, kBootParamsAddr));
  return generation_->init_fresh();
}

Result<MachineState> Machine::save_arch_state() { return std::move(spores_supported()).error(); }

Status Machine::restore_arch_state(const RestoreSpec&) { return spores_supported(); }

bool Machine::handle_arch_exit(size_t index, kvm_run* run) {
  switch (run->exit_reason) {
    case KVM_EXIT_IO: {
      auto& io = run->io;
      uint8_t* data = reinterpret_cast<uint8_t*>(run) + io.data_offset;
      // String I/O (rep ins/outs) comes as count accesses of size bytes each.
      for (uint32_t i = 0; i < io.count; i++, data += io.size) {
        if (io.direction == KVM_EXIT_IO_OUT) {
          if (!arch_->ports.write(io.port, data, io.size))
            LOG_GUEST("guest wrote to unmapped port 0x%x", io.port);
        } else if (!arch_->ports.read(io.port, data, io.size)) {
          std::memset(data, 0xff, io.size);  // nothing answers: the bus floats high
        }
      }
      return true;
    }
    case KVM_EXIT_SHUTDOWN:
      // A triple fault: how Linux's last-resort reboot (and a panic's) ends.
      finish(ExitKind::kReset, "guest rebooted (or its kernel panicked)");
      return true;
    default:
      (void)index;
      return false;
  }
}

}  // namespace spore::vmm
