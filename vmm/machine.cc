// Architecture-neutral half of Machine: threads, the vCPU run loop, exits.
#include "vmm/machine.h"

#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>

#include <chrono>
#include <cstring>

#include "base/log.h"
#include "base/seccomp.h"
#include "base/strings.h"
#include "vmm/seccomp_policy.h"
#include "vmm/spore/working_set.h"

namespace spore::vmm {
namespace {

// A signal with an empty handler, sent to a vCPU thread to make KVM_RUN
// return EINTR. Paired with kvm_run.immediate_exit to close the race where
// the signal lands just before the thread enters KVM_RUN.
int kick_signal() { return SIGRTMIN + 1; }

void install_kick_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return
    sigaction(kick_signal(), &sa, nullptr);
  });
}

}  // namespace

const char* exit_kind_name(ExitKind kind) {
  switch (kind) {
    case ExitKind::kPoweroff: return "poweroff";
    case ExitKind::kReset: return "reset";
    case ExitKind::kCrash: return "crash";
    case ExitKind::kStopped: return "stopped";
    case ExitKind::kError: return "error";
  }
  return "unknown";
}

Result<std::unique_ptr<Machine>> Machine::create(const MachineConfig& config) {
  std::unique_ptr<Machine> m(new Machine());
  m->config_ = config;
  m->exit_event_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!m->exit_event_) return errno_error("eventfd");
  SPORE_TRY(m->build_vm(config, ""));
  SPORE_TRY(m->build_devices(config));
  SPORE_TRY(m->load_boot_payload(config));
  return m;
}

Result<std::unique_ptr<Machine>> Machine::restore(const MachineConfig& config, const RestoreSpec& spec) {
  SPORE_TRY(spores_supported());
  std::unique_ptr<Machine> m(new Machine());
  m->config_ = config;
  m->exit_event_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!m->exit_event_) return errno_error("eventfd");
  SPORE_TRY(m->build_vm(config, spec.ram_file));
  // The contract first: nothing of the spore is loaded into a host that
  // cannot run it faithfully.
  auto diffs = compare_platform(spec.platform, m->platform_);
  if (!diffs.empty()) {
    std::string msg = "this host cannot restore the spore (platform contract):";
    for (const auto& d : diffs) msg += "\n  " + d;
    return make_error(ErrorKind::kPlatform, msg);
  }
  SPORE_TRY(m->build_devices(config));
  SPORE_TRY(m->restore_arch_state(spec));

  const MachineState& st = spec.state;
  SPORE_TRY(m->generation_->resume_from(st.generation, spec.spore_id));
  if (st.virtio.size() != m->virtio_.size())
    return make_error(ErrorKind::kUsage, strfmt("the spore has %zu virtio devices, this machine %zu (was it captured "
                                                "with a rootfs?)", st.virtio.size(), m->virtio_.size()));
  for (const auto& v : st.virtio) {
    size_t i = 0;
    while (i < m->virtio_slots_.size() && m->virtio_slots_[i] != v.slot) i++;
    if (i == m->virtio_slots_.size() || m->virtio_[i]->device().type() != v.device_type)
      return make_error(ErrorKind::kCorrupt, strfmt("the spore's virtio slot %u does not match this machine", v.slot));
    auto s = m->virtio_[i]->restore(v.transport);
    if (!s.ok()) return std::move(s).error().wrap("restoring the spore's devices");
  }
  {
    // Host-side connections did not survive: tell the guest.
    auto* t = m->virtio_[m->vsock_slot_index()].get();
    std::lock_guard<std::mutex> g(t->lock());
    m->vsock_->transport_reset();
  }
  m->restored_ = true;
  m->working_set_ = spec.working_set;
  return m;
}

Machine::~Machine() {
  stop();
  shutdown_threads();
}

