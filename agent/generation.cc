#include "agent/generation.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

#include "base/strings.h"

namespace spore::agent {
namespace {

constexpr uint32_t kMagic = 0x4e475053;  // "SPGN"
enum : uint32_t {
  kRegMagic = 0x00,
  kRegGenLo = 0x08,
  kRegTimeLo = 0x10,
  kRegTimeHi = 0x14,
  kRegSeed = 0x20,
  kRegInstanceId = 0x40,
  kRegSporeId = 0x50,
  kRegIntAck = 0x64,
};

void warn(const std::string& msg) {
  std::string line = "spore-agent: " + msg + "\n";
  ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
  (void)n;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

std::unique_ptr<Generation> Generation::open(const std::string& fixed_hostname, uint64_t phys_addr) {
  std::string node;
  if (DIR* d = ::opendir("/sys/class/uio")) {
    while (dirent* e = ::readdir(d)) {
      if (std::strncmp(e->d_name, "uio", 3) != 0) continue;
      auto name = read_file(std::string("/sys/class/uio/") + e->d_name + "/name", 256);
      if (name.ok() && trim(*name) == "generation") {
        node = e->d_name;
        break;
      }
    }
    ::closedir(d);
  }
  if (node.empty() && phys_addr == 0) return nullptr;
  std::unique_ptr<Generation> g(new Generation());
  g->fixed_hostname_ = fixed_hostname;
  g->map_size_ = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  void* p = MAP_FAILED;
  if (!node.empty()) {
    auto fd = open_file("/dev/" + node, O_RDWR);
    if (!fd.ok()) {
      warn("generation device: " + fd.error().message);
      return nullptr;
    }
    g->fd_ = std::move(*fd);
    p = ::mmap(nullptr, g->map_size_, PROT_READ | PROT_WRITE, MAP_SHARED, g->fd_.get(), 0);
  } else {
    // Uncached (O_SYNC): every load reaches the device. The mapping
    // outlives the descriptor, which would only ever read as memory.
    auto mem = open_file("/dev/mem", O_RDWR | O_SYNC);
    if (!mem.ok()) {
      warn("generation device: " + mem.error().message);
      return nullptr;
    }
    p = ::mmap(nullptr, g->map_size_, PROT_READ | PROT_WRITE, MAP_SHARED, mem->get(), static_cast<off_t>(phys_addr));
  }
  if (p == MAP_FAILED) {
    warn(strfmt("generation device: mmap: %s", std::strerror(errno)));
    return nullptr;
  }
  g->regs_ = static_cast<volatile uint32_t*>(p);
  if (g->reg(kRegMagic) != kMagic) {
    warn("generation device: bad magic");
    return nullptr;
  }
  if (g->fd_) {
    // Arm the interrupt, then take the current generation as the first.
    int32_t on = 1;
    ssize_t n = ::write(g->fd_.get(), &on, sizeof on);
    (void)n;
  }
  g->refresh();
  return g;
}

Generation::~Generation() {
  if (regs_) ::munmap(const_cast<uint32_t*>(regs_), map_size_);
}

// One 32-bit load per register: device memory must not be read with
// instructions the hypervisor cannot emulate (pairs, vectors).
uint32_t Generation::reg(uint32_t offset) const { return regs_[offset / 4]; }

void Generation::on_interrupt() {
  uint32_t count;
  ssize_t n = ::read(fd_.get(), &count, sizeof count);
  (void)n;
  regs_[kRegIntAck / 4] = 1;
  int32_t on = 1;
  n = ::write(fd_.get(), &on, sizeof on);  // uio_pdrv_genirq masks the line until re-armed
  refresh();
}

bool Generation::refresh() {
  // One 64-bit load: a single trap to the VMM on the path of every command.
  uint64_t gen = *reinterpret_cast<volatile const uint64_t*>(reinterpret_cast<volatile const uint8_t*>(regs_) + kRegGenLo);
  if (gen == generation_) return false;
  generation_ = gen;
  apply();
  return true;
}

void Generation::apply() {
  // Entropy first: nothing after this point may reuse the parent's randomness.
  uint32_t seed[8];
  for (int i = 0; i < 8; i++) seed[i] = reg(kRegSeed + 4 * i);
  struct {
    int entropy_count;
    int buf_size;
    uint32_t buf[8];
  } req;
  req.entropy_count = 256;
  req.buf_size = sizeof seed;
  std::memcpy(req.buf, seed, sizeof seed);
  int rnd = ::open("/dev/urandom", O_RDWR | O_CLOEXEC);
  if (rnd >= 0) {
    if (::ioctl(rnd, RNDADDENTROPY, &req) < 0) warn(strfmt("RNDADDENTROPY: %s", std::strerror(errno)));
    if (::ioctl(rnd, RNDRESEEDCRNG) < 0) warn(strfmt("RNDRESEEDCRNG: %s", std::strerror(errno)));
    ::close(rnd);
  }
  std::memset(&req, 0, sizeof req);

  // The host's wall clock (TIME_LO latches the sample TIME_HI completes).
  uint32_t lo = reg(kRegTimeLo);
  uint64_t ns = (static_cast<uint64_t>(reg(kRegTimeHi)) << 32) | lo;
  timespec ts{static_cast<time_t>(ns / 1'000'000'000ull), static_cast<long>(ns % 1'000'000'000ull)};
  if (ns && ::clock_settime(CLOCK_REALTIME, &ts) < 0) warn(strfmt("clock_settime: %s", std::strerror(errno)));

  uint8_t id[16], sid[16];
  for (int i = 0; i < 4; i++) {
    uint32_t a = reg(kRegInstanceId + 4 * i), b = reg(kRegSporeId + 4 * i);
    std::memcpy(id + 4 * i, &a, 4);
    std::memcpy(sid + 4 * i, &b, 4);
  }
  instance_id_ = to_hex(id, sizeof id);
  bool zero = true;
  for (uint8_t b : sid) zero &= b == 0;
  spore_id_ = zero ? std::string() : to_hex(sid, sizeof sid);
  std::string host = hostname();
  if (::sethostname(host.data(), host.size()) < 0) warn("sethostname failed");
}

std::vector<std::string> Generation::environment() const {
  std::vector<std::string> env = {"SPORE_INSTANCE_ID=" + instance_id_,
                                  "SPORE_GENERATION=" + std::to_string(generation_)};
  if (!spore_id_.empty()) env.push_back("SPORE_ID=" + spore_id_);
  return env;
}

std::string Generation::hostname() const {
  return fixed_hostname_.empty() ? "spore-" + instance_id_.substr(0, 12) : fixed_hostname_;
}

}  // namespace spore::agent
