#include "vmm/devices/virtio/vsock.h"

#include <sys/socket.h>
#include <sys/timerfd.h>

#include <cstring>
#include <future>

#include "base/codec.h"
#include "base/log.h"
#include "base/strings.h"

namespace spore::vmm::virtio {
namespace {

constexpr size_t kRxQueue = 0;
constexpr size_t kTxQueue = 1;
constexpr size_t kEventQueue = 2;
// Host bytes buffered per connection ahead of the guest's rings.
constexpr size_t kFromHostCap = 256 << 10;
// Guest bytes already written to the host socket are cut from the front of
// a connection's buffer once this many have accumulated, so a stream whose
// host reader never quite catches up does not grow it: what stays is at most
// this plus the guest's credit (kBufAlloc).
constexpr size_t kToHostCompactAt = 64 << 10;

Result<std::pair<UniqueFd, UniqueFd>> make_socketpair() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return errno_error("socketpair");
  UniqueFd ours(sv[0]), theirs(sv[1]);
  SPORE_TRY(set_nonblocking(ours.get()));
  return std::make_pair(std::move(ours), std::move(theirs));
}

}  // namespace

Vsock::Vsock(uint64_t guest_cid, EventLoop& loop) : guest_cid_(guest_cid), loop_(loop) {}

Vsock::~Vsock() {
  for (auto& [key, c] : conns_)
    if (c.handler) loop_.remove(c.handler);
  if (reset_timer_handler_) loop_.remove(reset_timer_handler_);
}

std::mutex& Vsock::mu() { return transport_->lock(); }

void Vsock::read_config(uint64_t offset, uint8_t* data, size_t len) const {
  uint64_t cid = guest_cid_;
  read_config_bytes(&cid, sizeof cid, offset, data, len);
}

// ---- host API ----

void Vsock::connect(uint32_t guest_port, ConnectCallback cb) {
  loop_.post([this, guest_port, cb = std::move(cb)]() mutable {
    std::lock_guard<std::mutex> g(mu());
    start_connect(guest_port, std::move(cb));
  });
}

Result<UniqueFd> Vsock::connect_wait(uint32_t guest_port, int timeout_ms) {
  auto promise = std::make_shared<std::promise<Result<UniqueFd>>>();
  auto future = promise->get_future();
  connect(guest_port, [promise](Result<UniqueFd> r) { promise->set_value(std::move(r)); });
  if (future.wait_for(std::chrono::milliseconds(timeout_ms)) != std::future_status::ready)
    return make_error(ErrorKind::kTimeout, strfmt("vsock connect to guest port %u timed out", guest_port));
  return future.get();
}

void Vsock::listen(uint32_t host_port, AcceptCallback cb, bool once) {
  // Synchronous, so a listener registered before the vCPUs start can never
  // miss the guest's first connection.
  std::lock_guard<std::mutex> g(mu());
  listeners_[host_port] = Listener{std::move(cb), once};
}

void Vsock::unlisten(uint32_t host_port) {
  // Accept callbacks run with this lock held: once we have it, none is
  // running, and none can start after the erase.
  AcceptCallback gone;
  {
    std::lock_guard<std::mutex> g(mu());
    auto it = listeners_.find(host_port);
    if (it == listeners_.end()) return;
    gone = std::move(it->second.cb);
    listeners_.erase(it);
  }
  // gone's captures are destroyed here, outside the lock.
}