Status Machine::start() {
  if (io_thread_.joinable()) return make_error(ErrorKind::kInternal, "machine already started");
  install_kick_handler();
  // Each thread confines itself before it touches anything the guest
  // controls (vmm/seccomp_policy.h); the filters are compiled here, where
  // any call is still allowed.
  SPORE_ASSIGN_OR_RETURN(seccomp::Program device_filter, thread_program(ThreadRole::kDevice));
  std::vector<seccomp::Program> vcpu_filters;
  for (const auto& v : vcpus_) {
    SPORE_ASSIGN_OR_RETURN(seccomp::Program f, thread_program(ThreadRole::kVcpu, PolicyFds{v.fd(), vm_->fd()}));
    vcpu_filters.push_back(std::move(f));
  }
  if (!working_set_.empty()) {
    // Host page faults for what the guest will touch, done in bulk beside it.
    SPORE_ASSIGN_OR_RETURN(seccomp::Program filter, thread_program(ThreadRole::kPrefetch));
    const MemoryRegion& r = mem_.regions()[0];
    prefetch_thread_ = std::thread([r, ws = std::move(working_set_), filter = std::move(filter)] {
      // An optimisation only: unconfined, it would rather not run at all.
      if (seccomp::install(filter).ok()) prefetch_working_set(r.host, r.size, ws);
    });
  }
  EventLoop* loop = loop_.get();
  io_thread_ = std::thread([this, loop, filter = std::move(device_filter)] {
    if (auto s = seccomp::install(filter); !s.ok()) return finish(ExitKind::kError, "device thread: " + s.error().message);
    loop->run();
  });
  // Held so kick_all() never sees a half-built handle list.
  std::lock_guard<std::mutex> g(exit_mu_);
  vcpu_handles_.reserve(vcpus_.size());
  for (size_t i = 0; i < vcpus_.size(); i++) {
    vcpu_threads_.emplace_back([this, i, filter = std::move(vcpu_filters[i])] {
      if (auto s = seccomp::install(filter); !s.ok())
        return finish(ExitKind::kError, strfmt("vCPU %zu: %s", i, s.error().message.c_str()));
      vcpu_loop(i);
    });
    vcpu_handles_.push_back(vcpu_threads_.back().native_handle());
  }
  if (restored_) {
    // The guest learns it was resumed, and devices look at rings that may
    // hold buffers published just before the capture.
    generation_->notify_guest();
    for (auto& t : virtio_) t->kick_all();
  }
  return ok_status();
}

size_t Machine::vsock_connections() {
  std::lock_guard<std::mutex> g(virtio_[vsock_slot_index()]->lock());
  return vsock_->connection_count();
}

size_t Machine::vsock_slot_index() const {
  for (size_t i = 0; i < virtio_.size(); i++)
    if (&virtio_[i]->device() == vsock_) return i;
  return 0;
}

Status Machine::pause() {
  {
    std::lock_guard<std::mutex> g(pause_mu_);
    pause_requested_ = true;
  }
  kick_all();
  loop_->post([this] {
    std::unique_lock<std::mutex> g(pause_mu_);
    io_parked_ = true;
    pause_cv_.notify_all();
    pause_cv_.wait(g, [this] { return !pause_requested_ || stopping_; });
    io_parked_ = false;
  });
  std::unique_lock<std::mutex> g(pause_mu_);
  pause_cv_.wait(g, [this] { return (parked_vcpus_ == vcpus_.size() && io_parked_) || stopping_; });
  if (stopping_) {
    pause_requested_ = false;
    pause_cv_.notify_all();
    auto e = exit_status();
    return make_error(ErrorKind::kGuest, "the machine exited while pausing" + (e ? ": " + e->message : ""));
  }
  return ok_status();
}

void Machine::unpause() {
  std::lock_guard<std::mutex> g(pause_mu_);
  pause_requested_ = false;
  pause_cv_.notify_all();
}

void Machine::park_vcpu(size_t index) {
  // KVM_RUN with immediate_exit set returns at once, but first completes an
  // MMIO read the last exit left pending: the saved registers then never
  // describe an instruction halfway done.
  kvm_run* run = vcpus_[index].run_state();
  run->immediate_exit = 1;
  (void)vcpus_[index].run();
  run->immediate_exit = 0;
  std::unique_lock<std::mutex> g(pause_mu_);
  parked_vcpus_++;
  pause_cv_.notify_all();
  pause_cv_.wait(g, [this] { return !pause_requested_ || stopping_; });
  parked_vcpus_--;
}

Result<MachineState> Machine::save_state() {
  {
    std::lock_guard<std::mutex> g(pause_mu_);
    if (!pause_requested_ || parked_vcpus_ != vcpus_.size())
      return make_error(ErrorKind::kInternal, "save_state needs a paused machine");
  }
  SPORE_ASSIGN_OR_RETURN(MachineState st, save_arch_state());
  st.generation = generation_->state();
  for (size_t i = 0; i < virtio_.size(); i++) {
    VirtioSlotState v;
    v.slot = virtio_slots_[i];
    v.device_type = virtio_[i]->device().type();
    v.transport = virtio_[i]->snapshot();
    st.virtio.push_back(std::move(v));
  }
  return st;
}

