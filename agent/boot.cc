#include "agent/boot.h"

#include <fcntl.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "base/fd.h"
#include "base/strings.h"

namespace spore::agent {
namespace {

void warn(const std::string& msg) {
  std::string line = "spore-agent: " + msg + "\n";
  ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
  (void)n;
}

Status mount_fs(const char* src, const char* target, const char* type, unsigned long flags, const char* data) {
  if (::mount(src, target, type, flags, data) < 0)
    return errno_error(strfmt("mount %s on %s (%s)", src, target, type ? type : "-"));
  return ok_status();
}

bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Creates dir if missing; false when it cannot exist (read-only root).
bool ensure_dir(const std::string& p, mode_t mode = 0755) {
  if (is_dir(p)) return true;
  return ::mkdir(p.c_str(), mode) == 0;
}

void ensure_symlink(const char* target, const char* path) {
  struct stat st;
  if (::lstat(path, &st) == 0) return;
  if (::symlink(target, path) < 0 && errno != EEXIST) warn(strfmt("symlink %s: %s", path, std::strerror(errno)));
}

// The standard mounts inside whichever root we end up in.
void mount_runtime_dirs(bool root_writable) {
  struct Want {
    const char* path;
    const char* type;
    unsigned long flags;
    const char* data;
    mode_t mode;
  };
  const Want wants[] = {
      {"/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620", 0755},
      {"/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 01777},
      {"/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 01777},
      {"/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", 0755},
  };
  for (const auto& w : wants) {
    if (!ensure_dir(w.path, w.mode)) {
      if (root_writable || std::strncmp(w.path, "/dev", 4) == 0)
        warn(strfmt("cannot create %s: %s", w.path, std::strerror(errno)));
      continue;
    }
    auto s = mount_fs(w.type, w.path, w.type, w.flags, w.data);
    if (!s.ok()) warn(s.error().message);
  }
  ensure_symlink("pts/ptmx", "/dev/ptmx");
  ensure_symlink("/proc/self/fd", "/dev/fd");
  ensure_symlink("/proc/self/fd/0", "/dev/stdin");
  ensure_symlink("/proc/self/fd/1", "/dev/stdout");
  ensure_symlink("/proc/self/fd/2", "/dev/stderr");
}

// The filesystem type from the superblock magic, so the kernel is not asked
// to try types that cannot match (each failed attempt logs an error).
std::string detect_fstype(const std::string& device) {
  auto fd = open_file(device, O_RDONLY);
  if (!fd.ok()) return {};
  uint8_t sb[1024 + 64];
  if (!pread_exact(fd->get(), sb, sizeof sb, 0).ok()) return {};
  uint32_t erofs_magic;
  uint16_t ext_magic;
  std::memcpy(&erofs_magic, sb + 1024, 4);
  std::memcpy(&ext_magic, sb + 1024 + 56, 2);
  if (erofs_magic == 0xE0F5E1E2) return "erofs";
  if (ext_magic == 0xEF53) return "ext4";
  return {};
}

Status mount_root_image(const BootOptions& o, const char* target) {
  std::string type = o.root_fstype == "auto" ? detect_fstype(o.root_device) : o.root_fstype;
  if (type.empty())
    return make_error(ErrorKind::kCorrupt, o.root_device + " holds neither an erofs nor an ext4 filesystem");
  return mount_fs(o.root_device.c_str(), target, type.c_str(), MS_RDONLY | MS_NODEV, nullptr);
}

// "0x" and up to 16 hex digits naming a page-aligned, non-zero address; 0
// for anything else.
uint64_t parse_page_address(const std::string& v) {
  if (v.size() < 3 || v.size() > 18 || v[0] != '0' || (v[1] != 'x' && v[1] != 'X')) return 0;
  uint64_t a = 0;
  for (size_t i = 2; i < v.size(); i++) {
    char c = v[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return 0;
    a = (a << 4) | static_cast<uint64_t>(d);
  }
  return a % 4096 == 0 ? a : 0;
}

}  // namespace

BootOptions parse_cmdline(const std::string& cmdline) {
  BootOptions o;
  for (const auto& tok : split(cmdline, ' ')) {
    std::string t = tok;
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
    auto eq = t.find('=');
    if (eq == std::string::npos) continue;
    std::string key = t.substr(0, eq), val = t.substr(eq + 1);
    if (key == "spore.root") o.root_device = val;
    else if (key == "spore.rootfstype") o.root_fstype = val;
    else if (key == "spore.rootmode") {
      if (val == "ro") o.mode = RootMode::kReadOnly;
      else if (val == "none") o.mode = RootMode::kNone;
      else o.mode = RootMode::kOverlay;
    } else if (key == "spore.hostname" && !val.empty()) {
      o.hostname = val;
      o.hostname_explicit = true;
    } else if (key == "spore.generation") {
      o.generation_addr = parse_page_address(val);
    }
  }
  return o;
}

void early_setup() {
  ::mkdir("/proc", 0555);
  ::mkdir("/sys", 0555);
  ::mkdir("/dev", 0755);
  ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  ::mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  ::mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
  int fd = ::open("/dev/console", O_RDWR | O_NOCTTY);
  if (fd >= 0) {
    for (int i = 0; i < 3; i++) ::dup2(fd, i);
    if (fd > 2) ::close(fd);
  }
  ::umask(022);
}

Status enter_rootfs(const BootOptions& o) {
  if (o.mode == RootMode::kNone || ::access(o.root_device.c_str(), F_OK) != 0) {
    if (o.mode != RootMode::kNone) warn("no root device " + o.root_device + "; staying in the initramfs");
    mount_runtime_dirs(true);
    return ok_status();
  }
  ::mkdir("/mnt", 0755);
  const bool overlay = o.mode == RootMode::kOverlay;
  const char* lower = overlay ? "/mnt/lower" : "/mnt/root";
  ::mkdir(lower, 0755);
  auto s = mount_root_image(o, lower);
  if (!s.ok()) return std::move(s).error().wrap("rootfs");
  if (overlay) {
    ::mkdir("/mnt/rw", 0755);
    ::mkdir("/mnt/root", 0755);
    SPORE_TRY(mount_fs("tmpfs", "/mnt/rw", "tmpfs", 0, "mode=0755"));
    ::mkdir("/mnt/rw/upper", 0755);
    ::mkdir("/mnt/rw/work", 0755);
    SPORE_TRY(mount_fs("overlay", "/mnt/root", "overlay", 0,
                       "lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work"));
  }
  // Carry the kernel filesystems over, then make the new tree the root.
  for (const char* d : {"/proc", "/sys", "/dev"}) {
    std::string target = std::string("/mnt/root") + d;
    if (!ensure_dir(target)) {
      warn(strfmt("rootfs has no %s and is read-only; %s will be missing", d, d));
      continue;
    }
    if (::mount(d, target.c_str(), nullptr, MS_MOVE, nullptr) < 0)
      warn(strfmt("moving %s: %s", d, std::strerror(errno)));
  }
  if (::chdir("/mnt/root") < 0) return errno_error("chdir /mnt/root");
  if (::mount(".", "/", nullptr, MS_MOVE, nullptr) < 0) return errno_error("switching root");
  if (::chroot(".") < 0) return errno_error("chroot");
  if (::chdir("/") < 0) return errno_error("chdir /");
  mount_runtime_dirs(overlay);
  return ok_status();
}

void setup_identity(const BootOptions& o) {
  if (::sethostname(o.hostname.data(), o.hostname.size()) < 0) warn("sethostname failed");
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    ::ioctl(s, SIOCSIFFLAGS, &ifr);
  }
  ::close(s);
}

}  // namespace spore::agent