void Vsock::start_connect(uint32_t guest_port, ConnectCallback cb) {
  if (!transport_->live() || awaiting_reset_ack_) {
    pending_connects_.emplace_back(guest_port, std::move(cb));
    return;
  }
  if (conns_.size() >= kMaxConnections) {
    cb(make_error(ErrorKind::kUnavailable, "too many vsock connections"));
    return;
  }
  if (control_full()) {
    cb(make_error(ErrorKind::kUnavailable, "the guest is not taking vsock packets (no receive buffers)"));
    return;
  }
  uint32_t port = 0;
  for (int tries = 0; tries < 16384 && !port; tries++) {
    uint32_t p = next_ephemeral_++;
    if (next_ephemeral_ == 0 || next_ephemeral_ < 49152) next_ephemeral_ = 49152;
    if (!conns_.count({p, guest_port})) port = p;
  }
  auto pair = make_socketpair();
  if (!pair.ok()) {
    cb(std::move(pair).error());
    return;
  }
  Key key{port, guest_port};
  Conn& c = conns_[key];
  c.host_port = port;
  c.guest_port = guest_port;
  c.fd = std::move(pair->first);
  c.peer_end = std::move(pair->second);
  c.on_connect = std::move(cb);
  auto id = loop_.add(c.fd.get(), 0, [this, key](uint32_t ev) { on_fd_event(key, ev); });
  if (!id.ok()) {
    ConnectCallback done = std::move(c.on_connect);
    conns_.erase(key);
    done(std::move(id).error());
    return;
  }
  c.handler = *id;
  queue_control(header_for(c, kOpRequest));
  process_rx();
}

// ---- bookkeeping ----

VsockHeader Vsock::header_for(const Conn& c, uint16_t op) const {
  VsockHeader h{};
  h.src_cid = kVsockHostCid;
  h.dst_cid = guest_cid_;
  h.src_port = c.host_port;
  h.dst_port = c.guest_port;
  h.type = kVsockTypeStream;
  h.op = op;
  h.buf_alloc = kBufAlloc;
  h.fwd_cnt = c.fwd_cnt;
  return h;
}

uint32_t Vsock::peer_credit(const Conn& c) const {
  uint32_t in_flight = c.tx_cnt - c.peer_fwd_cnt;  // modular, as the spec defines it
  return in_flight >= c.peer_buf_alloc ? 0 : c.peer_buf_alloc - in_flight;
}

bool Vsock::control_full() const { return control_.size() >= kMaxPendingControl; }

void Vsock::queue_control(const VsockHeader& h) {
  if (control_full()) {
    LOG_GUEST("virtio-vsock: the guest takes no packets; not answering port %u", h.dst_port);
    return;
  }
  control_.push_back(h);
}

// A connection that is gone has nothing left to say: a REQUEST or RESPONSE
// still waiting for a guest buffer would only earn an RST back.
void Vsock::forget_control(Key key) {
  std::erase_if(control_, [&](const VsockHeader& h) { return h.src_port == key.first && h.dst_port == key.second; });
}

size_t Vsock::buffered_bytes() const {
  size_t n = control_.size() * sizeof(VsockHeader);
  for (const auto& [key, c] : conns_) n += c.to_host.size() + c.from_host.size();
  return n;
}

void Vsock::queue_rst(uint32_t host_port, uint32_t guest_port) {
  VsockHeader h{};
  h.src_cid = kVsockHostCid;
  h.dst_cid = guest_cid_;
  h.src_port = host_port;
  h.dst_port = guest_port;
  h.type = kVsockTypeStream;
  h.op = kOpRst;
  queue_control(h);
}

Vsock::Conn* Vsock::find(uint32_t host_port, uint32_t guest_port) {
  auto it = conns_.find({host_port, guest_port});
  return it == conns_.end() ? nullptr : &it->second;
}

void Vsock::drop(Key key, bool send_rst) {
  auto it = conns_.find(key);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  if (c.handler) loop_.remove(c.handler);
  ConnectCallback pending = std::move(c.on_connect);
  conns_.erase(it);
  forget_control(key);
  if (send_rst) queue_rst(key.first, key.second);
  if (pending)
    pending(make_error(ErrorKind::kUnavailable,
                       strfmt("guest refused the connection to vsock port %u", key.second)));
}

void Vsock::drop_all() {
  while (!conns_.empty()) drop(conns_.begin()->first, false);
  control_.clear();
}

