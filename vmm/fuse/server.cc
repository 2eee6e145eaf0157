#include "vmm/fuse/server.h"

#include <linux/fuse.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string_view>

#include "base/log.h"

namespace spore::vmm::fuse {
namespace {

// The structures used here have had these sizes since 7.36 (INIT's flags2;
// the others since 7.31 or earlier), and 7.37 and 7.38 changed nothing a
// server must do: the arm64 cross headers (Linux 6.1.4) say 7.37.
static_assert(FUSE_KERNEL_VERSION == 7 && FUSE_KERNEL_MINOR_VERSION >= 36, "<linux/fuse.h> older than 7.36");
constexpr uint32_t kMinor = 38;  // what the server speaks (the guest kernel's, Linux 6.1)
constexpr size_t kInitInCompatSize = 16;  // before 7.36 INIT carried no flags2

// What the server asks of the guest's client: reads may be issued in
// parallel and ahead, O_TRUNC arrives with OPEN, writes up to max_write,
// READDIRPLUS when the kernel thinks it pays, the page cache dropped when
// the host changed a file. Not asked: locks (they stay inside the guest),
// the writeback cache, ACLs, security labels, DAX.
constexpr uint64_t kInitFlags = FUSE_ASYNC_READ | FUSE_ATOMIC_O_TRUNC | FUSE_BIG_WRITES | FUSE_AUTO_INVAL_DATA |
                                FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO | FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES;

uint64_t total_len(const struct iovec* v, size_t n) {
  uint64_t t = 0;
  for (size_t i = 0; i < n; i++) t += v[i].iov_len;
  return t;
}

// Calls fn(ptr, len) for each piece of [off, off+len) of the buffer list;
// false if the list is shorter.
template <class Fn>
bool each_piece(const struct iovec* v, size_t n, uint64_t off, uint64_t len, Fn&& fn) {
  size_t i = 0;
  while (i < n && off >= v[i].iov_len) off -= v[i++].iov_len;
  while (len > 0) {
    if (i >= n) return false;
    size_t k = static_cast<size_t>(std::min<uint64_t>(len, v[i].iov_len - off));
    fn(static_cast<char*>(v[i].iov_base) + off, k);
    len -= k;
    off = 0;
    i++;
  }
  return true;
}

bool gather(const struct iovec* v, size_t n, uint64_t off, void* dst, size_t len) {
  char* d = static_cast<char*>(dst);
  return each_piece(v, n, off, len, [&](char* p, size_t k) {
    std::memcpy(d, p, k);
    d += k;
  });
}

bool scatter(const struct iovec* v, size_t n, uint64_t off, const void* src, size_t len) {
  const char* s = static_cast<const char*>(src);
  return each_piece(v, n, off, len, [&](char* p, size_t k) {
    std::memcpy(p, s, k);
    s += k;
  });
}

bool slice(const struct iovec* v, size_t n, uint64_t off, uint64_t len, std::vector<struct iovec>* out) {
  out->clear();
  return each_piece(v, n, off, len, [&](char* p, size_t k) {
    if (k) out->push_back({p, k});
  });
}

// The request body, consumed front to back.
class Body {
 public:
  explicit Body(std::string_view b) : b_(b) {}
  template <class T>
  bool take(T* out) {
    if (b_.size() < sizeof(T)) return false;
    std::memcpy(out, b_.data(), sizeof(T));
    b_.remove_prefix(sizeof(T));
    return true;
  }
  // A NUL-terminated string (the NUL must be inside the body).
  bool name(std::string_view* out) {
    size_t nul = b_.find('\0');
    if (nul == std::string_view::npos) return false;
    *out = b_.substr(0, nul);
    b_.remove_prefix(nul + 1);
    return true;
  }
  size_t size() const { return b_.size(); }

