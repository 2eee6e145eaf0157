// A host directory served to a guest (doc/volumes.md): the inodes the guest
// has looked up, each pinned by an O_PATH descriptor, the files and
// directories it has open, and every operation on them.
//
// Confinement is structural: the guest never hands the host a path. Every
// name is one component (no '/', not "." or ".."), resolved relative to a
// directory descriptor the volume already holds, with openat2's
// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS and
// O_NOFOLLOW. A symlink is looked up as itself (an O_PATH descriptor of the
// link) and its target handed to the guest to resolve; the host never
// follows one. Files are opened again from their own inode's descriptor
// (through /proc/self/fd, or "." for directories), never by name, and only
// regular files and directories are ever opened.
//
// A read-only volume refuses every change with EROFS before any call is
// made. Inodes and open handles are capped; at the cap the guest gets
// ENFILE. Set-user-ID and set-group-ID bits are never set on a file from
// the guest (set-group-ID stays possible on directories).
//
// Every operation returns 0 or a negative errno in the guest's numbering
// (Linux's, the same on every architecture spore runs). Not thread-safe:
// one caller at a time (the device serves it under its transport lock).
#pragma once

#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace spore::vmm::fuse {

inline constexpr uint64_t kRootNodeId = 1;  // FUSE_ROOT_ID
inline constexpr size_t kMaxNameLen = 255;   // NAME_MAX
inline constexpr size_t kMaxLinkLen = 4095;  // PATH_MAX minus the NUL

struct Limits {
  uint32_t max_inodes = 32768;  // looked-up inodes (one O_PATH descriptor each), the root included
  uint32_t max_handles = 4096;  // open files and directories
};

// Open flags as the guest sends them (Linux's generic values; the ones
// whose numbers differ between architectures are never interpreted).
inline constexpr uint32_t kWireAccMode = 03;
inline constexpr uint32_t kWireCreat = 0100;
inline constexpr uint32_t kWireExcl = 0200;
inline constexpr uint32_t kWireTrunc = 01000;
inline constexpr uint32_t kWireAppend = 02000;
inline constexpr uint32_t kWireDsync = 010000;
inline constexpr uint32_t kWireSync = 04000000;  // __O_SYNC (O_SYNC = this | O_DSYNC)

struct Entry {
  uint64_t nodeid = 0;
  struct stat st {};
};

// Which attributes a SETATTR changes (FATTR_* bits, decoded).
struct SetAttr {
  bool mode = false, uid = false, gid = false, size = false;
  bool atime = false, atime_now = false, mtime = false, mtime_now = false;
  bool kill_suid = false;
  uint32_t mode_value = 0, uid_value = 0, gid_value = 0;
  uint64_t size_value = 0;
  struct timespec atime_value {}, mtime_value {};
  bool has_fh = false;
  uint64_t fh = 0;
};

// One directory entry as getdents64 gives it; next is the offset to
// resume after it.
struct DirEntry {
  std::string_view name;
  uint64_t ino = 0;
  uint8_t type = 0;  // DT_*
  uint64_t next = 0;
};

class Volume {
 public:
  // Opens host_path (a directory; the user's own argument, so symlinks in
  // it are followed once, here) and /proc/self/fd. Errors name the path.
  static Result<std::unique_ptr<Volume>> open(const std::string& host_path, bool read_only, const Limits& limits = {});
  ~Volume();

  bool read_only() const { return read_only_; }
  const Limits& limits() const { return limits_; }
  size_t inode_count() const { return inodes_.size(); }
  size_t handle_count() const { return handles_.size(); }

  // Forgets every inode but the root and closes every handle (a new FUSE
  // session, or the device reset).
  void reset();

  int lookup(uint64_t parent, std::string_view name, Entry* out);
  // Drops n lookups of nodeid (FORGET); at zero the inode is released.
  void forget(uint64_t nodeid, uint64_t n);
  int getattr(uint64_t nodeid, struct stat* st);
  int setattr(uint64_t nodeid, const SetAttr& attr, struct stat* st);
  int readlink(uint64_t nodeid, std::string* target);
  int statfs(uint64_t nodeid, struct statfs* out);
  int access(uint64_t nodeid, uint32_t mask);

