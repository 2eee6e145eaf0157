// spore-kvm-smoke: proves that /dev/kvm runs an x86_64 guest. Run by the
// ctest entry "testbed: KVM smoke test (x86_64)" inside the x86_64 testbed
// (or directly on a host with hardware KVM).
//
// It checks the KVM API version and the capabilities every x86 VMM needs,
// then runs a small real-mode program on one vCPU: the program adds up a
// table of words in guest RAM, reports the sum with a 16-bit OUT, stores a
// marker through a segment that points outside guest RAM (an MMIO exit) and
// halts. Every exit, the values it carries and the registers after HLT are
// checked against what the program must produce. Prints what it saw; exit
// status 0 only if everything matched.
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "base/fd.h"

namespace {

using spore::Mapping;
using spore::UniqueFd;

constexpr uint64_t kRamSize = 0x10000;  // 64 KiB at guest physical 0
constexpr uint16_t kCodeAt = 0x1000;
constexpr uint16_t kTableAt = 0x1100;
constexpr uint16_t kSumPort = 0x80;
constexpr uint64_t kMarkerAddr = 0x20010;  // DS = 0x2000, offset 0x10: no RAM there
constexpr uint16_t kMarker = 0xbeef;
constexpr unsigned kDeadlineSeconds = 120;  // a guest that never halts must not hang the testbed

constexpr std::array<uint16_t, 8> kTable = {0x1357, 0x2468, 0x9abc, 0xdef0, 0x0f0f, 0x7777, 0xfedc, 0x0001};

// 16-bit real-mode code, loaded at kCodeAt and started with CS = 0.
constexpr uint8_t kCode[] = {
    0xbe, kTableAt & 0xff, kTableAt >> 8,  // mov si, kTableAt
    0xb9, kTable.size(), 0x00,             // mov cx, table size
    0x31, 0xc0,                            // xor ax, ax
    0x03, 0x04,                            // again: add ax, [si]
    0x83, 0xc6, 0x02,                      // add si, 2
    0x49,                                  // dec cx
    0x75, 0xf8,                            // jnz again
    0xba, kSumPort, 0x00,                  // mov dx, kSumPort
    0xef,                                  // out dx, ax
    0xbb, 0x00, 0x20,                      // mov bx, 0x2000
    0x8e, 0xdb,                            // mov ds, bx
    0xc7, 0x06, 0x10, 0x00,                // mov word [0x10], kMarker
    kMarker & 0xff, kMarker >> 8,
    0xf4,                                  // hlt
};

// Linux 6.1's uapi headers declare kvm_cpuid2's entries with
// __DECLARE_FLEX_ARRAY, whose empty struct has size 1 in C++: sizeof is 12
// there instead of C's 8, and KVM_GET_SUPPORTED_CPUID, which encodes that
// size, becomes an ioctl KVM does not know (EINVAL). So the header is spelled
// out here with the kernel's layout.
struct CpuidHeader {
  uint32_t nent;
  uint32_t padding;
};
static_assert(sizeof(CpuidHeader) == 8);
constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CpuidHeader);

int failures = 0;

void check(bool ok, const char* what) {
  std::printf("%s %s\n", ok ? "ok" : "FAILED", what);
  if (!ok) failures++;
}