 private:
  std::string_view b_;
};

uint32_t encode_dev(dev_t d) {
  // The kernel's new_encode_dev: minor's low byte, major, minor's high bits.
  uint32_t ma = major(d), mi = minor(d);
  return (mi & 0xff) | (ma << 8) | ((mi & ~0xffu) << 12);
}

void fill_attr(const struct stat& st, struct fuse_attr* a) {
  *a = {};
  a->ino = st.st_ino;
  a->size = static_cast<uint64_t>(st.st_size);
  a->blocks = static_cast<uint64_t>(st.st_blocks);
  a->atime = static_cast<uint64_t>(st.st_atim.tv_sec);
  a->mtime = static_cast<uint64_t>(st.st_mtim.tv_sec);
  a->ctime = static_cast<uint64_t>(st.st_ctim.tv_sec);
  a->atimensec = static_cast<uint32_t>(st.st_atim.tv_nsec);
  a->mtimensec = static_cast<uint32_t>(st.st_mtim.tv_nsec);
  a->ctimensec = static_cast<uint32_t>(st.st_ctim.tv_nsec);
  a->mode = st.st_mode;
  a->nlink = static_cast<uint32_t>(std::min<uint64_t>(st.st_nlink, UINT32_MAX));
  a->uid = st.st_uid;
  a->gid = st.st_gid;
  a->rdev = encode_dev(st.st_rdev);
  a->blksize = static_cast<uint32_t>(st.st_blksize);
}

void fill_entry(const Entry& e, struct fuse_entry_out* o) {
  *o = {};
  o->nodeid = e.nodeid;
  o->entry_valid = kEntryTimeoutSec;
  o->attr_valid = kEntryTimeoutSec;
  fill_attr(e.st, &o->attr);
}

bool takes_no_reply(uint32_t opcode) {
  return opcode == FUSE_FORGET || opcode == FUSE_BATCH_FORGET || opcode == FUSE_INTERRUPT ||
         opcode == FUSE_NOTIFY_REPLY;
}

// Writes replies into the request's writable buffers.
class Replier {
 public:
  Replier(const struct iovec* out, size_t n, uint64_t unique)
      : out_(out), n_(n), cap_(total_len(out, n)), unique_(unique) {}

  uint64_t payload_room() const { return cap_ > sizeof(fuse_out_header) ? cap_ - sizeof(fuse_out_header) : 0; }
  const struct iovec* buffers() const { return out_; }
  size_t count() const { return n_; }

  size_t error(int neg_errno) { return header(neg_errno, 0); }
  // A payload in up to two parts (CREATE answers an entry and an open).
  size_t ok(const void* a, size_t alen, const void* b = nullptr, size_t blen = 0) {
    if (alen + blen > payload_room()) {
      LOG_GUEST("virtio-fs: a reply of %zu bytes does not fit the guest's %llu", alen + blen,
                static_cast<unsigned long long>(payload_room()));
      return error(-EIO);
    }
    scatter(out_, n_, sizeof(fuse_out_header), a, alen);
    if (blen) scatter(out_, n_, sizeof(fuse_out_header) + alen, b, blen);
    return header(0, alen + blen);
  }
  // The payload is already in place after the header.
  size_t header(int neg_errno, size_t payload) {
    if (cap_ < sizeof(fuse_out_header)) return 0;
    fuse_out_header h{};
    h.len = static_cast<uint32_t>(sizeof h + payload);
    h.error = neg_errno;
    h.unique = unique_;
    scatter(out_, n_, 0, &h, sizeof h);
    return h.len;
  }