  int mkdir(uint64_t parent, std::string_view name, uint32_t mode, Entry* out);
  // Regular files, FIFOs and sockets only; device nodes get EPERM.
  int mknod(uint64_t parent, std::string_view name, uint32_t mode, Entry* out);
  int symlink(uint64_t parent, std::string_view name, std::string_view target, Entry* out);
  int link(uint64_t nodeid, uint64_t new_parent, std::string_view new_name, Entry* out);
  int unlink(uint64_t parent, std::string_view name);
  int rmdir(uint64_t parent, std::string_view name);
  // flags: RENAME_NOREPLACE and RENAME_EXCHANGE (others: EINVAL).
  int rename(uint64_t parent, std::string_view name, uint64_t new_parent, std::string_view new_name, uint32_t flags);

  // flags are wire open flags (kWire*); O_CREAT and O_EXCL are ignored.
  int open(uint64_t nodeid, uint32_t flags, uint64_t* fh);
  int create(uint64_t parent, std::string_view name, uint32_t flags, uint32_t mode, Entry* out, uint64_t* fh);
  int opendir(uint64_t nodeid, uint64_t* fh);
  int release(uint64_t fh, bool dir);
  // Reads into / writes from the given buffers at off; returns the byte
  // count or a negative errno.
  int64_t read(uint64_t fh, uint64_t off, const struct iovec* iov, int iovcnt);
  int64_t write(uint64_t fh, uint64_t off, const struct iovec* iov, int iovcnt);
  int fsync(uint64_t fh, bool datasync, bool dir);
  int fallocate(uint64_t fh, uint32_t mode, uint64_t off, uint64_t len);
  int lseek(uint64_t fh, uint64_t off, uint32_t whence, uint64_t* out);
  // Calls each() for the entries from offset on until it returns false
  // (that entry is not consumed) or the directory ends.
  int readdir(uint64_t fh, uint64_t offset, const std::function<bool(const DirEntry&)>& each);

 private:
  struct Inode {
    UniqueFd fd;  // O_PATH | O_NOFOLLOW
    dev_t dev = 0;
    ino_t ino = 0;
    mode_t type = 0;  // S_IFMT bits; fixed for the life of the inode
    uint64_t nlookup = 0;
  };
  struct Handle {
    UniqueFd fd;
    bool dir = false;
    bool writable = false;
  };
  struct Key {
    dev_t dev;
    ino_t ino;
    bool operator==(const Key& o) const { return dev == o.dev && ino == o.ino; }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const { return std::hash<uint64_t>()(k.ino * 31 + k.dev); }
  };

  Volume() = default;
  Inode* inode(uint64_t nodeid);
  Handle* handle(uint64_t fh, bool dir);
  // Opens parent/name as O_PATH beneath parent, never following a link.
  int resolve(int parent_fd, std::string_view name, UniqueFd* out);
  // Registers (or finds) the inode behind fd and counts one lookup.
  int enter(UniqueFd fd, Entry* out);
  int lookup_fd(Inode* dir, std::string_view name, Entry* out);
  Inode* dir_inode(uint64_t nodeid, int* err);
  // Opens the inode itself (never by name) with host open flags.
  int reopen(const Inode& ino, int flags, UniqueFd* out);
  int add_handle(UniqueFd fd, bool dir, bool writable, uint64_t* fh);
  std::string proc_name(const Inode& ino) const;

  bool read_only_ = false;
  Limits limits_;
  UniqueFd proc_fd_;  // /proc/self/fd (O_PATH)
  std::unordered_map<uint64_t, Inode> inodes_;
  std::unordered_map<Key, uint64_t, KeyHash> by_key_;
  std::unordered_map<uint64_t, Handle> handles_;
  uint64_t next_nodeid_ = kRootNodeId + 1;
  uint64_t next_fh_ = 1;
  std::vector<char> dirbuf_;
};

}  // namespace spore::vmm::fuse