void Vsock::update_interest(Conn& c) {
  uint32_t want = 0;
  if (c.established && !c.host_eof && !c.guest_done_receiving) {
    uint32_t credit = peer_credit(c);
    size_t limit = std::min<size_t>(credit, kFromHostCap);
    if (c.from_host.size() < limit) want |= EPOLLIN;
  }
  if (c.to_host_off < c.to_host.size()) want |= EPOLLOUT;
  if (want != c.interest && c.handler) {  // handler 0: no longer watched
    if (loop_.modify(c.handler, want).ok()) c.interest = want;
  }
}

void Vsock::on_fd_event(Key key, uint32_t events) {
  std::lock_guard<std::mutex> g(mu());
  Conn* c = find(key.first, key.second);
  if (!c) return;
  if (events & EPOLLOUT) flush_to_host(*c);
  c = find(key.first, key.second);
  if (c && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) fill_from_host(*c);
  c = find(key.first, key.second);
  if (c && (events & (EPOLLHUP | EPOLLERR))) {
    // Both directions are closed for good and epoll would report it forever:
    // stop watching, deliver what was read, then reset the guest's side.
    loop_.remove(c->handler);
    c->handler = 0;
    c->host_eof = true;
    c->host_gone = true;
    c->to_host.clear();
    c->to_host_off = 0;
  }
  if (c) update_interest(*c);
  maybe_finish(key);
  process_rx();
}

void Vsock::flush_to_host(Conn& c) {
  Key key{c.host_port, c.guest_port};
  while (c.to_host_off < c.to_host.size()) {
    ssize_t n = ::send(c.fd.get(), c.to_host.data() + c.to_host_off, c.to_host.size() - c.to_host_off,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      drop(key, true);  // the host end went away: tell the guest
      return;
    }
    c.to_host_off += static_cast<size_t>(n);
    c.fwd_cnt += static_cast<uint32_t>(n);
  }
  if (c.to_host_off == c.to_host.size()) {
    c.to_host.clear();
    c.to_host_off = 0;
    if (c.guest_done_sending) ::shutdown(c.fd.get(), SHUT_WR);
  } else if (c.to_host_off >= kToHostCompactAt) {
    c.to_host.erase(0, c.to_host_off);
    c.to_host_off = 0;
  }
  // Tell the guest about freed room before it stalls for lack of credit.
  if (c.fwd_cnt - c.fwd_cnt_sent >= kBufAlloc / 4) c.credit_update_due = true;
}

void Vsock::fill_from_host(Conn& c) {
  if (!c.established || c.host_eof || c.guest_done_receiving) return;
  Key key{c.host_port, c.guest_port};
  char buf[64 << 10];
  for (;;) {
    size_t limit = std::min<size_t>(peer_credit(c), kFromHostCap);
    if (c.from_host.size() >= limit) return;
    size_t want = std::min(sizeof buf, limit - c.from_host.size());
    ssize_t n = ::recv(c.fd.get(), buf, want, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      drop(key, true);
      return;
    }
    if (n == 0) {
      c.host_eof = true;
      return;
    }
    c.from_host.append(buf, static_cast<size_t>(n));
  }
}

void Vsock::maybe_finish(Key key) {
  Conn* c = find(key.first, key.second);
  if (!c || !c->established) return;
  bool drained = c->to_host_off == c->to_host.size();
  bool guest_closed = c->guest_done_sending && c->guest_done_receiving;
  bool both_closed = c->guest_done_sending && c->host_eof && c->shutdown_sent;
  bool host_gone = c->host_gone && c->shutdown_sent;
  if ((drained && (guest_closed || both_closed)) || host_gone) drop(key, true);
}

// ---- device ----

Status Vsock::activate(Transport&) {
  auto pending = std::move(pending_connects_);
  pending_connects_.clear();
  // Runs with the transport lock held but before live() turns true, so
  // defer the connects to the loop.
  for (auto& [port, cb] : pending) connect(port, std::move(cb));
  return ok_status();
}