 private:
  const struct iovec* out_;
  size_t n_;
  uint64_t cap_;
  uint64_t unique_;
};

}  // namespace

void Server::reset() {
  initialized_ = false;
  if (volume_) volume_->reset();
}

void Server::bind(std::unique_ptr<Volume> volume) {
  volume_ = std::move(volume);
  initialized_ = false;
}

size_t Server::handle(const struct iovec* req, size_t req_count, const struct iovec* out, size_t out_count) {
  const uint64_t in_total = total_len(req, req_count);
  fuse_in_header h{};
  if (in_total < sizeof h || !gather(req, req_count, 0, &h, sizeof h)) {
    LOG_GUEST("virtio-fs: a request of %llu bytes has no FUSE header", static_cast<unsigned long long>(in_total));
    return 0;
  }
  const bool no_reply = takes_no_reply(h.opcode);
  Replier reply(out, out_count, h.unique);
  auto fail = [&](int err) -> size_t { return no_reply ? 0 : reply.error(err); };

  if (h.len < sizeof h || h.len > in_total) return fail(-EINVAL);
  if (h.opcode != FUSE_WRITE && h.len > kMaxRequest) return fail(-EINVAL);
  if (!volume_) return fail(-ENODEV);
  // The body: all of it, except a WRITE's data, which stays where it is.
  size_t body_len = h.len - sizeof h;
  if (h.opcode == FUSE_WRITE) body_len = std::min(body_len, sizeof(fuse_write_in));
  body_.resize(body_len);
  if (!gather(req, req_count, sizeof h, body_.data(), body_len)) return fail(-EINVAL);
  Body b(body_);

  if (h.opcode == FUSE_INIT) {
    fuse_init_in init{};
    if (b.size() < kInitInCompatSize) return fail(-EINVAL);
    std::memcpy(&init, body_.data(), std::min(b.size(), sizeof init));
    if (init.major != FUSE_KERNEL_VERSION || init.minor < kMinMinor) {
      LOG_GUEST("virtio-fs: the guest speaks FUSE %u.%u; 7.%u or later is needed", init.major, init.minor, kMinMinor);
      return reply.error(-EPROTO);
    }
    volume_->reset();
    initialized_ = true;
    fuse_init_out o{};
    o.major = FUSE_KERNEL_VERSION;
    o.minor = std::min(init.minor, kMinor);
    o.max_readahead = std::min(init.max_readahead, kMaxWrite);
    o.flags = static_cast<uint32_t>(init.flags & kInitFlags);
    o.max_background = 16;
    o.congestion_threshold = 12;
    o.max_write = kMaxWrite;
    o.time_gran = 1;
    o.max_pages = static_cast<uint16_t>(kMaxWrite / 4096);
    return reply.ok(&o, sizeof o);
  }
  if (h.opcode == FUSE_DESTROY) {
    reset();
    return reply.error(0);
  }
  if (!initialized_) return fail(-EIO);

  Volume& v = *volume_;
  const uint64_t node = h.nodeid;
  switch (h.opcode) {
    case FUSE_FORGET: {
      fuse_forget_in f;
      if (b.take(&f)) v.forget(node, f.nlookup);
      return 0;
    }
    case FUSE_BATCH_FORGET: {
      fuse_batch_forget_in bf;
      if (!b.take(&bf)) return 0;
      for (uint32_t i = 0; i < bf.count; i++) {
        fuse_forget_one one;
        if (!b.take(&one)) break;
        v.forget(one.nodeid, one.nlookup);
      }
      return 0;
    }
    case FUSE_INTERRUPT:
    case FUSE_NOTIFY_REPLY:
      return 0;

    case FUSE_LOOKUP: {
      std::string_view name;
      if (!b.name(&name)) return fail(-EINVAL);
      Entry e;
      if (int r = v.lookup(node, name, &e); r < 0) return reply.error(r);
      fuse_entry_out o;
      fill_entry(e, &o);
      return reply.ok(&o, sizeof o);
    }
    case FUSE_GETATTR: {
      struct stat st;
      if (int r = v.getattr(node, &st); r < 0) return reply.error(r);
      fuse_attr_out o{};
      o.attr_valid = kEntryTimeoutSec;
      fill_attr(st, &o.attr);
      return reply.ok(&o, sizeof o);
    }
    case FUSE_SETATTR: {
      fuse_setattr_in in;
      if (!b.take(&in)) return fail(-EINVAL);
      SetAttr a;
      a.mode = in.valid & FATTR_MODE;
      a.uid = in.valid & FATTR_UID;
      a.gid = in.valid & FATTR_GID;
      a.size = in.valid & FATTR_SIZE;
      a.atime = in.valid & FATTR_ATIME;
      a.mtime = in.valid & FATTR_MTIME;
      a.atime_now = in.valid & FATTR_ATIME_NOW;
      a.mtime_now = in.valid & FATTR_MTIME_NOW;
      a.kill_suid = in.valid & FATTR_KILL_SUIDGID;
      a.has_fh = in.valid & FATTR_FH;
      a.mode_value = in.mode;
      a.uid_value = in.uid;
      a.gid_value = in.gid;
      a.size_value = in.size;
      a.fh = in.fh;
      a.atime_value = {static_cast<time_t>(in.atime), static_cast<long>(in.atimensec)};
      a.mtime_value = {static_cast<time_t>(in.mtime), static_cast<long>(in.mtimensec)};
      struct stat st;
      if (int r = v.setattr(node, a, &st); r < 0) return reply.error(r);
      fuse_attr_out o{};
      o.attr_valid = kEntryTimeoutSec;
      fill_attr(st, &o.attr);
      return reply.ok(&o, sizeof o);
    }
    case FUSE_READLINK: {
      std::string target;
      if (int r = v.readlink(node, &target); r < 0) return reply.error(r);
      return reply.ok(target.data(), target.size());
    }
    case FUSE_STATFS: {
      struct statfs s;
      if (int r = v.statfs(node, &s); r < 0) return reply.error(r);
      fuse_statfs_out o{};
      o.st.blocks = s.f_blocks;
      o.st.bfree = s.f_bfree;
      o.st.bavail = s.f_bavail;
      o.st.files = s.f_files;
      o.st.ffree = s.f_ffree;
      o.st.bsize = static_cast<uint32_t>(s.f_bsize);
      o.st.namelen = static_cast<uint32_t>(s.f_namelen);
      o.st.frsize = static_cast<uint32_t>(s.f_frsize);
      return reply.ok(&o, sizeof o);
    }
    case FUSE_ACCESS: {
      fuse_access_in in;
      if (!b.take(&in)) return fail(-EINVAL);
      return reply.error(v.access(node, in.mask));
    }

    case FUSE_MKDIR:
    case FUSE_MKNOD:
    case FUSE_SYMLINK:
    case FUSE_LINK: {
      std::string_view name;
      Entry e;
      int r;
      if (h.opcode == FUSE_MKDIR) {
        fuse_mkdir_in in;
        if (!b.take(&in) || !b.name(&name)) return fail(-EINVAL);
        r = v.mkdir(node, name, in.mode, &e);
      } else if (h.opcode == FUSE_MKNOD) {
        fuse_mknod_in in;
        if (!b.take(&in) || !b.name(&name)) return fail(-EINVAL);
        r = v.mknod(node, name, in.mode, &e);
      } else if (h.opcode == FUSE_SYMLINK) {
        std::string_view target;
        if (!b.name(&name) || !b.name(&target)) return fail(-EINVAL);
        r = v.symlink(node, name, target, &e);
      } else {
        fuse_link_in in;
        if (!b.take(&in) || !b.name(&name)) return fail(-EINVAL);
        r = v.link(in.oldnodeid, node, name, &e);
      }
      if (r < 0) return reply.error(r);
      fuse_entry_out o;
      fill_entry(e, &o);
      return reply.ok(&o, sizeof o);
    }
    case FUSE_UNLINK:
    case FUSE_RMDIR: {
      std::string_view name;
      if (!b.name(&name)) return fail(-EINVAL);
      return reply.error(h.opcode == FUSE_UNLINK ? v.unlink(node, name) : v.rmdir(node, name));
    }
    case FUSE_RENAME:
    case FUSE_RENAME2: {
      uint64_t newdir;
      uint32_t flags = 0;
      if (h.opcode == FUSE_RENAME) {
        fuse_rename_in in;
        if (!b.take(&in)) return fail(-EINVAL);
        newdir = in.newdir;
      } else {
        fuse_rename2_in in;
        if (!b.take(&in)) return fail(-EINVAL);
        newdir = in.newdir;
        flags = in.flags;
      }
      std::string_view from, to;
      if (!b.name(&from) || !b.name(&to)) return fail(-EINVAL);
      return reply.error(v.rename(node, from, newdir, to, flags));
    }

    case FUSE_OPEN:
    case FUSE_OPENDIR: {
      fuse_open_in in;
      if (!b.take(&in)) return fail(-EINVAL);
      fuse_open_out o{};
      int r = h.opcode == FUSE_OPEN ? v.open(node, in.flags, &o.fh) : v.opendir(node, &o.fh);
      if (r < 0) return reply.error(r);
      return reply.ok(&o, sizeof o);
    }
    case FUSE_CREATE: {
      fuse_create_in in;
      std::string_view name;
      if (!b.take(&in) || !b.name(&name)) return fail(-EINVAL);
      Entry e;
      fuse_open_out oo{};
      if (int r = v.create(node, name, in.flags, in.mode, &e, &oo.fh); r < 0) return reply.error(r);
      fuse_entry_out eo;
      fill_entry(e, &eo);
      return reply.ok(&eo, sizeof eo, &oo, sizeof oo);
    }
    case FUSE_RELEASE:
    case FUSE_RELEASEDIR: {
      fuse_release_in in;
      if (!b.take(&in)) return fail(-EINVAL);
      return reply.error(v.release(in.fh, h.opcode == FUSE_RELEASEDIR));
    }
    case FUSE_FLUSH: {
      // close() in the guest: nothing is buffered here, data went out with WRITE.
      fuse_flush_in in;
      if (!b.take(&in)) return fail(-EINVAL);
      return reply.error(0);
    }
    case FUSE_FSYNC:
    case FUSE_FSYNCDIR: {
      fuse_fsync_in in;
      if (!b.take(&in)) return fail(-EINVAL);
      return reply.error(v.fsync(in.fh, in.fsync_flags & 1, h.opcode == FUSE_FSYNCDIR));
    }
    case FUSE_READ: {
      fuse_read_in in;
      if (!b.take(&in)) return fail(-EINVAL);
      uint64_t n = std::min<uint64_t>({in.size, kMaxWrite, reply.payload_room()});
      if (!slice(reply.buffers(), reply.count(), sizeof(fuse_out_header), n, &iov_)) return reply.error(-EIO);
      int64_t got = n ? v.read(in.fh, in.offset, iov_.data(), static_cast<int>(iov_.size())) : 0;
      if (got < 0) return reply.error(static_cast<int>(got));
      return reply.header(0, static_cast<size_t>(got));
    }
    case FUSE_WRITE: {
      fuse_write_in in;
      if (!b.take(&in)) return fail(-EINVAL);
      const uint64_t data_at = sizeof h + sizeof in;
      if (in.size > kMaxWrite || data_at + in.size > h.len) return reply.error(-EINVAL);
      if (!slice(req, req_count, data_at, in.size, &iov_)) return reply.error(-EINVAL);
      int64_t put = in.size ? v.write(in.fh, in.offset, iov_.data(), static_cast<int>(iov_.size())) : 0;
      if (put < 0) return reply.error(static_cast<int>(put));
      fuse_write_out o{};
      o.size = static_cast<uint32_t>(put);
      return reply.ok(&o, sizeof o);
    }
    case FUSE_READDIR:
    case FUSE_READDIRPLUS: {
      fuse_read_in in;
      if (!b.take(&in)) return fail(-EINVAL);
      const bool plus = h.opcode == FUSE_READDIRPLUS;
      const size_t cap = static_cast<size_t>(std::min<uint64_t>({in.size, kMaxReaddir, reply.payload_room()}));
      reply_.clear();
      int r = v.readdir(in.fh, in.offset, [&](const DirEntry& d) {
        const size_t fixed = plus ? sizeof(fuse_entry_out) + FUSE_NAME_OFFSET : FUSE_NAME_OFFSET;
        const size_t rec = FUSE_DIRENT_ALIGN(fixed + d.name.size());
        if (reply_.size() + rec > cap) return false;
        size_t at = reply_.size();
        reply_.resize(at + rec, '\0');
        char* p = reply_.data() + at;
        if (plus) {
          fuse_entry_out eo{};
          Entry e;
          // The guest counts one lookup per entry that carries a node id;
          // "." and ".." carry none, nor does an entry gone meanwhile.
          if (d.name != "." && d.name != ".." && v.lookup(node, d.name, &e) == 0) fill_entry(e, &eo);
          std::memcpy(p, &eo, sizeof eo);
          p += sizeof eo;
        }
        fuse_dirent de{};
        de.ino = d.ino;
        de.off = d.next;
        de.namelen = static_cast<uint32_t>(d.name.size());
        de.type = d.type;
        std::memcpy(p, &de, FUSE_NAME_OFFSET);
        std::memcpy(p + FUSE_NAME_OFFSET, d.name.data(), d.name.size());
        return true;
      });
      if (r < 0 && reply_.empty()) return reply.error(r);
      return reply.ok(reply_.data(), reply_.size());
    }
    case FUSE_FALLOCATE: {
      fuse_fallocate_in in;
      if (!b.take(&in)) return fail(-EINVAL);
      return reply.error(v.fallocate(in.fh, in.mode, in.offset, in.length));
    }
    case FUSE_LSEEK: {
      fuse_lseek_in in;
      if (!b.take(&in)) return fail(-EINVAL);
      fuse_lseek_out o{};
      if (int r = v.lseek(in.fh, in.offset, in.whence, &o.offset); r < 0) return reply.error(r);
      return reply.ok(&o, sizeof o);
    }
    default:
      // Extended attributes, locks, ioctl, poll, copy_file_range, DAX
      // mappings, syncfs, tmpfile, bmap: not served. ENOSYS makes the
      // guest's client stop asking (xattr calls then fail EOPNOTSUPP,
      // locks stay local to the guest).
      return reply.error(-ENOSYS);
  }
}

}  // namespace spore::vmm::fuse
