#include "vmm/devices/virtio/mmio.h"

#include <sys/eventfd.h>

#include <cstring>

#include "base/log.h"
#include "base/strings.h"

namespace spore::vmm::virtio {
namespace {

constexpr uint32_t kMagic = 0x74726976;   // "virt"
constexpr uint32_t kVendor = 0x524f5053;  // "SPOR"

enum Reg : uint64_t {
  kMagicValue = 0x000,
  kVersion = 0x004,
  kDeviceId = 0x008,
  kVendorId = 0x00c,
  kDeviceFeatures = 0x010,
  kDeviceFeaturesSel = 0x014,
  kDriverFeatures = 0x020,
  kDriverFeaturesSel = 0x024,
  kQueueSel = 0x030,
  kQueueNumMax = 0x034,
  kQueueNum = 0x038,
  kQueueReady = 0x044,
  kQueueNotify = 0x050,
  kInterruptStatus = 0x060,
  kInterruptAck = 0x064,
  kStatus = 0x070,
  kQueueDescLow = 0x080,
  kQueueDescHigh = 0x084,
  kQueueDriverLow = 0x090,
  kQueueDriverHigh = 0x094,
  kQueueDeviceLow = 0x0a0,
  kQueueDeviceHigh = 0x0a4,
  kShmSel = 0x0ac,
  kShmLenLow = 0x0b0,
  kShmLenHigh = 0x0b4,
  kShmBaseLow = 0x0b8,
  kShmBaseHigh = 0x0bc,
  kConfigGeneration = 0x0fc,
  kConfig = 0x100,
};

void set_low(uint64_t& v, uint32_t lo) { v = (v & ~0xffffffffull) | lo; }
void set_high(uint64_t& v, uint32_t hi) { v = (v & 0xffffffffull) | (static_cast<uint64_t>(hi) << 32); }

}  // namespace

void read_config_bytes(const void* config, size_t config_size, uint64_t offset, uint8_t* data, size_t len) {
  std::memset(data, 0, len);
  if (offset >= config_size) return;
  size_t n = std::min<uint64_t>(len, config_size - offset);
  std::memcpy(data, static_cast<const uint8_t*>(config) + offset, n);
}

MmioTransport::MmioTransport(std::unique_ptr<Device> device, const GuestMemory& mem,
                             std::unique_ptr<IrqLine> irq)
    : device_(std::move(device)), mem_(mem), irq_(std::move(irq)) {}

Result<std::unique_ptr<MmioTransport>> MmioTransport::create(std::unique_ptr<Device> device,
                                                             const GuestMemory& mem, EventLoop& loop,
                                                             std::unique_ptr<IrqLine> irq) {
  std::unique_ptr<MmioTransport> t(new MmioTransport(std::move(device), mem, std::move(irq)));
  t->loop_ = &loop;
  t->device_->bind(*t);
  size_t n = t->device_->queue_count();
  for (size_t q = 0; q < n; q++) {
    t->queues_.emplace_back(t->device_->queue_max_size());
    UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!fd) return errno_error("eventfd");
    MmioTransport* self = t.get();
    int raw = fd.get();
    SPORE_ASSIGN_OR_RETURN(auto id, loop.add(raw, EPOLLIN, [self, raw, q](uint32_t) {
                             uint64_t v;
                             while (::read(raw, &v, sizeof v) > 0) {
                             }
                             self->on_notify(q);
                           }));
    t->notify_fds_.push_back(std::move(fd));
    t->notify_handlers_.push_back(id);
  }
  return t;
}

MmioTransport::~MmioTransport() {
  if (loop_)
    for (auto id : notify_handlers_) loop_->remove(id);
}

void MmioTransport::on_notify(size_t q) {
  std::lock_guard<std::mutex> g(mu_);
  if (!live()) return;
  device_->notify(q);
}

bool MmioTransport::live() const {
  return activated_ && (st_.status & kStatusDriverOk) && !(st_.status & kStatusNeedsReset);
}

MmioState MmioTransport::state() const { return st_; }

TransportSnapshot MmioTransport::snapshot() {
  std::lock_guard<std::mutex> g(mu_);
  TransportSnapshot snap;
  snap.mmio = st_;
  snap.activated = activated_;
  for (const auto& q : queues_) snap.queues.push_back(q.state());
  snap.device_state = device_->save_device_state();
  return snap;
}