void Vsock::reset() {
  drop_all();
  last_served_ = {0, 0};
}

void Vsock::notify(size_t q) {
  if (q == kEventQueue) {
    if (reset_event_pending_) {
      deliver_reset_event();
    } else if (awaiting_reset_ack_ &&
               transport_->queue(kEventQueue).avail_idx(transport_->memory()) != reset_avail_idx_) {
      end_reset_wait();  // the guest refilled the buffer: it has handled the event
    }
    return;
  }
  if (q == kTxQueue) process_tx();
  process_rx();
}

std::string Vsock::save_device_state() const {
  Encoder e;
  e.u32(static_cast<uint32_t>(conns_.size()));
  e.u32(next_ephemeral_);
  return e.take();
}

Status Vsock::load_device_state(std::string_view data) {
  Decoder d(data);
  connections_at_capture_ = d.u32();
  // The guest may still hold sockets (reset, not yet closed) named by host
  // ports used before the capture; a new connection reusing such a port
  // would be refused. Continue numbering where the parent stopped.
  uint32_t next = d.u32();
  if (!d.done()) return make_error(ErrorKind::kCorrupt, "vsock device state is malformed");
  next_ephemeral_ = next >= 49152 ? next : 49152;
  return ok_status();
}

void Vsock::transport_reset() {
  drop_all();
  if (connections_at_capture_ == 0) return;
  reset_event_pending_ = true;
  awaiting_reset_ack_ = true;
  int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (fd >= 0) {
    reset_timer_.reset(fd);
    itimerspec its{};
    its.it_value.tv_sec = 1;
    ::timerfd_settime(fd, 0, &its, nullptr);
    auto id = loop_.add(fd, EPOLLIN, [this](uint32_t) {
      std::lock_guard<std::mutex> g(mu());
      end_reset_wait();
    });
    if (id.ok()) reset_timer_handler_ = *id;
  }
  deliver_reset_event();
}

void Vsock::deliver_reset_event() {
  if (!transport_->live()) return;
  const GuestMemory& mem = transport_->memory();
  Queue& queue = transport_->queue(kEventQueue);
  auto next = queue.pop(mem);
  if (!next.ok()) {
    transport_->fail(next.error());
    return;
  }
  if (!*next) return;  // no buffer yet: delivered when the guest posts one
  uint32_t event_id = 0;  // VIRTIO_VSOCK_EVENT_TRANSPORT_RESET
  ChainWriter w(mem, **next);
  w.write(&event_id, sizeof event_id);
  if (auto st = queue.push_used(mem, (*next)->head, static_cast<uint32_t>(w.written())); !st.ok()) {
    transport_->fail(st.error());
    return;
  }
  reset_event_pending_ = false;
  reset_avail_idx_ = queue.avail_idx(mem);
  transport_->signal_used(kEventQueue);
}

void Vsock::end_reset_wait() {
  if (reset_timer_handler_) {
    loop_.remove(reset_timer_handler_);
    reset_timer_handler_ = 0;
  }
  reset_timer_.reset();
  if (!awaiting_reset_ack_) return;
  awaiting_reset_ack_ = false;
  auto pending = std::move(pending_connects_);
  pending_connects_.clear();
  for (auto& [port, cb] : pending) start_connect(port, std::move(cb));
}

void Vsock::process_tx() {
  const GuestMemory& mem = transport_->memory();
  serve_queue(*transport_, kTxQueue, [&](const DescChain& chain) -> Result<uint32_t> {
    VsockHeader h;
    ChainReader r(mem, chain);
    if (r.read(&h, sizeof h)) handle_packet(h, chain);
    else LOG_GUEST("virtio-vsock: tx packet shorter than its header");
    return 0u;
  });
}