[[noreturn]] void die(const char* what) {
  std::printf("FAILED %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

void on_alarm(int) {
  static const char msg[] = "FAILED the guest did not halt before the deadline\n";
  (void)!::write(STDOUT_FILENO, msg, sizeof msg - 1);
  ::_exit(1);
}

uint16_t expected_sum() {
  uint16_t sum = 0;
  for (uint16_t w : kTable) sum = static_cast<uint16_t>(sum + w);
  return sum;
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  ::signal(SIGALRM, on_alarm);
  ::alarm(kDeadlineSeconds);

  UniqueFd kvm(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!kvm) die("open /dev/kvm");
  int api = ::ioctl(kvm.get(), KVM_GET_API_VERSION, 0);
  std::printf("KVM API version %d\n", api);
  check(api == KVM_API_VERSION, "API version is 12");
  struct Cap {
    int id;
    const char* name;
  };
  for (Cap c : {Cap{KVM_CAP_USER_MEMORY, "USER_MEMORY"}, Cap{KVM_CAP_IRQCHIP, "IRQCHIP"},
                Cap{KVM_CAP_IRQFD, "IRQFD"}, Cap{KVM_CAP_IOEVENTFD, "IOEVENTFD"},
                Cap{KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT"}, Cap{KVM_CAP_EXT_CPUID, "EXT_CPUID"}}) {
    char what[64];
    std::snprintf(what, sizeof what, "capability %s", c.name);
    check(::ioctl(kvm.get(), KVM_CHECK_EXTENSION, c.id) > 0, what);
  }

  // The CPU vendor KVM would show a guest (leaf 0: EBX, EDX, ECX).
  constexpr uint32_t kMaxEntries = 256;
  struct {
    CpuidHeader head;
    kvm_cpuid_entry2 entries[kMaxEntries];
  } cpuid{};
  static_assert(offsetof(decltype(cpuid), entries) == sizeof(CpuidHeader));
  cpuid.head.nent = kMaxEntries;
  if (::ioctl(kvm.get(), kGetSupportedCpuid, &cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID");
  for (uint32_t i = 0; i < cpuid.head.nent && i < kMaxEntries; i++) {
    const kvm_cpuid_entry2& e = cpuid.entries[i];
    if (e.function != 0) continue;
    char vendor[13] = {};
    std::memcpy(vendor, &e.ebx, 4);
    std::memcpy(vendor + 4, &e.edx, 4);
    std::memcpy(vendor + 8, &e.ecx, 4);
    std::printf("guest CPU vendor %s, %u supported CPUID entries\n", vendor, cpuid.head.nent);
  }

  UniqueFd vm(::ioctl(kvm.get(), KVM_CREATE_VM, 0));
  if (!vm) die("KVM_CREATE_VM");
  void* ram_addr = ::mmap(nullptr, kRamSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ram_addr == MAP_FAILED) die("mmap guest RAM");
  Mapping ram(ram_addr, kRamSize);
  std::memcpy(ram.data() + kCodeAt, kCode, sizeof kCode);
  std::memcpy(ram.data() + kTableAt, kTable.data(), sizeof kTable);
  kvm_userspace_memory_region region{};
  region.slot = 0;
  region.guest_phys_addr = 0;
  region.memory_size = kRamSize;
  region.userspace_addr = reinterpret_cast<uintptr_t>(ram.data());
  if (::ioctl(vm.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");

  UniqueFd vcpu(::ioctl(vm.get(), KVM_CREATE_VCPU, 0));
  if (!vcpu) die("KVM_CREATE_VCPU");
  int run_size = ::ioctl(kvm.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (run_size < static_cast<int>(sizeof(kvm_run))) die("KVM_GET_VCPU_MMAP_SIZE");
  void* run_addr = ::mmap(nullptr, static_cast<size_t>(run_size), PROT_READ | PROT_WRITE, MAP_SHARED, vcpu.get(), 0);
  if (run_addr == MAP_FAILED) die("mmap kvm_run");
  Mapping run_map(run_addr, static_cast<size_t>(run_size));
  auto* run = reinterpret_cast<kvm_run*>(run_map.data());

  // Reset state is real mode at F000:FFF0; start at 0000:kCodeAt instead.
  kvm_sregs sregs{};
  if (::ioctl(vcpu.get(), KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  sregs.ds.base = 0;
  sregs.ds.selector = 0;
  if (::ioctl(vcpu.get(), KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
  kvm_regs regs{};
  regs.rip = kCodeAt;
  regs.rflags = 0x2;  // bit 1 is always set
  if (::ioctl(vcpu.get(), KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");

  // The exits the program must cause, in order: OUT, MMIO write, HLT.
  int exits = 0;
  bool saw_out = false, saw_mmio = false, saw_hlt = false;
  while (!saw_hlt && exits < 16) {
    if (::ioctl(vcpu.get(), KVM_RUN, 0) < 0) {
      if (errno == EINTR) continue;
      die("KVM_RUN");
    }
    exits++;
    switch (run->exit_reason) {
      case KVM_EXIT_IO: {
        uint16_t value = 0;
        if (run->io.size == 2) std::memcpy(&value, reinterpret_cast<uint8_t*>(run) + run->io.data_offset, 2);
        std::printf("exit %d: port I/O, %s port 0x%x, size %u, value 0x%04x\n", exits,
                    run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in", run->io.port, run->io.size, value);
        check(!saw_out && run->io.direction == KVM_EXIT_IO_OUT && run->io.port == kSumPort && run->io.size == 2 &&
                  run->io.count == 1 && value == expected_sum(),
              "the OUT carries the sum of the table");
        saw_out = true;
        break;
      }
      case KVM_EXIT_MMIO: {
        uint16_t value = 0;
        if (run->mmio.len == 2) std::memcpy(&value, run->mmio.data, 2);
        std::printf("exit %d: MMIO %s at 0x%llx, %u bytes, value 0x%04x\n", exits,
                    run->mmio.is_write ? "write" : "read", static_cast<unsigned long long>(run->mmio.phys_addr),
                    run->mmio.len, value);
        check(saw_out && !saw_mmio && run->mmio.is_write && run->mmio.phys_addr == kMarkerAddr && run->mmio.len == 2 &&
                  value == kMarker,
              "the store outside RAM is an MMIO write of the marker");
        saw_mmio = true;
        break;
      }
      case KVM_EXIT_HLT:
        std::printf("exit %d: HLT\n", exits);
        check(saw_out && saw_mmio, "HLT comes after the OUT and the MMIO write");
        saw_hlt = true;
        break;
      default:
        std::printf("exit %d: unexpected exit reason %u (hardware entry failure reason 0x%llx)\n", exits,
                    run->exit_reason,
                    static_cast<unsigned long long>(run->fail_entry.hardware_entry_failure_reason));
        check(false, "only OUT, MMIO and HLT exits");
        return 1;
    }
  }
  check(saw_hlt, "the guest halted");

  if (::ioctl(vcpu.get(), KVM_GET_REGS, &regs) < 0) die("KVM_GET_REGS");
  std::printf("after HLT: rip 0x%llx, rax 0x%llx, rcx 0x%llx, rsi 0x%llx\n", static_cast<unsigned long long>(regs.rip),
              static_cast<unsigned long long>(regs.rax), static_cast<unsigned long long>(regs.rcx),
              static_cast<unsigned long long>(regs.rsi));
  check(regs.rip == kCodeAt + sizeof kCode && (regs.rax & 0xffff) == expected_sum() && (regs.rcx & 0xffff) == 0 &&
            (regs.rsi & 0xffff) == kTableAt + sizeof kTable,
        "registers after HLT are the program's");
  if (::ioctl(vcpu.get(), KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
  check(sregs.ds.selector == 0x2000 && sregs.ds.base == 0x20000, "DS was loaded by the guest");

  std::printf("%s: %d exits, %d failed checks\n", failures == 0 ? "PASS" : "FAIL", exits, failures);
  return failures == 0 ? 0 : 1;
}
