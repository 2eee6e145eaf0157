// spore-agent: PID 1 of every spore guest. Sets up the root filesystem,
// announces itself to the host, and serves exec sessions over vsock.
#include <sys/reboot.h>
#include <sys/socket.h>
// After sys/socket.h: it needs sockaddr.
#include <linux/vm_sockets.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "agent/boot.h"
#include "agent/generation.h"
#include "agent/protocol.h"
#include "agent/server.h"
#include "base/fd.h"
#include "base/strings.h"

#ifndef SPORE_VERSION
#define SPORE_VERSION "dev"
#endif

namespace {

using namespace spore;

void say(const std::string& msg) {
  std::string line = "spore-agent: " + msg + "\n";
  ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
  (void)n;
}

Result<UniqueFd> vsock_listen(uint32_t port) {
  UniqueFd fd(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("socket(AF_VSOCK)");
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = port;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) return errno_error("vsock bind");
  if (::listen(fd.get(), 128) < 0) return errno_error("vsock listen");
  return fd;
}

// Tells the host we are ready. The host listens before the guest boots.
void send_hello() {
  timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  proto::Hello h;
  h.agent_version = SPORE_VERSION;
  h.uptime_ms = static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
  std::string frame = proto::encode_frame(proto::Type::kHello, proto::encode_hello(h));
  for (int attempt = 0; attempt < 50; attempt++) {
    UniqueFd fd(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_vm addr{};
    addr.svm_family = AF_VSOCK;
    addr.svm_cid = VMADDR_CID_HOST;
    addr.svm_port = proto::kReadyPort;
    if (fd && ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      if (!write_all(fd.get(), frame.data(), frame.size()).ok()) say("could not send HELLO");
      return;
    }
    usleep(20'000);
  }
  say(strfmt("could not reach the host on vsock port %u: %s", proto::kReadyPort, std::strerror(errno)));
}

[[noreturn]] void halt(const std::string& why) {
  say(why);
  sync();
  ::reboot(RB_POWER_OFF);
  for (;;) pause();
}

}  // namespace

int main() {
  if (getpid() != 1) {
    say("must run as PID 1 inside a spore guest");
    return 1;
  }
  agent::early_setup();
  auto cmdline = read_file("/proc/cmdline", 65536);
  agent::BootOptions opts = agent::parse_cmdline(cmdline.ok() ? *cmdline : std::string());
  // Without its root filesystem the guest is useless: power off, so the host
  // reports the reason (on the console) instead of running commands somewhere else.
  if (auto s = agent::enter_rootfs(opts); !s.ok()) halt(s.error().message);
  agent::setup_identity(opts);

  auto listener = vsock_listen(proto::kAgentPort);
  if (!listener.ok()) halt(listener.error().message);

  // Before HELLO: the first command must already see fresh entropy, the
  // right clock and this instance's identity.
  auto generation = agent::Generation::open(opts.hostname_explicit ? opts.hostname : std::string(), opts.generation_addr);

  agent::ServerOptions so;
  so.listen_fd = listener->get();
  so.hostname = generation ? generation->hostname() : opts.hostname;
  so.generation = generation.get();
  send_hello();
  auto s = agent::serve(so);
  halt(s.ok() ? "server stopped" : s.error().message);
}