void Vsock::handle_packet(const VsockHeader& h, const DescChain& chain) {
  if (h.src_cid != guest_cid_ || h.dst_cid != kVsockHostCid) {
    LOG_GUEST("virtio-vsock: dropped packet from cid %llu to cid %llu",
              static_cast<unsigned long long>(h.src_cid), static_cast<unsigned long long>(h.dst_cid));
    return;
  }
  const uint32_t host_port = h.dst_port;
  const uint32_t guest_port = h.src_port;
  const Key key{host_port, guest_port};
  if (h.type != kVsockTypeStream) {
    if (h.op != kOpRst) queue_rst(host_port, guest_port);
    return;
  }
  Conn* c = find(host_port, guest_port);
  if (c) {
    c->peer_buf_alloc = h.buf_alloc;
    c->peer_fwd_cnt = h.fwd_cnt;
  }
  switch (h.op) {
    case kOpRequest: {
      auto l = listeners_.find(host_port);
      if (c || l == listeners_.end() || conns_.size() >= kMaxConnections) {
        if (c) drop(key, false);
        queue_rst(host_port, guest_port);
        return;
      }
      if (control_full()) {
        LOG_GUEST("virtio-vsock: the guest takes no packets; ignoring its connection to port %u", host_port);
        return;
      }
      auto pair = make_socketpair();
      if (!pair.ok()) {
        LOG_WARN("vsock: %s", pair.error().message.c_str());
        queue_rst(host_port, guest_port);
        return;
      }
      Conn& n = conns_[key];
      n.host_port = host_port;
      n.guest_port = guest_port;
      n.fd = std::move(pair->first);
      n.established = true;
      n.peer_buf_alloc = h.buf_alloc;
      n.peer_fwd_cnt = h.fwd_cnt;
      auto id = loop_.add(n.fd.get(), 0, [this, key](uint32_t ev) { on_fd_event(key, ev); });
      if (!id.ok()) {
        conns_.erase(key);
        queue_rst(host_port, guest_port);
        return;
      }
      n.handler = *id;
      queue_control(header_for(n, kOpResponse));
      update_interest(n);
      if (l->second.once) {
        AcceptCallback cb = std::move(l->second.cb);
        listeners_.erase(l);
        cb(std::move(pair->second), guest_port);
      } else {
        l->second.cb(std::move(pair->second), guest_port);
      }
      return;
    }
    case kOpResponse: {
      if (!c || c->established) {
        queue_rst(host_port, guest_port);
        return;
      }
      c->established = true;
      ConnectCallback cb = std::move(c->on_connect);
      c->on_connect = nullptr;
      update_interest(*c);
      if (cb) cb(std::move(c->peer_end));
      return;
    }
    case kOpRst:
      drop(key, false);
      return;
    case kOpShutdown: {
      if (!c) return;
      if (h.flags & kShutdownRcv) {
        c->guest_done_receiving = true;
        c->from_host.clear();
      }
      if (h.flags & kShutdownSend) {
        c->guest_done_sending = true;
        flush_to_host(*c);
      }
      if ((c = find(host_port, guest_port))) update_interest(*c);
      maybe_finish(key);
      return;
    }
    case kOpRw: {
      if (!c || !c->established) {
        queue_rst(host_port, guest_port);
        return;
      }
      uint64_t avail = chain.readable_len - kVsockHeaderSize;
      // The guest may have at most kBufAlloc bytes beyond the fwd_cnt we last
      // told it about (modular arithmetic, as the spec defines credit).
      uint32_t in_flight = c->rx_cnt + h.len - c->fwd_cnt_sent;
      if (h.len > avail || h.len > kMaxPacketData || in_flight > kBufAlloc || c->guest_done_sending) {
        LOG_GUEST("virtio-vsock: bad or over-credit data packet (len %u) on port %u; resetting it", h.len,
                  guest_port);
        drop(key, true);
        return;
      }
      c->rx_cnt += h.len;
      ChainReader r(transport_->memory(), chain);
      r.skip(kVsockHeaderSize);
      size_t old = c->to_host.size();
      c->to_host.resize(old + h.len);
      if (!r.read(c->to_host.data() + old, h.len)) {
        drop(key, true);
        return;
      }
      flush_to_host(*c);
      if ((c = find(host_port, guest_port))) update_interest(*c);
      return;
    }
    case kOpCreditUpdate:
      if (c) update_interest(*c);
      return;
    case kOpCreditRequest:
      if (c) c->credit_update_due = true;
      return;
    default:
      queue_rst(host_port, guest_port);
      if (c) drop(key, false);
      return;
  }
}

