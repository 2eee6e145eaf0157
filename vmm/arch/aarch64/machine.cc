// aarch64 half of Machine: builds the fixed board, for a cold boot or from
// a spore, and saves its architectural state.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>

#include "base/log.h"
#include "base/strings.h"
#include "vmm/arch/aarch64/boot.h"
#include "vmm/arch/aarch64/cpu.h"
#include "vmm/arch/aarch64/fdt.h"
#include "vmm/arch/aarch64/gic.h"
#include "vmm/arch/aarch64/layout.h"
#include "vmm/arch/aarch64/snapshot.h"
#include "vmm/devices/rtc.h"
#include "vmm/devices/serial.h"
#include "vmm/devices/virtio/block.h"
#include "vmm/devices/virtio/rng.h"
#include "vmm/machine.h"

namespace spore::vmm {
namespace {

using namespace aarch64;

// Edge interrupt through an irqfd: a write to the eventfd injects the SPI
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

Result<std::unique_ptr<virtio::IrqLine>> irqfd_line(kvm::Vm& vm, uint32_t spi) {
  UniqueFd efd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!efd) return errno_error("eventfd");
  SPORE_TRY(vm.irqfd(efd.get(), Gic::spi_gsi(spi)));
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

// A spore's RAM file, mapped privately: reads share the page cache with
// every other VM resumed from it, writes stay in this process.
Result<GuestMemory> map_ram_file(const std::string& path, uint64_t size) {
  SPORE_ASSIGN_OR_RETURN(UniqueFd fd, open_file(path, O_RDONLY));
  auto fsize = file_size(fd.get());
  if (!fsize.ok()) return std::move(fsize).error().wrap(path);
  if (*fsize != size) return make_error(ErrorKind::kCorrupt, path + ": RAM file has the wrong size");
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd.get(), 0);
  if (p == MAP_FAILED) return errno_error("mmap " + path);
  GuestMemory mem;
  mem.add_region(kRamBase, Mapping(p, size));
  return mem;
}

}  // namespace

struct Machine::ArchDevices {
  UniqueFd gic;
  std::unique_ptr<Pl011> uart;
  std::unique_ptr<Pl031> rtc;
};

void Machine::ArchDevicesDeleter::operator()(ArchDevices* d) const { delete d; }

Status Machine::spores_supported() { return ok_status(); }

const char* Machine::kernel_file_name() { return "Image"; }

Status Machine::build_vm(const MachineConfig& c, const std::string& ram_file) {
  SPORE_TRY(check_config(c));
  const uint64_t ram_size = c.mem_mib << 20;

  SPORE_ASSIGN_OR_RETURN(kvm_, kvm::Kvm::open());
  if (!kvm_->check_extension(KVM_CAP_ARM_PSCI_0_2))
    return make_error(ErrorKind::kUnavailable, "this host's KVM lacks PSCI 0.2 for arm64 guests");
  int ipa = kvm_->check_extension(KVM_CAP_ARM_VM_IPA_SIZE);
  unsigned long type = ipa >= static_cast<int>(kIpaBits) ? KVM_VM_TYPE_ARM_IPA_SIZE(kIpaBits) : 0;
  SPORE_ASSIGN_OR_RETURN(vm_, kvm::Vm::create(*kvm_, type));

  if (ram_file.empty()) {
    SPORE_ASSIGN_OR_RETURN(mem_, GuestMemory::create_anonymous(kRamBase, ram_size));
  } else {
    SPORE_ASSIGN_OR_RETURN(mem_, map_ram_file(ram_file, ram_size));
  }
  SPORE_TRY(vm_->set_memory_region(0, kRamBase, ram_size, mem_.regions()[0].host));

  // vCPUs and redistributors are paired by creation order, which a restore
  // must repeat: always 0..n-1.
  SPORE_ASSIGN_OR_RETURN(size_t run_size, kvm_->vcpu_mmap_size());
  SPORE_ASSIGN_OR_RETURN(CpuTemplate tmpl, preferred_cpu(*vm_));
  for (uint32_t i = 0; i < c.vcpus; i++) {
    SPORE_ASSIGN_OR_RETURN(kvm::Vcpu v, kvm::Vcpu::create(*vm_, i, run_size));
    SPORE_TRY(init_vcpu(v, tmpl, i == 0));
    vcpus_.push_back(std::move(v));
  }
  SPORE_ASSIGN_OR_RETURN(Gic gic, Gic::create(*vm_, c.vcpus));
  arch_.reset(new ArchDevices());
  arch_->gic = gic.take_fd();
  SPORE_ASSIGN_OR_RETURN(platform_, host_platform(*kvm_, *vm_, vcpus_[0], arch_->gic.get(), tmpl, kIpaBits));
  return ok_status();
}