Status MmioTransport::restore(const TransportSnapshot& snap) {
  std::lock_guard<std::mutex> g(mu_);
  if (snap.queues.size() != queues_.size())
    return make_error(ErrorKind::kCorrupt, strfmt("virtio-%s: snapshot has %zu queues, the device %zu", device_->name(),
                                                  snap.queues.size(), queues_.size()));
  for (size_t i = 0; i < queues_.size(); i++) {
    if (snap.queues[i].max_size != queues_[i].state().max_size)
      return make_error(ErrorKind::kCorrupt, strfmt("virtio-%s: queue %zu size limit differs", device_->name(), i));
    queues_[i].state() = snap.queues[i];
    if (snap.queues[i].ready) {
      if (auto v = queues_[i].validate(mem_); !v.ok()) return std::move(v).error().wrap("restoring " + std::string(device_->name()));
    }
  }
  // The driver can only have accepted what the device offers (FEATURES_OK
  // refuses anything else), and a live device went through FEATURES_OK and
  // DRIVER_OK: a spore that says otherwise was not written by us.
  const uint64_t unoffered = snap.mmio.driver_features & ~offered_features();
  if (unoffered)
    return make_error(ErrorKind::kCorrupt, strfmt("virtio-%s: the spore's driver features include 0x%llx, which the "
                                                  "device does not offer", device_->name(),
                                                  static_cast<unsigned long long>(unoffered)));
  const uint32_t live_bits = kStatusFeaturesOk | kStatusDriverOk;
  if (snap.activated && ((snap.mmio.status & live_bits) != live_bits || !(snap.mmio.driver_features & kFeatureVersion1)))
    return make_error(ErrorKind::kCorrupt,
                      strfmt("virtio-%s: the spore's device is live without negotiated features", device_->name()));
  st_ = snap.mmio;
  SPORE_TRY(device_->load_device_state(snap.device_state));
  if (snap.activated) {
    SPORE_TRY(device_->activate(*this));
    activated_ = true;
  }
  return ok_status();
}

void MmioTransport::save(Encoder& e, const TransportSnapshot& s) {
  e.u32(s.mmio.status);
  e.u32(s.mmio.device_features_sel);
  e.u32(s.mmio.driver_features_sel);
  e.u64(s.mmio.driver_features);
  e.u32(s.mmio.queue_sel);
  e.u32(s.mmio.interrupt_status);
  e.u32(s.mmio.config_generation);
  e.u8(s.activated ? 1 : 0);
  e.u32(static_cast<uint32_t>(s.queues.size()));
  for (const auto& q : s.queues) save_queue_state(e, q);
  e.str(s.device_state);
}

Result<TransportSnapshot> MmioTransport::load(Decoder& d) {
  TransportSnapshot s;
  s.mmio.status = d.u32();
  s.mmio.device_features_sel = d.u32();
  s.mmio.driver_features_sel = d.u32();
  s.mmio.driver_features = d.u64();
  s.mmio.queue_sel = d.u32();
  s.mmio.interrupt_status = d.u32();
  s.mmio.config_generation = d.u32();
  uint8_t activated = d.u8();
  uint32_t n = d.u32();
  if (!d.ok() || activated > 1 || n > 16) return make_error(ErrorKind::kCorrupt, "virtio transport state is malformed");
  s.activated = activated;
  for (uint32_t i = 0; i < n; i++) {
    SPORE_ASSIGN_OR_RETURN(QueueState q, load_queue_state(d));
    s.queues.push_back(q);
  }
  s.device_state = d.str();
  if (!d.ok() || s.device_state.size() > 4096) return make_error(ErrorKind::kCorrupt, "virtio device state is malformed");
  return s;
}

void MmioTransport::kick_all() {
  for (auto& fd : notify_fds_) {
    uint64_t one = 1;
    ssize_t n = ::write(fd.get(), &one, sizeof one);
    (void)n;
  }
}

void MmioTransport::signal_used(size_t q) {
  if (q < queues_.size() && !queues_[q].needs_interrupt(mem_)) return;
  st_.interrupt_status |= kInterruptVring;
  irq_->trigger();
}

void MmioTransport::fail(const Error& why) {
  LOG_GUEST("virtio-%s: %s; device stopped until the driver resets it", device_->name(), why.message.c_str());
  st_.status |= kStatusNeedsReset;
  st_.interrupt_status |= kInterruptConfig;
  irq_->trigger();
}

void MmioTransport::reset_locked() {
  if (activated_) device_->reset();
  activated_ = false;
  for (auto& q : queues_) q.reset();
  uint32_t gen = st_.config_generation;
  st_ = MmioState{};
  st_.config_generation = gen;
}

void MmioTransport::mmio_read(uint64_t offset, uint8_t* data, size_t len) {
  std::lock_guard<std::mutex> g(mu_);
  if (offset >= kConfig) {
    device_->read_config(offset - kConfig, data, len);
    return;
  }
  if (len != 4 || offset % 4) {
    LOG_GUEST("virtio-%s: %zu-byte read at register 0x%llx ignored", device_->name(), len,
              static_cast<unsigned long long>(offset));
    std::memset(data, 0, len);
    return;
  }
  mmio_fill(data, len, read_reg(offset));
}

void MmioTransport::mmio_write(uint64_t offset, const uint8_t* data, size_t len) {
  std::lock_guard<std::mutex> g(mu_);
  if (offset >= kConfig) {
    device_->write_config(offset - kConfig, data, len);
    return;
  }
  if (len != 4 || offset % 4) {
    LOG_GUEST("virtio-%s: %zu-byte write at register 0x%llx ignored", device_->name(), len,
              static_cast<unsigned long long>(offset));
    return;
  }
  write_reg(offset, static_cast<uint32_t>(mmio_value(data, len)));
}

