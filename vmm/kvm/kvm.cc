#include "vmm/kvm/kvm.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cstdlib>

#include "base/strings.h"

namespace spore::vmm::kvm {
namespace {

int xioctl(int fd, unsigned long req, unsigned long arg) {
  int r;
  do {
    r = ::ioctl(fd, req, arg);
  } while (r < 0 && errno == EINTR && req != KVM_RUN);
  return r;
}
int xioctl(int fd, unsigned long req, const void* arg) {
  return xioctl(fd, req, reinterpret_cast<unsigned long>(arg));
}

}  // namespace

Result<Kvm> Kvm::open() {
  const char* path = std::getenv("SPORE_KVM_DEVICE");
  if (!path || !*path) path = "/dev/kvm";
  int fd = ::open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT)
      return Error{ErrorKind::kUnavailable, e,
                   strfmt("%s does not exist: this host has no KVM (load the kvm module, or enable "
                          "virtualization for this machine)", path)};
    if (e == EACCES || e == EPERM)
      return Error{ErrorKind::kUnavailable, e,
                   strfmt("no permission to open %s (add your user to the group that owns it, "
                          "usually 'kvm')", path)};
    return errno_error(path, e);
  }
  Kvm k;
  k.fd_.reset(fd);
  int v = xioctl(fd, KVM_GET_API_VERSION, 0ul);
  if (v != KVM_API_VERSION)
    return make_error(ErrorKind::kUnavailable, strfmt("%s speaks KVM API %d, need %d", path, v, KVM_API_VERSION));
  return k;
}

int Kvm::check_extension(long cap) const {
  int r = xioctl(fd_.get(), KVM_CHECK_EXTENSION, static_cast<unsigned long>(cap));
  return r < 0 ? 0 : r;
}

Result<size_t> Kvm::vcpu_mmap_size() const {
  int r = xioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0ul);
  if (r <= 0) return errno_error("KVM_GET_VCPU_MMAP_SIZE");
  return static_cast<size_t>(r);
}

Result<Vm> Vm::create(const Kvm& kvm, unsigned long type) {
  int fd = xioctl(kvm.fd(), KVM_CREATE_VM, type);
  if (fd < 0) return errno_error("KVM_CREATE_VM");
  Vm vm;
  vm.fd_.reset(fd);
  return vm;
}

int Vm::check_extension(long cap) const {
  int r = xioctl(fd_.get(), KVM_CHECK_EXTENSION, static_cast<unsigned long>(cap));
  return r < 0 ? 0 : r;
}

Status Vm::set_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, void* host, uint32_t flags) {
  kvm_userspace_memory_region r{};
  r.slot = slot;
  r.flags = flags;
  r.guest_phys_addr = gpa;
  r.memory_size = size;
  r.userspace_addr = reinterpret_cast<uint64_t>(host);
  if (xioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &r) < 0) return errno_error("KVM_SET_USER_MEMORY_REGION");
  return ok_status();
}

Result<UniqueFd> Vm::create_device(uint32_t type) {
  kvm_create_device d{};
  d.type = type;
  if (xioctl(fd_.get(), KVM_CREATE_DEVICE, &d) < 0) return errno_error(strfmt("KVM_CREATE_DEVICE(%u)", type));
  return UniqueFd(static_cast<int>(d.fd));
}

Status Vm::irq_line(uint32_t irq, bool level) {
  kvm_irq_level l{};
  l.irq = irq;
  l.level = level ? 1 : 0;
  if (xioctl(fd_.get(), KVM_IRQ_LINE, &l) < 0) return errno_error("KVM_IRQ_LINE");
  return ok_status();
}

Status Vm::irqfd(int eventfd, uint32_t gsi) {
  kvm_irqfd f{};
  f.fd = static_cast<uint32_t>(eventfd);
  f.gsi = gsi;
  if (xioctl(fd_.get(), KVM_IRQFD, &f) < 0) return errno_error("KVM_IRQFD");
  return ok_status();
}

Status Vm::ioeventfd(int eventfd, uint64_t addr, uint32_t len, uint64_t datamatch) {
  kvm_ioeventfd e{};
  e.datamatch = datamatch;
  e.addr = addr;
  e.len = len;
  e.fd = eventfd;
  e.flags = KVM_IOEVENTFD_FLAG_DATAMATCH;
  if (xioctl(fd_.get(), KVM_IOEVENTFD, &e) < 0) return errno_error("KVM_IOEVENTFD");
  return ok_status();
}

Result<Vcpu> Vcpu::create(const Vm& vm, uint32_t index, size_t mmap_size) {
  int fd = xioctl(vm.fd(), KVM_CREATE_VCPU, static_cast<unsigned long>(index));
  if (fd < 0) return errno_error(strfmt("KVM_CREATE_VCPU(%u)", index));
  Vcpu v;
  v.fd_.reset(fd);
  v.index_ = index;
  void* p = ::mmap(nullptr, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return errno_error("mmap(kvm_run)");
  v.run_ = Mapping(p, mmap_size);
  return v;
}

Status Vcpu::run() {
  if (::ioctl(fd_.get(), KVM_RUN, 0) < 0) return errno_error("KVM_RUN");
  return ok_status();
}

Status Vcpu::get_one_reg(uint64_t id, void* value) const {
  kvm_one_reg r{id, reinterpret_cast<uint64_t>(value)};
  if (xioctl(fd_.get(), KVM_GET_ONE_REG, &r) < 0)
    return errno_error(strfmt("KVM_GET_ONE_REG(0x%llx)", static_cast<unsigned long long>(id)));
  return ok_status();
}

Status Vcpu::set_one_reg(uint64_t id, const void* value) const {
  kvm_one_reg r{id, reinterpret_cast<uint64_t>(value)};
  if (xioctl(fd_.get(), KVM_SET_ONE_REG, &r) < 0)
    return errno_error(strfmt("KVM_SET_ONE_REG(0x%llx)", static_cast<unsigned long long>(id)));
  return ok_status();
}

Result<std::vector<uint64_t>> Vcpu::reg_list() const {
  // struct kvm_reg_list in its C layout: n, then n register ids.
  RegListHeader probe{0};
  if (xioctl(fd_.get(), kGetRegList, &probe) < 0 && errno != E2BIG) return errno_error("KVM_GET_REG_LIST");
  if (probe.n > 65536) return make_error(ErrorKind::kInternal, "KVM_GET_REG_LIST: implausible register count");
  std::vector<uint64_t> buf(1 + probe.n);
  buf[0] = probe.n;
  if (xioctl(fd_.get(), kGetRegList, buf.data()) < 0) return errno_error("KVM_GET_REG_LIST");
  if (buf[0] > probe.n) return make_error(ErrorKind::kInternal, "KVM_GET_REG_LIST: the register count grew");
  return std::vector<uint64_t>(buf.begin() + 1, buf.begin() + 1 + static_cast<ptrdiff_t>(buf[0]));
}

Result<kvm_mp_state> Vcpu::get_mp_state() const {
  kvm_mp_state s{};
  if (xioctl(fd_.get(), KVM_GET_MP_STATE, &s) < 0) return errno_error("KVM_GET_MP_STATE");
  return s;
}

Status Vcpu::set_mp_state(const kvm_mp_state& s) const {
  if (xioctl(fd_.get(), KVM_SET_MP_STATE, &s) < 0) return errno_error("KVM_SET_MP_STATE");
  return ok_status();
}

size_t one_reg_size(uint64_t id) {
  return size_t{1} << ((id & KVM_REG_SIZE_MASK) >> KVM_REG_SIZE_SHIFT);
}

}  // namespace spore::vmm::kvm
