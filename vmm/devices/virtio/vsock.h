// virtio-vsock (virtio 1.x, 5.10) with its host side inside the VMM.
//
// Each connection's host end is one side of a socketpair: host code (the exec
// client, a daemon forwarding a unix socket) reads and writes the other side
// like any stream socket. The device moves bytes between those sockets and
// the guest's rings, honouring the guest's credit (it never sends more than
// the guest advertised room for) and enforcing its own (a guest that sends
// more than we offered is reset).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "base/fd.h"
#include "vmm/devices/virtio/device.h"
#include "vmm/event_loop.h"

namespace spore::vmm::virtio {

inline constexpr uint64_t kVsockHostCid = 2;
inline constexpr size_t kVsockHeaderSize = 44;

struct __attribute__((packed)) VsockHeader {
  uint64_t src_cid;
  uint64_t dst_cid;
  uint32_t src_port;
  uint32_t dst_port;
  uint32_t len;
  uint16_t type;
  uint16_t op;
  uint32_t flags;
  uint32_t buf_alloc;
  uint32_t fwd_cnt;
};
static_assert(sizeof(VsockHeader) == kVsockHeaderSize);

enum VsockOp : uint16_t {
  kOpInvalid = 0,
  kOpRequest = 1,
  kOpResponse = 2,
  kOpRst = 3,
  kOpShutdown = 4,
  kOpRw = 5,
  kOpCreditUpdate = 6,
  kOpCreditRequest = 7,
};
inline constexpr uint16_t kVsockTypeStream = 1;
inline constexpr uint32_t kShutdownRcv = 1;
inline constexpr uint32_t kShutdownSend = 2;

class Vsock final : public Device {
 public:
  using ConnectCallback = std::function<void(Result<UniqueFd>)>;
  using AcceptCallback = std::function<void(UniqueFd, uint32_t guest_port)>;

  // Per-connection receive buffer we offer the guest (its send credit).
  static constexpr uint32_t kBufAlloc = 256 << 10;
  static constexpr size_t kMaxConnections = 256;
  static constexpr uint32_t kMaxPacketData = 64 << 10;
  // Control packets (REQUEST, RESPONSE, RST) waiting for guest rx buffers.
  // A guest that posts none cannot make us queue more: its new connections
  // go unanswered (its connect times out), stray packets get no RST, and
  // host connects fail.
  static constexpr size_t kMaxPendingControl = 2 * kMaxConnections;

  Vsock(uint64_t guest_cid, EventLoop& loop);
  ~Vsock() override;

  // Host API. Thread-safe; callbacks run on the loop thread and must not block.
  // Opens a stream to a guest port; the callback gets our end or the refusal.
  void connect(uint32_t guest_port, ConnectCallback cb);
  // Blocking form for threads other than the loop's.
  Result<UniqueFd> connect_wait(uint32_t guest_port, int timeout_ms);
  // Accepts guest connections to host_port until unlisten(host_port). With
  // once, only the first: the listener is gone before cb runs, and later
  // connections are reset as if nobody listened.
  void listen(uint32_t host_port, AcceptCallback cb, bool once = false);
  // Removes host_port's listener, if any. Once it returns the callback is
  // not running and never runs again, so whatever it refers to may go away.
  // Not from inside an accept callback.
  void unlisten(uint32_t host_port);

  // Device
  uint32_t type() const override { return kTypeVsock; }
  const char* name() const override { return "vsock"; }
  uint64_t features() const override { return 0; }
  size_t queue_count() const override { return 3; }
  void read_config(uint64_t offset, uint8_t* data, size_t len) const override;
  Status activate(Transport& t) override;
  void reset() override;
  void notify(size_t q) override;

  // What the device holds on the guest's behalf (call with the transport
  // lock held): connections, control packets waiting for a guest rx buffer,
  // and bytes buffered in either direction.
  size_t connection_count() const { return conns_.size(); }
  size_t pending_control() const { return control_.size(); }
  size_t buffered_bytes() const;

