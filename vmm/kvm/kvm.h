// Thin RAII wrappers over the KVM ioctl API: the system fd, a VM, a vCPU.
// Architecture-specific ioctls live with the architecture (vmm/arch/).
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace spore::vmm::kvm {

// UAPI structs that end in a flexible array declared with
// __DECLARE_FLEX_ARRAY (kvm_reg_list, kvm_cpuid2, kvm_msrs, kvm_msr_list,
// kvm_xsave, kvm_irq_routing...) are larger in C++ than in C: the macro's
// empty struct takes a byte there. Their sizeof is then wrong, and so is
// every ioctl number built from it (the size is part of the number). Code
// here spells the C layout out and builds those numbers itself.
struct RegListHeader {
  uint64_t n;
};
inline constexpr unsigned long kGetRegList = _IOWR(KVMIO, 0xb0, RegListHeader);

class Kvm {
 public:
  // Opens /dev/kvm (or $SPORE_KVM_DEVICE) and checks the API version. Errors
  // say what to do: missing module, no permission.
  static Result<Kvm> open();
  int fd() const { return fd_.get(); }
  int check_extension(long cap) const;
  Result<size_t> vcpu_mmap_size() const;

 private:
  UniqueFd fd_;
};

class Vm {
 public:
  static Result<Vm> create(const Kvm& kvm, unsigned long type);
  int fd() const { return fd_.get(); }
  int check_extension(long cap) const;

  Status set_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, void* host, uint32_t flags = 0);
  Result<UniqueFd> create_device(uint32_t type);
  // Level for a level-triggered line; irq encodes type/vcpu/number per arch.
  Status irq_line(uint32_t irq, bool level);
  // Writes to eventfd inject gsi (edge).
  Status irqfd(int eventfd, uint32_t gsi);
  // Guest writes of datamatch (len bytes) to addr signal eventfd in-kernel.
  Status ioeventfd(int eventfd, uint64_t addr, uint32_t len, uint64_t datamatch);

 private:
  UniqueFd fd_;
};

class Vcpu {
 public:
  static Result<Vcpu> create(const Vm& vm, uint32_t index, size_t mmap_size);
  Vcpu() = default;
  Vcpu(Vcpu&&) = default;
  Vcpu& operator=(Vcpu&&) = default;

  int fd() const { return fd_.get(); }
  uint32_t index() const { return index_; }
  kvm_run* run_state() const { return reinterpret_cast<kvm_run*>(run_.data()); }

  // One KVM_RUN. EINTR/EAGAIN come back as errors with that errno.
  Status run();

  Status get_one_reg(uint64_t id, void* value) const;
  Status set_one_reg(uint64_t id, const void* value) const;
  Result<std::vector<uint64_t>> reg_list() const;
  Result<kvm_mp_state> get_mp_state() const;
  Status set_mp_state(const kvm_mp_state& s) const;

 private:
  UniqueFd fd_;
  Mapping run_;
  uint32_t index_ = 0;
};

// Size in bytes of a ONE_REG register value encoded in its id.
size_t one_reg_size(uint64_t id);

}  // namespace spore::vmm::kvm