void Machine::shutdown_threads() {
  if (prefetch_thread_.joinable()) prefetch_thread_.join();
  for (auto& t : vcpu_threads_)
    if (t.joinable()) t.join();
  vcpu_threads_.clear();
  if (loop_) loop_->stop();
  if (io_thread_.joinable()) io_thread_.join();
}

void Machine::kick_all() {
  std::lock_guard<std::mutex> g(exit_mu_);
  for (size_t i = 0; i < vcpu_handles_.size(); i++) {
    vcpus_[i].run_state()->immediate_exit = 1;
    pthread_kill(vcpu_handles_[i], kick_signal());
  }
}

void Machine::finish(ExitKind kind, std::string message) {
  {
    std::lock_guard<std::mutex> g(exit_mu_);
    if (exit_) return;  // the first reason wins
    exit_ = MachineExit{kind, std::move(message)};
  }
  stopping_ = true;
  {
    std::lock_guard<std::mutex> g(pause_mu_);
    pause_cv_.notify_all();  // release parked threads and pause() waiters
  }
  uint64_t one = 1;
  ssize_t n = ::write(exit_event_.get(), &one, sizeof one);
  (void)n;
  exit_cv_.notify_all();
  kick_all();
}

void Machine::stop() { finish(ExitKind::kStopped, "stopped by the host"); }

std::optional<MachineExit> Machine::exit_status() const {
  std::lock_guard<std::mutex> g(exit_mu_);
  return exit_;
}

MachineExit Machine::wait() {
  std::unique_lock<std::mutex> g(exit_mu_);
  exit_cv_.wait(g, [this] { return exit_.has_value(); });
  return *exit_;
}

std::optional<MachineExit> Machine::wait_for(int timeout_ms) {
  std::unique_lock<std::mutex> g(exit_mu_);
  exit_cv_.wait_for(g, std::chrono::milliseconds(timeout_ms), [this] { return exit_.has_value(); });
  return exit_;
}

void Machine::vcpu_loop(size_t index) {
  kvm::Vcpu& vcpu = vcpus_[index];
  kvm_run* run = vcpu.run_state();
  while (!stopping_) {
    if (pause_requested_) {
      park_vcpu(index);
      continue;
    }
    Status s = vcpu.run();
    if (!s.ok()) {
      int e = s.error().sys_errno;
      if (e == EINTR || e == EAGAIN) {
        run->immediate_exit = 0;
        continue;
      }
      finish(ExitKind::kError, strfmt("vCPU %zu: %s", index, s.error().message.c_str()));
      return;
    }
    switch (run->exit_reason) {
      case KVM_EXIT_MMIO: {
        auto& m = run->mmio;
        size_t len = std::min<size_t>(m.len, sizeof m.data);
        if (m.is_write) {
          if (!bus_.write(m.phys_addr, m.data, len))
            LOG_GUEST("guest wrote to unmapped address 0x%llx", static_cast<unsigned long long>(m.phys_addr));
        } else if (!bus_.read(m.phys_addr, m.data, len)) {
          std::memset(m.data, 0, len);
          LOG_GUEST("guest read from unmapped address 0x%llx", static_cast<unsigned long long>(m.phys_addr));
        }
        break;
      }
      case KVM_EXIT_SYSTEM_EVENT:
        switch (run->system_event.type) {
          case KVM_SYSTEM_EVENT_SHUTDOWN: finish(ExitKind::kPoweroff, "guest powered off"); break;
          case KVM_SYSTEM_EVENT_RESET: finish(ExitKind::kReset, "guest rebooted (or its kernel panicked)"); break;
          case KVM_SYSTEM_EVENT_CRASH: finish(ExitKind::kCrash, "guest reported a crash"); break;
          default:
            finish(ExitKind::kError, strfmt("guest raised unknown system event %u", run->system_event.type));
            break;
        }
        return;
      case KVM_EXIT_INTR:
        break;
      case KVM_EXIT_FAIL_ENTRY:
        finish(ExitKind::kError,
               strfmt("vCPU %zu: KVM could not enter the guest (reason 0x%llx)", index,
                      static_cast<unsigned long long>(run->fail_entry.hardware_entry_failure_reason)));
        return;
      case KVM_EXIT_INTERNAL_ERROR:
        finish(ExitKind::kError, strfmt("vCPU %zu: KVM internal error %u", index, run->internal.suberror));
        return;
      default:
        if (handle_arch_exit(index, run)) break;
        finish(ExitKind::kError, strfmt("vCPU %zu: unexpected KVM exit %u", index, run->exit_reason));
        return;
    }
  }
}

}  // namespace spore::vmm