  // After a restore: tells the guest that every connection it had is gone
  // (VIRTIO_VSOCK_EVENT_TRANSPORT_RESET). New host connections wait until
  // the guest has processed the event, or a second has passed, so they are
  // not torn down by it. Skipped when the spore was captured with no
  // connection open: then the guest has none to lose. Call with the
  // transport lock held.
  void transport_reset();

  // The spore records how many connections were open at capture and the
  // next host port to use.
  std::string save_device_state() const override;
  Status load_device_state(std::string_view data) override;

 private:
  struct Conn {
    uint32_t host_port = 0;
    uint32_t guest_port = 0;
    UniqueFd fd;  // our end of the socketpair
    EventLoop::HandlerId handler = 0;
    uint32_t interest = 0;  // epoll events currently requested
    bool established = false;
    ConnectCallback on_connect;  // host-initiated, until RESPONSE or RST
    UniqueFd peer_end;           // handed to on_connect once established
    // guest -> host
    std::string to_host;  // received; bytes from to_host_off on are not yet written to fd
    size_t to_host_off = 0;
    uint32_t rx_cnt = 0;        // bytes received from the guest
    uint32_t fwd_cnt = 0;       // bytes written to fd
    uint32_t fwd_cnt_sent = 0;  // fwd_cnt the guest last heard
    bool guest_done_sending = false;
    // host -> guest
    std::string from_host;  // read from fd, not yet in a guest buffer
    uint32_t tx_cnt = 0;    // bytes sent to the guest
    uint32_t peer_buf_alloc = 0;
    uint32_t peer_fwd_cnt = 0;
    bool guest_done_receiving = false;
    bool host_eof = false;
    bool host_gone = false;  // the host end closed completely; fd no longer watched
    bool shutdown_sent = false;
    bool credit_update_due = false;
  };
  using Key = std::pair<uint32_t, uint32_t>;  // host port, guest port
  struct Listener {
    AcceptCallback cb;
    bool once = false;
  };

  std::mutex& mu();
  VsockHeader header_for(const Conn& c, uint16_t op) const;
  uint32_t peer_credit(const Conn& c) const;
  bool control_full() const;
  void queue_control(const VsockHeader& h);
  void queue_rst(uint32_t host_port, uint32_t guest_port);
  void forget_control(Key key);
  Conn* find(uint32_t host_port, uint32_t guest_port);
  void drop(Key key, bool send_rst);
  void drop_all();
  void update_interest(Conn& c);
  void on_fd_event(Key key, uint32_t events);
  void flush_to_host(Conn& c);
  void fill_from_host(Conn& c);
  void maybe_finish(Key key);

  void start_connect(uint32_t guest_port, ConnectCallback cb);
  void process_tx();
  void process_rx();
  void handle_packet(const VsockHeader& h, const DescChain& chain);
  bool has_rx_work() const;
  void deliver_reset_event();
  void end_reset_wait();

  uint64_t guest_cid_;
  EventLoop& loop_;
  Key last_served_{0, 0};  // round-robin position among connections
  std::map<Key, Conn> conns_;
  std::map<uint32_t, Listener> listeners_;
  std::deque<VsockHeader> control_;
  std::deque<std::pair<uint32_t, ConnectCallback>> pending_connects_;  // before the driver is up
  uint32_t next_ephemeral_ = 49152;
  bool reset_event_pending_ = false;  // TRANSPORT_RESET not yet in a guest buffer
  bool awaiting_reset_ack_ = false;   // delivered, guest has not refilled the event queue yet
  uint16_t reset_avail_idx_ = 0;      // event queue's avail->idx when the event went out
  uint32_t connections_at_capture_ = 1;  // until a spore says otherwise, assume some
  UniqueFd reset_timer_;
  EventLoop::HandlerId reset_timer_handler_ = 0;
};

}  // namespace spore::vmm::virtio