Status Machine::build_devices(const MachineConfig& c) {
  SPORE_ASSIGN_OR_RETURN(loop_, EventLoop::create());

  kvm::Vm* vm = &*vm_;
  arch_->uart = std::make_unique<Pl011>(c.console, [vm](bool level) {
    (void)vm->irq_line(Gic::spi_irq_line(kUartSpi), level);
  });
  arch_->rtc = std::make_unique<Pl031>();
  SPORE_ASSIGN_OR_RETURN(auto gen_irq, irqfd_line(*vm_, kGenerationSpi));
  generation_ = std::make_unique<GenerationDevice>(std::move(gen_irq));
  SPORE_TRY(bus_.add(kUartBase, kPeriphSize, arch_->uart.get(), "pl011"));
  SPORE_TRY(bus_.add(kRtcBase, kPeriphSize, arch_->rtc.get(), "pl031"));
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

  if (!vm_->check_extension(KVM_CAP_IRQFD)) return make_error(ErrorKind::kUnavailable, "this host's KVM lacks irqfd");
  bool have_ioeventfd = vm_->check_extension(KVM_CAP_IOEVENTFD);
  for (uint32_t slot = 0; slot < devices.size(); slot++) {
    SPORE_ASSIGN_OR_RETURN(auto irq, irqfd_line(*vm_, virtio_spi(slot)));
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
  SPORE_ASSIGN_OR_RETURN(BootLayout layout, load_kernel_and_initrd(mem_, kRamBase, ram_size, c.kernel, c.initrd));
  FdtConfig fc;
  fc.vcpus = c.vcpus;
  fc.ram_size = ram_size;
  fc.cmdline = c.cmdline;
  if (layout.initrd_size) {
    fc.initrd_start = layout.initrd_gpa;
    fc.initrd_end = layout.initrd_gpa + layout.initrd_size;
  }
  fc.virtio_slots = virtio_slots_;
  fc.generation_device = true;
  fc.rng_seed.resize(64);
  if (::getrandom(fc.rng_seed.data(), fc.rng_seed.size(), 0) != static_cast<ssize_t>(fc.rng_seed.size()))
    return errno_error("getrandom");
  SPORE_ASSIGN_OR_RETURN(std::vector<uint8_t> fdt, build_fdt(fc));
  if (!mem_.write(layout.fdt_gpa, fdt.data(), fdt.size()))
    return make_error(ErrorKind::kInternal, "device tree does not fit in guest RAM");
  SPORE_TRY(set_boot_regs(vcpus_[0], layout.kernel_gpa, layout.fdt_gpa));
  return generation_->init_fresh();
}

Result<MachineState> Machine::save_arch_state() {
  MachineState st;
  st.board_version = kBoardVersion;
  for (const auto& v : vcpus_) {
    SPORE_ASSIGN_OR_RETURN(VcpuState vs, save_vcpu(v));
    st.vcpus.push_back(std::move(vs));
  }
  SPORE_ASSIGN_OR_RETURN(st.gic, save_gic(arch_->gic.get(), static_cast<uint32_t>(vcpus_.size())));
  st.uart = arch_->uart->state();
  st.rtc = arch_->rtc->state();
  return st;
}

Status Machine::restore_arch_state(const RestoreSpec& spec) {
  const MachineState& st = spec.state;
  if (st.board_version != kBoardVersion)
    return make_error(ErrorKind::kCorrupt, strfmt("the spore is for board version %u, this VMM builds %u",
                                                  st.board_version, kBoardVersion));
  if (st.vcpus.size() != vcpus_.size())
    return make_error(ErrorKind::kCorrupt, "the spore's vCPU count does not match its manifest");
  // Interrupt controller before vCPUs: the CPU interface registers belong
  // to it, and vCPU timer state may raise interrupts it must route.
  SPORE_TRY(restore_gic(arch_->gic.get(), static_cast<uint32_t>(vcpus_.size()), st.gic));
  for (size_t i = 0; i < vcpus_.size(); i++) SPORE_TRY(restore_vcpu(vcpus_[i], st.vcpus[i]));
  arch_->uart->restore(st.uart);
  arch_->rtc->restore(st.rtc);
  return ok_status();
}

bool Machine::handle_arch_exit(size_t, kvm_run*) { return false; }

}  // namespace spore::vmm
