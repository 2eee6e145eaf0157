// spore-attack: a hostile guest program for the integration tests
// (tests/integration/attack_test.cc). It runs inside a guest, as root, and
// does what an unprivileged-to-the-host attacker would. Never part of a
// product image: scripts/build-test-rootfs.sh puts it into a test rootfs only.
//
//   spore-attack ready-flood N       connect to the host's ready port N times (and close)
//   spore-attack flood-stdout BYTES  write BYTES of a known pattern to stdout as fast as it can
//   spore-attack ignore-timeout      ignore every catchable signal and sleep forever
//   spore-attack freeze-agent        stop the guest agent (PID 1) with ptrace, then sleep forever
//   spore-attack outlive-writers N   leave N children writing to stdout without end, then exit 3
//   (as /init, PID 1, no arguments)  an impostor agent: announces itself with a
//                                    HELLO of protocol version 99, then sleeps
//
// Each mode first prints "spore-attack: start" on stderr, so a test knows
// when the attack begins, and reports what happened on stdout.
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/wait.h>
// After sys/socket.h: it needs sockaddr.
#include <linux/vm_sockets.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

constexpr unsigned kHostCid = 2;
constexpr unsigned kReadyPort = 1025;  // proto::kReadyPort

void start() {
  std::fprintf(stderr, "spore-attack: start\n");
  std::fflush(stderr);
}

[[noreturn]] void sleep_forever() {
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, nullptr);
  for (int s = 1; s < NSIG; s++) signal(s, SIG_IGN);
  for (;;) pause();
}

int ready_flood(long n) {
  start();
  long accepted = 0, refused = 0, timed_out = 0, other = 0;
  int last_errno = 0;
  for (long i = 0; i < n; i++) {
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      std::fprintf(stderr, "spore-attack: socket: %s\n", std::strerror(errno));
      return 1;
    }
    sockaddr_vm a{};
    a.svm_family = AF_VSOCK;
    a.svm_cid = kHostCid;
    a.svm_port = kReadyPort;
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      accepted++;
    } else if (errno == ECONNRESET || errno == ECONNREFUSED) {
      refused++;
    } else if (errno == ETIMEDOUT) {
      timed_out++;
    } else {
      other++;
      last_errno = errno;
    }
    close(fd);
  }
  std::printf("ready-flood: %ld attempts, %ld accepted, %ld refused, %ld timed out, %ld other%s%s\n", n, accepted,
              refused, timed_out, other, other ? ": " : "", other ? std::strerror(last_errno) : "");
  return 0;
}

// Byte i of the flood; the test checks what arrives against it.
char pattern(unsigned long i) { return static_cast<char>('a' + (i / 4096 + i) % 26); }

int flood_stdout(unsigned long bytes) {
  start();
  static char buf[64 << 10];
  unsigned long done = 0;
  while (done < bytes) {
    size_t n = sizeof buf < bytes - done ? sizeof buf : bytes - done;
    for (size_t k = 0; k < n; k++) buf[k] = pattern(done + k);
    size_t off = 0;
    while (off < n) {
      ssize_t w = write(STDOUT_FILENO, buf + off, n - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        std::fprintf(stderr, "spore-attack: write: %s\n", std::strerror(errno));
        return 1;
      }
      off += static_cast<size_t>(w);
    }
    done += n;
  }
  return 0;
}

// The command exits while children it leaves behind keep its stdout pipe
// full: the agent must report the exit, not wait for an end of output that
// never comes.
int outlive_writers(long n) {
  start();
  for (long i = 0; i < n; i++) {
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
      static char buf[64 << 10];
      std::memset(buf, 'w', sizeof buf);
      for (;;) {
        if (write(STDOUT_FILENO, buf, sizeof buf) < 0 && errno != EINTR && errno != EAGAIN) _exit(0);
      }
    }
  }
  usleep(200'000);  // the writers have filled the pipe by now
  std::fprintf(stderr, "spore-attack: exiting under the writers\n");
  return 3;
}

int ignore_timeout() {
  start();
  sleep_forever();
}

int freeze_agent() {
  start();
  std::fprintf(stderr, "spore-attack: stopping the agent\n");
  std::fflush(stderr);
  sleep(1);  // let that line reach the host while the agent still can forward it
  // SEIZE + INTERRUPT: a ptrace-stop without sending a signal (PID 1 ignores
  // those); it lasts as long as we, the tracer, live.
  if (ptrace(PTRACE_SEIZE, 1, nullptr, nullptr) < 0 || ptrace(PTRACE_INTERRUPT, 1, nullptr, nullptr) < 0) {
    std::fprintf(stderr, "spore-attack: ptrace pid 1: %s\n", std::strerror(errno));
    return 1;
  }
  int st;
  if (waitpid(1, &st, __WALL) < 0) {
    std::fprintf(stderr, "spore-attack: waitpid pid 1: %s\n", std::strerror(errno));
    return 1;
  }
  sleep_forever();
}

// The HELLO frame of doc/agent-protocol.md, little-endian, with a version
// this host does not speak.
int impostor_agent() {
  std::string hello;
  auto u16 = [&](uint16_t v) { hello.append({static_cast<char>(v), static_cast<char>(v >> 8)}); };
  auto u32 = [&](uint32_t v) { u16(static_cast<uint16_t>(v)); u16(static_cast<uint16_t>(v >> 16)); };
  u16(99);                // version
  u32(8);                 // agent_version
  hello += "impostor";
  u32(0), u32(0);         // uptime_ms
  std::string frame;
  std::swap(frame, hello);
  u32(static_cast<uint32_t>(frame.size()));
  u16(0x86);  // HELLO
  u16(0);
  hello += frame;
  for (int attempt = 0; attempt < 100; attempt++) {
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_vm a{};
    a.svm_family = AF_VSOCK;
    a.svm_cid = kHostCid;
    a.svm_port = kReadyPort;
    if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      ssize_t n = write(fd, hello.data(), hello.size());
      (void)n;
      sleep_forever();
    }
    if (fd >= 0) close(fd);
    usleep(20'000);
  }
  sleep_forever();
}

int usage() {
  std::fprintf(stderr, "usage: spore-attack ready-flood N | flood-stdout BYTES | ignore-timeout | freeze-agent | outlive-writers N\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (getpid() == 1 && argc == 1) return impostor_agent();
  if (argc < 2) return usage();
  std::string mode = argv[1];
  if (mode == "ready-flood" && argc == 3) return ready_flood(std::strtol(argv[2], nullptr, 10));
  if (mode == "flood-stdout" && argc == 3) return flood_stdout(std::strtoul(argv[2], nullptr, 10));
  if (mode == "outlive-writers" && argc == 3) return outlive_writers(std::strtol(argv[2], nullptr, 10));
  if (mode == "ignore-timeout" && argc == 2) return ignore_timeout();
  if (mode == "freeze-agent" && argc == 2) return freeze_agent();
  return usage();
}