bool Vsock::has_rx_work() const {
  if (!control_.empty()) return true;
  for (const auto& [key, c] : conns_) {
    if (!c.established) continue;
    if (!c.from_host.empty() && peer_credit(c) > 0) return true;
    if (c.host_eof && c.from_host.empty() && !c.shutdown_sent) return true;
    if (c.credit_update_due) return true;
  }
  return false;
}

void Vsock::process_rx() {
  if (!transport_->live()) return;
  const GuestMemory& mem = transport_->memory();
  Queue& queue = transport_->queue(kRxQueue);
  bool used = false;
  while (has_rx_work()) {
    auto next = queue.pop(mem);
    if (!next.ok()) {
      transport_->fail(next.error());
      return;
    }
    if (!*next) break;  // no buffers: the guest's next rx notify resumes us
    const DescChain& chain = **next;
    if (chain.writable_len < kVsockHeaderSize) {
      transport_->fail(make_error(ErrorKind::kGuest, "virtio-vsock: rx buffer smaller than a packet header"));
      return;
    }
    ChainWriter w(mem, chain);
    std::optional<Key> finished;
    if (!control_.empty()) {
      VsockHeader h = control_.front();
      control_.pop_front();
      w.write(&h, sizeof h);
    } else {
      // Serve connections round-robin so one busy stream cannot starve the rest.
      auto it = conns_.upper_bound(last_served_);
      Conn* chosen = nullptr;
      for (size_t i = 0; i < conns_.size() && !chosen; i++, ++it) {
        if (it == conns_.end()) it = conns_.begin();
        Conn& c = it->second;
        if (!c.established) continue;
        if ((!c.from_host.empty() && peer_credit(c) > 0) || (c.host_eof && c.from_host.empty() && !c.shutdown_sent) ||
            c.credit_update_due)
          chosen = &c;
      }
      if (!chosen) break;  // unreachable: has_rx_work() said there is work
      Conn& c = *chosen;
      last_served_ = {c.host_port, c.guest_port};
      if (!c.from_host.empty() && peer_credit(c) > 0) {
        size_t n = std::min<uint64_t>({c.from_host.size(), peer_credit(c), chain.writable_len - kVsockHeaderSize,
                                       kMaxPacketData});
        VsockHeader h = header_for(c, kOpRw);
        h.len = static_cast<uint32_t>(n);
        w.write(&h, sizeof h);
        w.write(c.from_host.data(), n);
        c.from_host.erase(0, n);
        c.tx_cnt += static_cast<uint32_t>(n);
      } else if (c.host_eof && c.from_host.empty() && !c.shutdown_sent) {
        VsockHeader h = header_for(c, kOpShutdown);
        h.flags = c.host_gone ? (kShutdownSend | kShutdownRcv) : kShutdownSend;
        w.write(&h, sizeof h);
        c.shutdown_sent = true;
        finished = Key{c.host_port, c.guest_port};
      } else {
        VsockHeader h = header_for(c, kOpCreditUpdate);
        w.write(&h, sizeof h);
      }
      c.fwd_cnt_sent = c.fwd_cnt;
      c.credit_update_due = false;
      update_interest(c);
    }
    if (auto s = queue.push_used(mem, chain.head, static_cast<uint32_t>(w.written())); !s.ok()) {
      transport_->fail(s.error());
      return;
    }
    used = true;
    if (finished) maybe_finish(*finished);  // may queue the final RST
  }
  if (used) transport_->signal_used(kRxQueue);
}

}  // namespace spore::vmm::virtio