uint32_t MmioTransport::read_reg(uint64_t offset) {
  Queue* q = st_.queue_sel < queues_.size() ? &queues_[st_.queue_sel] : nullptr;
  switch (offset) {
    case kMagicValue: return kMagic;
    case kVersion: return 2;
    case kDeviceId: return device_->type();
    case kVendorId: return kVendor;
    case kDeviceFeatures:
      if (st_.device_features_sel > 1) return 0;
      return static_cast<uint32_t>(offered_features() >> (32 * st_.device_features_sel));
    case kQueueNumMax: return q ? q->state().max_size : 0;
    case kQueueReady: return q && q->state().ready ? 1 : 0;
    case kInterruptStatus: return st_.interrupt_status;
    case kStatus: return st_.status;
    case kShmLenLow:
    case kShmLenHigh: return 0xffffffffu;  // no shared memory regions
    case kConfigGeneration: return st_.config_generation;
    default: return 0;
  }
}

void MmioTransport::write_reg(uint64_t offset, uint32_t v) {
  Queue* q = st_.queue_sel < queues_.size() ? &queues_[st_.queue_sel] : nullptr;
  // Queue layout may only change while the queue is not ready (4.2.2.2).
  QueueState* qs = (q && !q->state().ready) ? &q->state() : nullptr;
  switch (offset) {
    case kDeviceFeaturesSel: st_.device_features_sel = v; break;
    case kDriverFeaturesSel: st_.driver_features_sel = v; break;
    case kDriverFeatures:
      if (st_.status & kStatusFeaturesOk) break;  // frozen after FEATURES_OK
      if (st_.driver_features_sel == 0) set_low(st_.driver_features, v);
      else if (st_.driver_features_sel == 1) set_high(st_.driver_features, v);
      break;
    case kQueueSel: st_.queue_sel = v; break;
    case kQueueNum:
      if (qs) qs->size = static_cast<uint16_t>(v > 0xffff ? 0 : v);
      break;
    case kQueueReady:
      if (!q) break;
      if (v == 1 && !q->state().ready) {
        q->state().ready = true;
        if (activated_) {
          if (auto s = q->validate(mem_); !s.ok()) {
            q->state().ready = false;  // a layout that failed its check is never served
            fail(s.error());
          }
        }
      } else if (v == 0) {
        q->state().ready = false;
      }
      break;
    case kQueueNotify:
      // Reached only when the VM could not register an ioeventfd.
      if (v < notify_fds_.size()) {
        uint64_t one = 1;
        ssize_t n = ::write(notify_fds_[v].get(), &one, sizeof one);
        (void)n;
      }
      break;
    case kInterruptAck: st_.interrupt_status &= ~v; break;
    case kStatus: write_status(v); break;
    case kQueueDescLow: if (qs) set_low(qs->desc_addr, v); break;
    case kQueueDescHigh: if (qs) set_high(qs->desc_addr, v); break;
    case kQueueDriverLow: if (qs) set_low(qs->avail_addr, v); break;
    case kQueueDriverHigh: if (qs) set_high(qs->avail_addr, v); break;
    case kQueueDeviceLow: if (qs) set_low(qs->used_addr, v); break;
    case kQueueDeviceHigh: if (qs) set_high(qs->used_addr, v); break;
    case kShmSel: break;
    default:
      LOG_GUEST("virtio-%s: write to read-only or unknown register 0x%llx", device_->name(),
                static_cast<unsigned long long>(offset));
      break;
  }
}

void MmioTransport::write_status(uint32_t v) {
  if (v == 0) {
    reset_locked();
    return;
  }
  // Bits only ever get set by the driver (except through reset).
  uint32_t added = v & ~st_.status;
  if (added & kStatusFeaturesOk) {
    uint64_t offered = offered_features();
    bool ok = (st_.driver_features & ~offered) == 0 && (st_.driver_features & kFeatureVersion1);
    if (!ok) {
      LOG_GUEST("virtio-%s: driver accepted unsupported features 0x%llx", device_->name(),
                static_cast<unsigned long long>(st_.driver_features & ~offered));
      v &= ~kStatusFeaturesOk;  // the driver sees FEATURES_OK did not stick
    }
  }
  st_.status |= v & ~kStatusNeedsReset;  // NEEDS_RESET is the device's to set
  if ((added & kStatusDriverOk) && !activated_) {
    if (!(st_.status & kStatusFeaturesOk)) {
      fail(make_error(ErrorKind::kGuest, "DRIVER_OK without FEATURES_OK"));
      return;
    }
    for (auto& q : queues_) {
      if (!q.state().ready) continue;
      if (auto s = q.validate(mem_); !s.ok()) {
        q.state().ready = false;
        fail(s.error());
        return;
      }
    }
    if (auto s = device_->activate(*this); !s.ok()) {
      fail(s.error());
      return;
    }
    activated_ = true;
  }
}

}  // namespace spore::vmm::virtio
