#include "vmm/fuse/volume.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/strings.h"

namespace spore::vmm::fuse {
namespace {

constexpr size_t kDirBufSize = 32 << 10;
constexpr int kOpenat2Retries = 8;  // EAGAIN: a rename raced the lookup

// The host's errno as the guest should see it. ENOSYS would tell the
// guest's FUSE client that an operation does not exist at all (for OPEN it
// then stops sending opens), so a host call that is missing is an I/O error.
int host_error(int err = errno) {
  if (err <= 0 || err >= 4096 || err == ENOSYS) return -EIO;
  return -err;
}

bool valid_name(std::string_view n) {
  if (n.empty() || n.size() > kMaxNameLen || n == "." || n == "..") return false;
  return n.find('/') == std::string_view::npos && n.find('\0') == std::string_view::npos;
}

// Mode bits the guest may set: permissions and sticky; set-group-ID on
// directories only; never set-user-ID.
mode_t guest_mode(uint32_t mode, bool dir) {
  mode_t m = mode & 07777 & ~S_ISUID;
  if (!dir) m &= ~S_ISGID;
  return m;
}

// Wire open flags to host ones; -EINVAL for an impossible access mode.
int host_open_flags(uint32_t wire) {
  int flags;
  switch (wire & kWireAccMode) {
    case 0: flags = O_RDONLY; break;
    case 1: flags = O_WRONLY; break;
    case 2: flags = O_RDWR; break;
    default: return -EINVAL;
  }
  if (wire & kWireTrunc) flags |= O_TRUNC;
  if (wire & kWireAppend) flags |= O_APPEND;
  if (wire & kWireDsync) flags |= O_DSYNC;
  if (wire & kWireSync) flags |= O_SYNC;
  return flags;
}

bool writes(int host_flags) { return (host_flags & O_ACCMODE) != O_RDONLY || (host_flags & O_TRUNC); }

long sys_openat2(int dirfd, const char* path, uint64_t flags, uint64_t mode) {
  struct open_how how {};
  how.flags = flags;
  how.mode = mode;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  for (int i = 0;; i++) {
    long fd = ::syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    if (fd >= 0 || errno != EAGAIN || i == kOpenat2Retries) return fd;
  }
}

// openat2 beneath dirfd; where the kernel has no openat2 (before 5.6),
// openat with O_NOFOLLOW gives the same confinement for one component that
// is not "..".
long open_beneath(int dirfd, const std::string& name, int flags, mode_t mode = 0) {
  long fd = sys_openat2(dirfd, name.c_str(), static_cast<uint64_t>(flags | O_NOFOLLOW | O_CLOEXEC), mode);
  if (fd < 0 && errno == ENOSYS) fd = ::openat(dirfd, name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, mode);
  return fd;
}

}  // namespace

Result<std::unique_ptr<Volume>> Volume::open(const std::string& host_path, bool read_only, const Limits& limits) {
  if (limits.max_inodes < 1 || limits.max_handles < 1)
    return make_error(ErrorKind::kInternal, "volume limits must allow the root and one handle");
  std::unique_ptr<Volume> v(new Volume());
  v->read_only_ = read_only;
  v->limits_ = limits;
  UniqueFd root(::open(host_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) {
    Error e = errno_error(host_path);
    if (e.sys_errno == ENOTDIR) e.message = host_path + ": not a directory";
    return e;
  }
  v->proc_fd_.reset(::open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!v->proc_fd_) return errno_error("/proc/self/fd (volumes reopen files through it; is /proc mounted?)");
  struct stat st;
  if (::fstat(root.get(), &st) < 0) return errno_error(host_path);
  Inode r;
  r.fd = std::move(root);
  r.dev = st.st_dev;
  r.ino = st.st_ino;
  r.type = S_IFDIR;
  r.nlookup = 1;
  v->by_key_[Key{st.st_dev, st.st_ino}] = kRootNodeId;
  v->inodes_.emplace(kRootNodeId, std::move(r));
  v->dirbuf_.resize(kDirBufSize);
  return v;
}

Volume::~Volume() = default;

void Volume::reset() {
  handles_.clear();
  for (auto it = inodes_.begin(); it != inodes_.end();) {
    if (it->first == kRootNodeId) {
      it->second.nlookup = 1;
      ++it;
    } else {
      by_key_.erase(Key{it->second.dev, it->second.ino});
      it = inodes_.erase(it);
    }
  }
}

Volume::Inode* Volume::inode(uint64_t nodeid) {
  auto it = inodes_.find(nodeid);
  return it == inodes_.end() ? nullptr : &it->second;
}

Volume::Handle* Volume::handle(uint64_t fh, bool dir) {
  auto it = handles_.find(fh);
  if (it == handles_.end() || it->second.dir != dir) return nullptr;
  return &it->second;
}

Volume::Inode* Volume::dir_inode(uint64_t nodeid, int* err) {
  Inode* i = inode(nodeid);
  if (!i) {
    *err = -ESTALE;
    return nullptr;
  }
  if (i->type != S_IFDIR) {
    *err = -ENOTDIR;
    return nullptr;
  }
  return i;
}

std::string Volume::proc_name(const Inode& ino) const { return std::to_string(ino.fd.get()); }

int Volume::resolve(int parent_fd, std::string_view name, UniqueFd* out) {
  long fd = open_beneath(parent_fd, std::string(name), O_PATH);
  if (fd < 0) return host_error();
  out->reset(static_cast<int>(fd));
  return 0;
}

int Volume::enter(UniqueFd fd, Entry* out) {
  struct stat st;
  if (::fstatat(fd.get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) return host_error();
  auto found = by_key_.find(Key{st.st_dev, st.st_ino});
  if (found != by_key_.end()) {
    Inode& i = inodes_.at(found->second);
    i.nlookup++;
    out->nodeid = found->second;
    out->st = st;
    return 0;  // fd closes: the inode already has one
  }
  if (inodes_.size() >= limits_.max_inodes) return -ENFILE;
  Inode i;
  i.fd = std::move(fd);
  i.dev = st.st_dev;
  i.ino = st.st_ino;
  i.type = st.st_mode & S_IFMT;
  i.nlookup = 1;
  uint64_t id = next_nodeid_++;
  by_key_[Key{st.st_dev, st.st_ino}] = id;
  inodes_.emplace(id, std::move(i));
  out->nodeid = id;
  out->st = st;
  return 0;
}

int Volume::lookup_fd(Inode* dir, std::string_view name, Entry* out) {
  UniqueFd fd;
  if (int r = resolve(dir->fd.get(), name, &fd); r < 0) return r;
  return enter(std::move(fd), out);
}

int Volume::lookup(uint64_t parent, std::string_view name, Entry* out) {
  if (!valid_name(name)) return name.size() > kMaxNameLen ? -ENAMETOOLONG : -EINVAL;
  int err;
  Inode* dir = dir_inode(parent, &err);
  if (!dir) return err;
  return lookup_fd(dir, name, out);
}

void Volume::forget(uint64_t nodeid, uint64_t n) {
  if (nodeid == kRootNodeId) return;  // the root lives as long as the volume
  auto it = inodes_.find(nodeid);
  if (it == inodes_.end()) return;
  if (n < it->second.nlookup) {
    it->second.nlookup -= n;
    return;
  }
  by_key_.erase(Key{it->second.dev, it->second.ino});
  inodes_.erase(it);
}

int Volume::getattr(uint64_t nodeid, struct stat* st) {
  Inode* i = inode(nodeid);
  if (!i) return -ESTALE;
  if (::fstatat(i->fd.get(), "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) return host_error();
  return 0;
}

int Volume::reopen(const Inode& ino, int flags, UniqueFd* out) {
  int fd;
  if (ino.type == S_IFDIR) {
    fd = ::openat(ino.fd.get(), ".", flags | O_DIRECTORY | O_CLOEXEC);
  } else if (ino.type == S_IFREG) {
    // The magic link names this very inode: no name is resolved again.
    fd = ::openat(proc_fd_.get(), proc_name(ino).c_str(), flags | O_CLOEXEC | O_NOCTTY);
  } else {
    return ino.type == S_IFLNK ? -ELOOP : -ENXIO;
  }
  if (fd < 0) return host_error();
  out->reset(fd);
  return 0;
}

int Volume::setattr(uint64_t nodeid, const SetAttr& a, struct stat* st) {
  Inode* i = inode(nodeid);
  if (!i) return -ESTALE;
  if (read_only_) return -EROFS;
  const bool link = i->type == S_IFLNK;
  Handle* h = a.has_fh ? handle(a.fh, false) : nullptr;
  if (a.has_fh && !h) return -EBADF;

  if (a.mode || a.kill_suid) {
    if (link) return -EOPNOTSUPP;  // Linux has no lchmod
    struct stat cur;
    if (::fstatat(i->fd.get(), "", &cur, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) return host_error();
    mode_t m = a.mode ? guest_mode(a.mode_value, i->type == S_IFDIR) : (cur.st_mode & 07777);
    if (a.kill_suid) m &= ~(S_ISUID | S_ISGID);
    if (a.mode || m != (cur.st_mode & 07777)) {
      int r = h ? ::fchmod(h->fd.get(), m) : ::fchmodat(proc_fd_.get(), proc_name(*i).c_str(), m, 0);
      if (r < 0) return host_error();
    }
  }
  if (a.uid || a.gid) {
    uid_t uid = a.uid ? a.uid_value : static_cast<uid_t>(-1);
    gid_t gid = a.gid ? a.gid_value : static_cast<gid_t>(-1);
    if (::fchownat(i->fd.get(), "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) return host_error();
  }
  if (a.size) {
    if (i->type == S_IFDIR) return -EISDIR;
    if (i->type != S_IFREG) return -EINVAL;
    if (a.size_value > static_cast<uint64_t>(INT64_MAX)) return -EINVAL;
    int r;
    if (h && h->writable) {
      r = ::ftruncate(h->fd.get(), static_cast<off_t>(a.size_value));
    } else {
      UniqueFd fd;
      if (int e = reopen(*i, O_WRONLY, &fd); e < 0) return e;
      r = ::ftruncate(fd.get(), static_cast<off_t>(a.size_value));
    }
    if (r < 0) return host_error();
  }
  if (a.atime || a.mtime) {
    struct timespec ts[2];
    ts[0] = a.atime ? (a.atime_now ? timespec{0, UTIME_NOW} : a.atime_value) : timespec{0, UTIME_OMIT};
    ts[1] = a.mtime ? (a.mtime_now ? timespec{0, UTIME_NOW} : a.mtime_value) : timespec{0, UTIME_OMIT};
    for (auto& t : ts)
      if (t.tv_nsec != UTIME_NOW && t.tv_nsec != UTIME_OMIT && (t.tv_nsec < 0 || t.tv_nsec >= 1000000000))
        return -EINVAL;
    if (::utimensat(i->fd.get(), "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) return host_error();
  }
  return getattr(nodeid, st);
}

int Volume::readlink(uint64_t nodeid, std::string* target) {
  Inode* i = inode(nodeid);
  if (!i) return -ESTALE;
  if (i->type != S_IFLNK) return -EINVAL;
  char buf[kMaxLinkLen + 1];
  ssize_t n = ::readlinkat(i->fd.get(), "", buf, sizeof buf);
  if (n < 0) return host_error();
  if (static_cast<size_t>(n) > kMaxLinkLen) return -ENAMETOOLONG;
  target->assign(buf, static_cast<size_t>(n));
  return 0;
}

int Volume::statfs(uint64_t nodeid, struct statfs* out) {
  Inode* i = inode(nodeid);
  if (!i) return -ESTALE;
  if (::fstatfs(i->fd.get(), out) < 0) return host_error();
  return 0;
}

int Volume::access(uint64_t nodeid, uint32_t mask) {
  Inode* i = inode(nodeid);
  if (!i) return -ESTALE;
  if (mask & ~static_cast<uint32_t>(R_OK | W_OK | X_OK)) return -EINVAL;
  if ((mask & W_OK) && read_only_) return -EROFS;
  if (i->type == S_IFLNK || mask == F_OK) return 0;
  if (::faccessat(proc_fd_.get(), proc_name(*i).c_str(), static_cast<int>(mask), AT_EACCESS) < 0) return host_error();
  return 0;
}

int Volume::mkdir(uint64_t parent, std::string_view name, uint32_t mode, Entry* out) {
  if (!valid_name(name)) return name.size() > kMaxNameLen ? -ENAMETOOLONG : -EINVAL;
  int err;
  Inode* dir = dir_inode(parent, &err);
  if (!dir) return err;
  if (read_only_) return -EROFS;
  if (::mkdirat(dir->fd.get(), std::string(name).c_str(), guest_mode(mode, true)) < 0) return host_error();
  return lookup_fd(dir, name, out);
}

int Volume::mknod(uint64_t parent, std::string_view name, uint32_t mode, Entry* out) {
  if (!valid_name(name)) return name.size() > kMaxNameLen ? -ENAMETOOLONG : -EINVAL;
  int err;
  Inode* dir = dir_inode(parent, &err);
  if (!dir) return err;
  if (read_only_) return -EROFS;
  mode_t type = mode & S_IFMT;
  if (type == 0) type = S_IFREG;
  if (type == S_IFCHR || type == S_IFBLK) return -EPERM;
  if (type != S_IFREG && type != S_IFIFO && type != S_IFSOCK) return -EINVAL;
  if (::mknodat(dir->fd.get(), std::string(name).c_str(), type | guest_mode(mode, false), 0) < 0) return host_error();
  return lookup_fd(dir, name, out);
}

int Volume::symlink(uint64_t parent, std::string_view name, std::string_view target, Entry* out) {
  if (!valid_name(name)) return name.size() > kMaxNameLen ? -ENAMETOOLONG : -EINVAL;
  if (target.empty() || target.find('\0') != std::string_view::npos) return -EINVAL;
  if (target.size() > kMaxLinkLen) return -ENAMETOOLONG;
  int err;
  Inode* dir = dir_inode(parent, &err);
  if (!dir) return err;
  if (read_only_) return -EROFS;
  if (::symlinkat(std::string(target).c_str(), dir->fd.get(), std::string(name).c_str()) < 0) return host_error();
  return lookup_fd(dir, name, out);
}

int Volume::link(uint64_t nodeid, uint64_t new_parent, std::string_view new_name, Entry* out) {
  if (!valid_name(new_name)) return new_name.size() > kMaxNameLen ? -ENAMETOOLONG : -EINVAL;
  Inode* src = inode(nodeid);
  if (!src) return -ESTALE;
  int err;
  Inode* dir = dir_inode(new_parent, &err);
  if (!dir) return err;
  if (read_only_) return -EROFS;
  if (src->type == S_IFDIR) return -EPERM;
  // Through the inode's magic link (linkat with AT_EMPTY_PATH needs
  // CAP_DAC_READ_SEARCH): the link is made to this inode, by no name.
  if (::linkat(proc_fd_.get(), proc_name(*src).c_str(), dir->fd.get(), std::string(new_name).c_str(),
               AT_SYMLINK_FOLLOW) < 0)
    return host_error();
  return lookup_fd(dir, new_name, out);
}

int Volume::unlink(uint64_t parent, std::string_view name) {
  if (!valid_name(name)) return name.size() > kMaxNameLen ? -ENAMETOOLONG : -EINVAL;
  int err;
  Inode* dir = dir_inode(parent, &err);
  if (!dir) return err;
  if (read_only_) return -EROFS;
  if (::unlinkat(dir->fd.get(), std::string(name).c_str(), 0) < 0) return host_error();
  return 0;
}

int Volume::rmdir(uint64_t parent, std::string_view name) {
  if (!valid_name(name)) return name.size() > kMaxNameLen ? -ENAMETOOLONG : -EINVAL;
  int err;
  Inode* dir = dir_inode(parent, &err);
  if (!dir) return err;
  if (read_only_) return -EROFS;
  if (::unlinkat(dir->fd.get(), std::string(name).c_str(), AT_REMOVEDIR) < 0) return host_error();
  return 0;
}

int Volume::rename(uint64_t parent, std::string_view name, uint64_t new_parent, std::string_view new_name,
                   uint32_t flags) {
  if (!valid_name(name) || !valid_name(new_name))
    return name.size() > kMaxNameLen || new_name.size() > kMaxNameLen ? -ENAMETOOLONG : -EINVAL;
  if (flags & ~static_cast<uint32_t>(RENAME_NOREPLACE | RENAME_EXCHANGE)) return -EINVAL;
  int err;
  Inode* from = dir_inode(parent, &err);
  if (!from) return err;
  Inode* to = dir_inode(new_parent, &err);
  if (!to) return err;
  if (read_only_) return -EROFS;
  if (::syscall(SYS_renameat2, from->fd.get(), std::string(name).c_str(), to->fd.get(),
                std::string(new_name).c_str(), flags) < 0)
    return host_error();
  return 0;
}

int Volume::add_handle(UniqueFd fd, bool dir, bool writable, uint64_t* fh) {
  if (handles_.size() >= limits_.max_handles) return -ENFILE;
  uint64_t id = next_fh_++;
  Handle h;
  h.fd = std::move(fd);
  h.dir = dir;
  h.writable = writable;
  handles_.emplace(id, std::move(h));
  *fh = id;
  return 0;
}

int Volume::open(uint64_t nodeid, uint32_t wire_flags, uint64_t* fh) {
  Inode* i = inode(nodeid);
  if (!i) return -ESTALE;
  int flags = host_open_flags(wire_flags);
  if (flags < 0) return flags;
  if (i->type == S_IFDIR) return -EISDIR;
  if (read_only_ && writes(flags)) return -EROFS;
  if (handles_.size() >= limits_.max_handles) return -ENFILE;
  UniqueFd fd;
  if (int r = reopen(*i, flags, &fd); r < 0) return r;
  return add_handle(std::move(fd), false, (flags & O_ACCMODE) != O_RDONLY, fh);
}

int Volume::create(uint64_t parent, std::string_view name, uint32_t wire_flags, uint32_t mode, Entry* out,
                   uint64_t* fh) {
  if (!valid_name(name)) return name.size() > kMaxNameLen ? -ENAMETOOLONG : -EINVAL;
  int err;
  Inode* dir = dir_inode(parent, &err);
  if (!dir) return err;
  if (read_only_) return -EROFS;
  int flags = host_open_flags(wire_flags);
  if (flags < 0) return flags;
  if (handles_.size() >= limits_.max_handles || inodes_.size() >= limits_.max_inodes) return -ENFILE;
  const std::string n(name);
  UniqueFd fd;
  long created = open_beneath(dir->fd.get(), n, flags | O_CREAT | O_EXCL, guest_mode(mode, false));
  if (created >= 0) {
    fd.reset(static_cast<int>(created));
  } else {
    if (errno != EEXIST || (wire_flags & kWireExcl)) return host_error();
    // It exists: open what is there the way OPEN would, by its inode, so a
    // FIFO, device or link planted under the name is never opened.
    Entry e;
    if (int r = lookup_fd(dir, name, &e); r < 0) return r;
    Inode* i = inode(e.nodeid);
    int r = reopen(*i, flags, &fd);
    if (r == 0 && i->type != S_IFREG) r = -EISDIR;
    if (r < 0) {
      forget(e.nodeid, 1);
      return r;
    }
    *out = e;
    return add_handle(std::move(fd), false, (flags & O_ACCMODE) != O_RDONLY, fh);
  }
  // The entry is the inode just created, taken from the open file itself.
  UniqueFd path(::openat(proc_fd_.get(), std::to_string(fd.get()).c_str(), O_PATH | O_CLOEXEC));
  if (!path) return host_error();
  if (int r = enter(std::move(path), out); r < 0) return r;
  return add_handle(std::move(fd), false, (flags & O_ACCMODE) != O_RDONLY, fh);
}

int Volume::opendir(uint64_t nodeid, uint64_t* fh) {
  Inode* i = inode(nodeid);
  if (!i) return -ESTALE;
  if (i->type != S_IFDIR) return -ENOTDIR;
  if (handles_.size() >= limits_.max_handles) return -ENFILE;
  UniqueFd fd;
  if (int r = reopen(*i, O_RDONLY, &fd); r < 0) return r;
  return add_handle(std::move(fd), true, false, fh);
}

int Volume::release(uint64_t fh, bool dir) {
  auto it = handles_.find(fh);
  if (it == handles_.end() || it->second.dir != dir) return -EBADF;
  handles_.erase(it);
  return 0;
}

int64_t Volume::read(uint64_t fh, uint64_t off, const struct iovec* iov, int iovcnt) {
  Handle* h = handle(fh, false);
  if (!h) return -EBADF;
  if (off > static_cast<uint64_t>(INT64_MAX)) return -EINVAL;
  ssize_t n = ::preadv(h->fd.get(), iov, iovcnt, static_cast<off_t>(off));
  if (n < 0) return host_error();
  return n;
}

int64_t Volume::write(uint64_t fh, uint64_t off, const struct iovec* iov, int iovcnt) {
  if (read_only_) return -EROFS;
  Handle* h = handle(fh, false);
  if (!h) return -EBADF;
  if (off > static_cast<uint64_t>(INT64_MAX)) return -EINVAL;
  ssize_t n = ::pwritev(h->fd.get(), iov, iovcnt, static_cast<off_t>(off));
  if (n < 0) return host_error();
  return n;
}

int Volume::fsync(uint64_t fh, bool datasync, bool dir) {
  Handle* h = handle(fh, dir);
  if (!h) return -EBADF;
  if ((datasync ? ::fdatasync(h->fd.get()) : ::fsync(h->fd.get())) < 0) return host_error();
  return 0;
}

int Volume::fallocate(uint64_t fh, uint32_t mode, uint64_t off, uint64_t len) {
  if (read_only_) return -EROFS;
  Handle* h = handle(fh, false);
  if (!h) return -EBADF;
  constexpr uint32_t kKnown = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE |
                              FALLOC_FL_ZERO_RANGE | FALLOC_FL_INSERT_RANGE | FALLOC_FL_UNSHARE_RANGE;
  if (mode & ~kKnown) return -EOPNOTSUPP;
  if (off > static_cast<uint64_t>(INT64_MAX) || len > static_cast<uint64_t>(INT64_MAX)) return -EINVAL;
  if (::fallocate(h->fd.get(), static_cast<int>(mode), static_cast<off_t>(off), static_cast<off_t>(len)) < 0)
    return host_error();
  return 0;
}

int Volume::lseek(uint64_t fh, uint64_t off, uint32_t whence, uint64_t* out) {
  Handle* h = handle(fh, false);
  if (!h) return -EBADF;
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return -EINVAL;
  if (off > static_cast<uint64_t>(INT64_MAX)) return -EINVAL;
  off_t r = ::lseek(h->fd.get(), static_cast<off_t>(off), static_cast<int>(whence));
  if (r < 0) return host_error();
  *out = static_cast<uint64_t>(r);
  return 0;
}

int Volume::readdir(uint64_t fh, uint64_t offset, const std::function<bool(const DirEntry&)>& each) {
  Handle* h = handle(fh, true);
  if (!h) return -EBADF;
  // Offsets are the directory's own cookies (d_off), given back as they came.
  if (::lseek(h->fd.get(), static_cast<off_t>(offset), SEEK_SET) < 0) return host_error();
  for (;;) {
    long n = ::syscall(SYS_getdents64, h->fd.get(), dirbuf_.data(), dirbuf_.size());
    if (n < 0) return host_error();
    if (n == 0) return 0;
    size_t pos = 0;
    while (pos < static_cast<size_t>(n)) {
      // struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, name.
      constexpr size_t kNameAt = 19;
      if (static_cast<size_t>(n) - pos < kNameAt) return -EIO;
      const char* rec = dirbuf_.data() + pos;
      uint64_t ino, next;
      uint16_t reclen;
      std::memcpy(&ino, rec, 8);
      std::memcpy(&next, rec + 8, 8);
      std::memcpy(&reclen, rec + 16, 2);
      if (reclen < kNameAt + 1 || reclen > static_cast<size_t>(n) - pos) return -EIO;
      size_t namelen = strnlen(rec + kNameAt, reclen - kNameAt);
      DirEntry e;
      e.name = std::string_view(rec + kNameAt, namelen);
      e.ino = ino;
      e.type = static_cast<uint8_t>(rec[18]);
      e.next = next;
      if (!each(e)) return 0;
      pos += reclen;
    }
  }
}

}  // namespace spore::vmm::fuse
