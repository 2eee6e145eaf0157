// virtio-vsock behind the mmio transport, with its host side: a hostile
// guest (fuzz/support/virtio_rig.h) and host code that listens, connects,
// writes, reads and closes, interleaved as the program says. Checked
// beyond "no crash": the device never holds more than its caps allow
// (connections, control packets, buffered bytes), whatever the guest does.
#include <fcntl.h>
#include <sys/socket.h>

#include "base/fd.h"
#include "fuzz/support/virtio_rig.h"
#include "vmm/devices/virtio/vsock.h"

using namespace spore;
using namespace spore::fuzz;
using namespace spore::vmm::virtio;

namespace {

constexpr uint64_t kGuestCid = 3;
constexpr size_t kMaxHostFds = 32;

// Host ends of connections (accepted or connected), owned by the harness.
std::vector<UniqueFd>* g_host;

void keep(UniqueFd fd) {
  if (!fd || g_host->size() >= kMaxHostFds) return;
  (void)set_nonblocking(fd.get());
  g_host->push_back(std::move(fd));
}

uint32_t port(Input& in) {
  static constexpr uint32_t kPorts[] = {1024, 1025, 49152, 49153, 5000, 0xffffffff};
  uint8_t sel = in.u8();
  return sel < 240 ? kPorts[sel % 6] : in.u32();
}

Vsock& vsock(VirtioRig& rig) { return static_cast<Vsock&>(rig.device()); }

// Header fields from the program; cids and type right unless it says not.
void guest_packet(Input& in, VirtioRig& rig) {
  VsockHeader h{};
  uint8_t raw = in.u8();
  h.src_cid = raw & 1 ? in.u64() : kGuestCid;
  h.dst_cid = raw & 2 ? in.u64() : kVsockHostCid;
  h.type = raw & 4 ? in.u16() : kVsockTypeStream;
  h.src_port = port(in);
  h.dst_port = port(in);
  h.op = in.u8() % 9;
  h.flags = in.u8() % 4;
  h.buf_alloc = raw & 8 ? in.u32() : 256 << 10;
  h.fwd_cnt = in.u32();
  std::string payload = in.str16();
  h.len = raw & 16 ? in.u32() : static_cast<uint32_t>(payload.size());
  std::string bytes(reinterpret_cast<const char*>(&h), sizeof h);
  bytes += payload;
  // Layout: header and payload apart, together, or split anywhere.
  std::vector<VirtioRig::Desc> descs;
  uint8_t layout = in.u8();
  size_t cut = layout % 3 == 0 ? sizeof h : layout % 3 == 1 ? bytes.size() : in.u16() % (bytes.size() + 1);
  for (std::string_view part : {std::string_view(bytes).substr(0, cut), std::string_view(bytes).substr(cut)}) {
    if (part.empty()) continue;
    uint64_t at = rig.alloc(static_cast<uint32_t>(part.size()));
    rig.put(at, part);
    descs.push_back({at, static_cast<uint32_t>(part.size()), 0});
  }
  rig.publish_chain(1, descs);
  rig.kick(1);
}

void vsock_op(Input& in, VirtioRig& rig) {
  switch (in.u8() % 11) {
    case 0: {
      uint32_t p = port(in);
      vsock(rig).listen(p, [](UniqueFd fd, uint32_t) { keep(std::move(fd)); }, in.flag());
      break;
    }
    case 1:
      vsock(rig).unlisten(port(in));
      break;
    case 2:
      vsock(rig).connect(port(in), [](Result<UniqueFd> r) {
        if (r.ok()) keep(std::move(*r));
      });
      rig.poll();
      break;
    case 3: {  // host writes
      size_t i = in.u8();
      std::string b = in.str16();
      if (i < g_host->size()) {
        ssize_t n = ::send((*g_host)[i].get(), b.data(), b.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)n;
      }
      rig.poll();
      break;
    }
    case 4: {  // host reads what is there
      size_t i = in.u8();
      if (i < g_host->size()) {
        char buf[16 << 10];
        while (::recv((*g_host)[i].get(), buf, sizeof buf, MSG_DONTWAIT) > 0) {
        }
      }
      rig.poll();
      break;
    }
    case 5: {  // host closes
      size_t i = in.u8();
      if (i < g_host->size()) g_host->erase(g_host->begin() + static_cast<long>(i));
      rig.poll();
      break;
    }
    case 6: {  // host half-closes
      size_t i = in.u8();
      int how = in.u8() % 3;
      if (i < g_host->size()) ::shutdown((*g_host)[i].get(), how);
      rig.poll();
      break;
    }
    case 7:
      guest_packet(in, rig);
      break;
    case 8: {  // the guest posts receive buffers
      size_t n = 1 + in.u8() % 8;
      uint32_t len = in.u16() % 4096;
      for (size_t i = 0; i < n; i++) rig.publish_chain(0, {{rig.alloc(len), len, kDescFlagWrite}});
      rig.kick(0);
      break;
    }
    case 9: {  // what a restore does to the host side
      std::lock_guard<std::mutex> g(rig.transport().lock());
      vsock(rig).transport_reset();
      break;
    }
    case 10: {  // the guest posts an event buffer
      uint32_t len = in.u8() % 16;
      rig.publish_chain(2, {{rig.alloc(len), len, kDescFlagWrite}});
      rig.kick(2);
      break;
    }
  }
}

DeviceOps vsock_ops() {
  DeviceOps ops;
  ops.make = [](vmm::EventLoop& loop) { return std::make_unique<Vsock>(kGuestCid, loop); };
  ops.op = vsock_op;
  ops.after_restore = [](VirtioRig& rig) { vsock(rig).transport_reset(); };
  return ops;
}

void check_caps(VirtioRig& rig) {
  std::lock_guard<std::mutex> g(rig.transport().lock());
  Vsock& v = vsock(rig);
  check(v.connection_count() <= Vsock::kMaxConnections, "more connections than the cap");
  check(v.pending_control() <= Vsock::kMaxPendingControl, "more control packets than the cap");
  // Per connection: the guest's credit, the host's read-ahead and what a
  // slow host reader leaves before compaction (vsock.cc's constants).
  const size_t per_conn = Vsock::kBufAlloc + (256 << 10) + (64 << 10) + Vsock::kMaxPacketData;
  check(v.buffered_bytes() <= v.pending_control() * sizeof(VsockHeader) + v.connection_count() * per_conn,
        "more bytes buffered than the caps allow");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const DeviceOps ops = vsock_ops();
  std::vector<UniqueFd> host;
  g_host = &host;
  {
    Input in(data, size);
    VirtioRig rig(ops);
    for (int steps = 0; !in.empty() && steps < 256; steps++) {
      rig.run_one(in);
      check_caps(rig);
    }
    rig.poll();
    check_caps(rig);
  }
  g_host = nullptr;
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  auto packet = [](VirtioProgram& p, uint8_t op, uint8_t guest_port, uint8_t host_port, std::string payload = "",
                   uint8_t flags = 0) {
    p.device().u8(7).u8(0).u8(guest_port).u8(host_port).u8(op).u8(flags).u32(0).str16(payload).u8(0);
  };
  auto rx = [](VirtioProgram& p, uint8_t n) { p.device().u8(8).u8(n - 1).u16(4095); };
  // The guest connects to a listening host port (1024: selector 0),
  // exchanges data both ways, and shuts down.
  VirtioProgram p;
  p.init();
  p.device().u8(0).u8(0).u8(0);  // listen on 1024
  rx(p, 8);
  packet(p, kOpRequest, 4, 0);
  packet(p, kOpRw, 4, 0, "hello host");
  p.device().u8(3).u8(0).str16("hello guest");  // host writes on its end
  p.device().u8(4).u8(0);                      // host reads
  packet(p, kOpCreditRequest, 4, 0);
  packet(p, kOpShutdown, 4, 0, "", 3);
  rx(p, 4);
  seeds.add("guest_connects", p.str());
  // The host connects to a guest port; the guest answers, then resets.
  VirtioProgram h;
  h.init();
  rx(h, 4);
  h.device().u8(2).u8(0);  // connect to guest port 1024
  packet(h, kOpResponse, 0, 2);  // guest 1024 -> host 49152
  h.device().u8(3).u8(0).str16(std::string(3000, 'x'));
  rx(h, 4);
  packet(h, kOpRst, 0, 2);
  h.device().u8(5).u8(0);
  seeds.add("host_connects", h.str());
  // No receive buffers: control packets pile up against the cap.
  VirtioProgram flood;
  flood.init();
  for (int i = 0; i < 40; i++) packet(flood, kOpRequest, 5, 3);
  seeds.add("no_rx_buffers", flood.str());
  // A restore with a connection open.
  VirtioProgram r;
  r.init();
  r.device().u8(0).u8(0).u8(0);
  rx(r, 2);
  packet(r, kOpRequest, 4, 0);
  r.snapshot_restore();
  r.device().u8(10).u8(8);
  rx(r, 2);
  seeds.add("restore", r.str());
}
