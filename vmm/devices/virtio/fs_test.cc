#include "vmm/devices/virtio/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/fuse.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "base/fd.h"
#include "tests/virtio_driver.h"

using namespace spore;
using namespace spore::vmm;
using namespace spore::vmm::virtio;
namespace fs = std::filesystem;

namespace {

constexpr uint16_t kQSize = 64;
constexpr uint64_t kRoot = FUSE_ROOT_ID;
constexpr uint32_t kScratch = 1300 << 10;  // room for one max_write request, or one max_write reply

// A host directory for a test, removed afterwards.
struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/spore-fs-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& rel) const { return path + "/" + rel; }
  void write(const std::string& rel, const std::string& data) const {
    std::ofstream f(path + "/" + rel, std::ios::binary);
    f << data;
  }
  std::string read(const std::string& rel) const {
    std::ifstream f(path + "/" + rel, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  std::string path;
};

struct Reply {
  int error = 0;
  std::string data;
  template <class T>
  T as() const {
    T v{};
    REQUIRE(data.size() >= sizeof v);
    std::memcpy(&v, data.data(), sizeof v);
    return v;
  }
};

template <class T>
std::string bytes(const T& v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}
std::string cstr(const std::string& s) { return s + std::string(1, '\0'); }

// A virtio-fs device on a real MMIO transport, with a FUSE client that lays
// requests out the way Linux's virtiofs driver does: the in header and the
// arguments in separate descriptors, then the out header and the reply's
// arguments as writable ones.
struct FsRig {
  explicit FsRig(const std::string& dir = "", bool ro = false, fuse::Limits limits = {}) {
    auto dev = std::make_unique<Fs>("work");
    fsdev = dev.get();
    if (!dir.empty()) {
      auto v = fuse::Volume::open(dir, ro, limits);
      REQUIRE(v.ok());
      fsdev->bind(std::move(*v));
    }
    auto t = MmioTransport::create(std::move(dev), g.mem, *g.loop, std::make_unique<test::CountingIrq>(&irqs));
    REQUIRE(t.ok());
    transport = std::move(*t);
    drv = std::make_unique<test::TestDriver>(g, *transport);
    drv->begin();
    drv->setup_queue(0, kQSize);
    drv->setup_queue(1, kQSize);
    drv->driver_ok();
    REQUIRE((drv->status() & kStatusDriverOk));
    in_area = g.alloc(kScratch, 4096);
    out_area = g.alloc(kScratch, 4096);
  }

  // Sends a raw request: in_bufs readable, then an out header and a reply
  // area of reply_len as writable buffers (none if reply_len < 0).
  // Returns the used length.
  uint32_t raw(const std::vector<std::string>& in_bufs, int64_t reply_len, uint32_t q = 1,
               uint32_t out_header_len = sizeof(fuse_out_header)) {
    std::vector<test::Buf> bufs;
    uint64_t at = in_area;
    for (const auto& b : in_bufs) {
      std::memcpy(g.host(at), b.data(), b.size());
      bufs.push_back({at, static_cast<uint32_t>(b.size()), false});
      at += b.size();
    }
    std::memset(g.host(out_area), 0xa5, 64);
    if (reply_len >= 0) {
      bufs.push_back({out_area, out_header_len, true});
      if (reply_len > 0) bufs.push_back({out_area + out_header_len, static_cast<uint32_t>(reply_len), true});
    }
    drv->add(q, bufs);
    drv->kick(q);
    auto used = drv->used(q);
    REQUIRE(used.size() == 1);
    return used[0].second;
  }

  // One FUSE request with its reply.
  Reply call(uint32_t opcode, uint64_t nodeid, const std::string& args, uint32_t reply_len = 4096,
             const std::string& data = "") {
    fuse_in_header h{};
    h.len = static_cast<uint32_t>(sizeof h + args.size() + data.size());
    h.opcode = opcode;
    h.unique = ++unique;
    h.nodeid = nodeid;
    std::vector<std::string> in = {bytes(h)};
    if (!args.empty()) in.push_back(args);
    if (!data.empty()) in.push_back(data);
    uint32_t used = raw(in, reply_len);
    Reply r;
    REQUIRE(used >= sizeof(fuse_out_header));
    fuse_out_header oh;
    std::memcpy(&oh, g.host(out_area), sizeof oh);
    CHECK(oh.unique == h.unique);
    CHECK(oh.len == used);
    r.error = -oh.error;
    r.data.assign(reinterpret_cast<char*>(g.host(out_area + sizeof oh)), used - sizeof oh);
    return r;
  }
  // A request that takes no reply (FORGET), on the hiprio queue.
  void send_no_reply(uint32_t opcode, uint64_t nodeid, const std::string& args) {
    fuse_in_header h{};
    h.len = static_cast<uint32_t>(sizeof h + args.size());
    h.opcode = opcode;
    h.unique = ++unique;
    h.nodeid = nodeid;
    CHECK(raw({bytes(h), args}, -1, 0) == 0);
  }

  Reply init(uint32_t major = 7, uint32_t minor = 38) {
    fuse_init_in in{};
    in.major = major;
    in.minor = minor;
    in.max_readahead = 128 << 10;
    in.flags = FUSE_ASYNC_READ | FUSE_POSIX_LOCKS | FUSE_ATOMIC_O_TRUNC | FUSE_BIG_WRITES | FUSE_DO_READDIRPLUS |
               FUSE_WRITEBACK_CACHE | FUSE_MAX_PAGES | FUSE_POSIX_ACL;
    return call(FUSE_INIT, 0, bytes(in));
  }
  void start() { REQUIRE(init().error == 0); }

  // Returns (errno, entry).
  std::pair<int, fuse_entry_out> entry_reply(const Reply& r) {
    if (r.error) return {r.error, {}};
    return {0, r.as<fuse_entry_out>()};
  }
  std::pair<int, fuse_entry_out> lookup(uint64_t parent, const std::string& name) {
    return entry_reply(call(FUSE_LOOKUP, parent, cstr(name)));
  }
  uint64_t node(uint64_t parent, const std::string& name) {
    auto [err, e] = lookup(parent, name);
    REQUIRE(err == 0);
    return e.nodeid;
  }
  std::pair<int, fuse_attr> getattr(uint64_t nodeid) {
    fuse_getattr_in in{};
    Reply r = call(FUSE_GETATTR, nodeid, bytes(in));
    if (r.error) return {r.error, {}};
    return {0, r.as<fuse_attr_out>().attr};
  }
  std::pair<int, fuse_entry_out> mkdir(uint64_t parent, const std::string& name, uint32_t mode = 0755) {
    fuse_mkdir_in in{};
    in.mode = mode;
    return entry_reply(call(FUSE_MKDIR, parent, bytes(in) + cstr(name)));
  }
  std::pair<int, fuse_entry_out> mknod(uint64_t parent, const std::string& name, uint32_t mode, uint32_t rdev = 0) {
    fuse_mknod_in in{};
    in.mode = mode;
    in.rdev = rdev;
    return entry_reply(call(FUSE_MKNOD, parent, bytes(in) + cstr(name)));
  }
  std::pair<int, fuse_entry_out> symlink(uint64_t parent, const std::string& name, const std::string& target) {
    return entry_reply(call(FUSE_SYMLINK, parent, cstr(name) + cstr(target)));
  }
  std::pair<int, fuse_entry_out> link(uint64_t nodeid, uint64_t new_parent, const std::string& name) {
    fuse_link_in in{};
    in.oldnodeid = nodeid;
    return entry_reply(call(FUSE_LINK, new_parent, bytes(in) + cstr(name)));
  }
  Reply readlink(uint64_t nodeid) { return call(FUSE_READLINK, nodeid, ""); }
  int unlink(uint64_t parent, const std::string& name) { return call(FUSE_UNLINK, parent, cstr(name)).error; }
  int rmdir(uint64_t parent, const std::string& name) { return call(FUSE_RMDIR, parent, cstr(name)).error; }
  int rename(uint64_t parent, const std::string& from, uint64_t new_parent, const std::string& to,
             uint32_t flags = 0) {
    fuse_rename2_in in{};
    in.newdir = new_parent;
    in.flags = flags;
    return call(FUSE_RENAME2, parent, bytes(in) + cstr(from) + cstr(to)).error;
  }
  // Returns (errno, fh).
  std::pair<int, uint64_t> open(uint64_t nodeid, uint32_t flags, uint32_t opcode = FUSE_OPEN) {
    fuse_open_in in{};
    in.flags = flags;
    Reply r = call(opcode, nodeid, bytes(in));
    if (r.error) return {r.error, 0};
    return {0, r.as<fuse_open_out>().fh};
  }
  std::pair<int, uint64_t> opendir(uint64_t nodeid) { return open(nodeid, 0, FUSE_OPENDIR); }
  // Returns (errno, entry, fh).
  std::tuple<int, fuse_entry_out, uint64_t> create(uint64_t parent, const std::string& name, uint32_t flags,
                                                   uint32_t mode = 0644) {
    fuse_create_in in{};
    in.flags = flags;
    in.mode = S_IFREG | mode;
    Reply r = call(FUSE_CREATE, parent, bytes(in) + cstr(name));
    if (r.error) return {r.error, {}, 0};
    REQUIRE(r.data.size() == sizeof(fuse_entry_out) + sizeof(fuse_open_out));
    fuse_entry_out e;
    fuse_open_out o;
    std::memcpy(&e, r.data.data(), sizeof e);
    std::memcpy(&o, r.data.data() + sizeof e, sizeof o);
    return {0, e, o.fh};
  }
  Reply read(uint64_t fh, uint64_t off, uint32_t size, uint32_t reply_len = 0) {
    fuse_read_in in{};
    in.fh = fh;
    in.offset = off;
    in.size = size;
    return call(FUSE_READ, 0, bytes(in), reply_len ? reply_len : size);
  }
  // Returns (errno, bytes written).
  std::pair<int, uint32_t> write(uint64_t fh, uint64_t off, const std::string& data) {
    fuse_write_in in{};
    in.fh = fh;
    in.offset = off;
    in.size = static_cast<uint32_t>(data.size());
    Reply r = call(FUSE_WRITE, 0, bytes(in), 4096, data);
    if (r.error) return {r.error, 0};
    return {0, r.as<fuse_write_out>().size};
  }
  int release(uint64_t fh, bool dir = false) {
    fuse_release_in in{};
    in.fh = fh;
    return call(dir ? FUSE_RELEASEDIR : FUSE_RELEASE, 0, bytes(in)).error;
  }
  int fsync(uint64_t fh, bool dir = false) {
    fuse_fsync_in in{};
    in.fh = fh;
    return call(dir ? FUSE_FSYNCDIR : FUSE_FSYNC, 0, bytes(in)).error;
  }
  std::pair<int, fuse_attr> setattr(uint64_t nodeid, const fuse_setattr_in& in) {
    Reply r = call(FUSE_SETATTR, nodeid, bytes(in));
    if (r.error) return {r.error, {}};
    return {0, r.as<fuse_attr_out>().attr};
  }
  void forget(uint64_t nodeid, uint64_t n) {
    fuse_forget_in in{};
    in.nlookup = n;
    send_no_reply(FUSE_FORGET, nodeid, bytes(in));
  }

  struct Dirent {
    std::string name;
    uint64_t ino, off;
    uint32_t type;
    uint64_t nodeid;
  };
  // One READDIR(PLUS) call.
  std::pair<int, std::vector<Dirent>> readdir(uint64_t fh, uint64_t off, bool plus, uint32_t size = 4096,
                                              uint64_t dir_node = kRoot) {
    fuse_read_in in{};
    in.fh = fh;
    in.offset = off;
    in.size = size;
    Reply r = call(plus ? FUSE_READDIRPLUS : FUSE_READDIR, dir_node, bytes(in), size);
    std::vector<Dirent> out;
    if (r.error) return {r.error, out};
    size_t pos = 0;
    while (pos < r.data.size()) {
      Dirent d{};
      if (plus) {
        fuse_entry_out e;
        REQUIRE(r.data.size() - pos >= sizeof e);
        std::memcpy(&e, r.data.data() + pos, sizeof e);
        d.nodeid = e.nodeid;
        pos += sizeof e;
      }
      fuse_dirent de;
      REQUIRE(r.data.size() - pos >= FUSE_NAME_OFFSET);
      std::memcpy(&de, r.data.data() + pos, FUSE_NAME_OFFSET);
      REQUIRE(r.data.size() - pos >= FUSE_NAME_OFFSET + de.namelen);
      d.name.assign(r.data.data() + pos + FUSE_NAME_OFFSET, de.namelen);
      d.ino = de.ino;
      d.off = de.off;
      d.type = de.type;
      pos += FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + de.namelen);
      out.push_back(d);
    }
    return {0, out};
  }
  // Every name in a directory, read in calls of size bytes.
  std::vector<std::string> list(uint64_t dir_node, bool plus = false, uint32_t size = 4096) {
    auto [err, fh] = opendir(dir_node);
    REQUIRE(err == 0);
    std::vector<std::string> names;
    uint64_t off = 0;
    for (int calls = 0; calls < 10000; calls++) {
      auto [e, ents] = readdir(fh, off, plus, size, dir_node);
      REQUIRE(e == 0);
      if (ents.empty()) break;
      for (auto& d : ents) {
        names.push_back(d.name);
        if (plus && d.nodeid) forget(d.nodeid, 1);
      }
      off = ents.back().off;
    }
    CHECK(release(fh, true) == 0);
    std::sort(names.begin(), names.end());
    return names;
  }

  test::TestGuest g;
  int irqs = 0;
  Fs* fsdev = nullptr;
  std::unique_ptr<MmioTransport> transport;
  std::unique_ptr<test::TestDriver> drv;
  uint64_t in_area = 0, out_area = 0;
  uint64_t unique = 0;
};

constexpr uint32_t kRdOnly = 0, kWrOnly = 1, kRdWr = 2;

struct stat host_lstat(const std::string& p) {
  struct stat st {};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st;
}

}  // namespace

TEST_CASE("virtio-fs shows its tag and one request queue, and an unbound slot answers ENODEV", "[virtio][fs]") {
  FsRig r;
  uint8_t cfg[40];
  r.transport->mmio_read(0x100, cfg, 40);
  CHECK(std::string(reinterpret_cast<char*>(cfg)) == "work");
  uint32_t queues;
  std::memcpy(&queues, cfg + 36, 4);
  CHECK(queues == 1);
  CHECK(r.drv->reg(0x008) == 26);  // DeviceID: virtio-fs
  CHECK_FALSE(r.fsdev->bound());
  CHECK(r.init().error == ENODEV);
  fuse_getattr_in in{};
  CHECK(r.call(FUSE_GETATTR, kRoot, bytes(in)).error == ENODEV);
  CHECK_FALSE(r.fsdev->session_active());
}

TEST_CASE("virtio-fs INIT speaks 7.38, offers only what it serves and refuses other versions", "[virtio][fs]") {
  TempDir d;
  FsRig r(d.path);
  // Nothing but INIT before INIT.
  CHECK(r.getattr(kRoot).first == EIO);
  CHECK(r.init(6, 38).error == EPROTO);
  CHECK(r.init(7, 30).error == EPROTO);
  CHECK(r.init(8, 0).error == EPROTO);
  Reply ok = r.init(7, 38);
  REQUIRE(ok.error == 0);
  auto o = ok.as<fuse_init_out>();
  CHECK(o.major == 7);
  CHECK(o.minor == 38);
  CHECK(o.max_write == fuse::kMaxWrite);
  CHECK(o.max_readahead == 128 << 10);
  CHECK((o.flags & FUSE_DO_READDIRPLUS));
  CHECK((o.flags & FUSE_ATOMIC_O_TRUNC));
  // Never granted: locks shared with the host, the writeback cache, ACLs.
  CHECK_FALSE((o.flags & (FUSE_POSIX_LOCKS | FUSE_WRITEBACK_CACHE | FUSE_POSIX_ACL)));
  CHECK(r.fsdev->session_active());
  // An older guest gets its own minor back.
  CHECK(r.init(7, 31).as<fuse_init_out>().minor == 31);
}

TEST_CASE("virtio-fs looks up, stats, lists and reads a host tree", "[virtio][fs]") {
  TempDir d;
  fs::create_directories(d / "src/deep");
  d.write("src/hello.txt", "hello from the host\n");
  d.write("src/deep/x", std::string(100000, 'x'));
  FsRig r(d.path);
  r.start();

  auto [err, root] = r.getattr(kRoot);
  REQUIRE(err == 0);
  CHECK(S_ISDIR(root.mode));
  uint64_t src = r.node(kRoot, "src");
  auto [e2, hello] = r.lookup(src, "hello.txt");
  REQUIRE(e2 == 0);
  CHECK(S_ISREG(hello.attr.mode));
  CHECK(hello.attr.size == 20);
  CHECK(hello.attr.ino == host_lstat(d / "src/hello.txt").st_ino);
  CHECK(hello.entry_valid == fuse::kEntryTimeoutSec);
  // The same inode looked up twice is the same node.
  CHECK(r.node(src, "hello.txt") == hello.nodeid);
  CHECK(r.lookup(src, "missing").first == ENOENT);
  CHECK(r.lookup(hello.nodeid, "x").first == ENOTDIR);

  auto [e3, fh] = r.open(hello.nodeid, kRdOnly);
  REQUIRE(e3 == 0);
  Reply rd = r.read(fh, 6, 100);
  CHECK(rd.error == 0);
  CHECK(rd.data == "from the host\n");
  CHECK(r.read(fh, 1000, 10).data.empty());  // at EOF
  CHECK(r.release(fh) == 0);
  CHECK(r.release(fh) == EBADF);

  // A large file read in max_write pieces, byte-exact.
  uint64_t x = r.node(r.node(src, "deep"), "x");
  auto [e4, fx] = r.open(x, kRdOnly);
  REQUIRE(e4 == 0);
  CHECK(r.read(fx, 0, 100000).data == std::string(100000, 'x'));
  CHECK(r.release(fx) == 0);

  CHECK(r.list(src) == std::vector<std::string>{".", "..", "deep", "hello.txt"});
  CHECK(r.list(src, true) == std::vector<std::string>{".", "..", "deep", "hello.txt"});

  Reply st = r.call(FUSE_STATFS, src, "");
  REQUIRE(st.error == 0);
  auto so = st.as<fuse_statfs_out>();
  CHECK(so.st.bsize > 0);
  CHECK(so.st.namelen == 255);
}

TEST_CASE("virtio-fs creates, writes, truncates and syncs files the host then sees, owned by the host user",
          "[virtio][fs]") {
  TempDir d;
  FsRig r(d.path);
  r.start();
  auto [err, e, fh] = r.create(kRoot, "new.txt", kRdWr, 0640);
  REQUIRE(err == 0);
  CHECK(S_ISREG(e.attr.mode));
  CHECK(e.attr.uid == ::geteuid());
  CHECK(r.write(fh, 0, "written in the guest").second == 20);
  CHECK(r.write(fh, 8, "IN").second == 2);
  CHECK(r.fsync(fh) == 0);
  CHECK(d.read("new.txt") == "written IN the guest");
  struct stat st = host_lstat(d / "new.txt");
  CHECK(st.st_uid == ::geteuid());
  CHECK(st.st_gid == ::getegid());
  const mode_t mask = ::umask(0);
  ::umask(mask);
  CHECK((st.st_mode & 07777) == (0640 & ~mask));  // the host user's umask applies too

  // ftruncate through the handle, then truncate by node.
  fuse_setattr_in sa{};
  sa.valid = FATTR_SIZE | FATTR_FH;
  sa.fh = fh;
  sa.size = 7;
  auto [e2, a2] = r.setattr(e.nodeid, sa);
  CHECK(e2 == 0);
  CHECK(a2.size == 7);
  CHECK(d.read("new.txt") == "written");
  CHECK(r.release(fh) == 0);
  sa = {};
  sa.valid = FATTR_SIZE;
  sa.size = 3;
  CHECK(r.setattr(e.nodeid, sa).second.size == 3);
  CHECK(d.read("new.txt") == "wri");

  // O_TRUNC on OPEN (ATOMIC_O_TRUNC), and O_APPEND.
  auto [e3, fh2] = r.open(e.nodeid, kWrOnly | fuse::kWireTrunc);
  REQUIRE(e3 == 0);
  CHECK(d.read("new.txt").empty());
  CHECK(r.write(fh2, 0, "abc").second == 3);
  CHECK(r.read(fh2, 0, 3).error == EBADF);  // opened write-only on the host too
  CHECK(r.release(fh2) == 0);
  auto [e4, fh3] = r.open(e.nodeid, kWrOnly | fuse::kWireAppend);
  REQUIRE(e4 == 0);
  CHECK(r.write(fh3, 0, "def").second == 3);
  CHECK(r.release(fh3) == 0);
  CHECK(d.read("new.txt") == "abcdef");

  // CREATE of a name that exists opens it (without O_EXCL) or fails (with).
  auto [e5, e5e, fh5] = r.create(kRoot, "new.txt", kRdOnly);
  CHECK(e5 == 0);
  CHECK(e5e.nodeid == e.nodeid);
  CHECK(r.release(fh5) == 0);
  CHECK(std::get<0>(r.create(kRoot, "new.txt", kRdWr | fuse::kWireExcl)) == EEXIST);
}

TEST_CASE("virtio-fs makes and removes directories, nodes, links and renames", "[virtio][fs]") {
  TempDir d;
  FsRig r(d.path);
  r.start();
  auto [e1, dir] = r.mkdir(kRoot, "dir", 0750);
  REQUIRE(e1 == 0);
  CHECK(S_ISDIR(dir.attr.mode));
  CHECK(fs::is_directory(d / "dir"));
  CHECK(r.mkdir(kRoot, "dir").first == EEXIST);

  auto [e2, fifo] = r.mknod(dir.nodeid, "fifo", S_IFIFO | 0600);
  CHECK(e2 == 0);
  CHECK(S_ISFIFO(host_lstat(d / "dir/fifo").st_mode));
  auto [e3, reg] = r.mknod(dir.nodeid, "plain", S_IFREG | 0644);
  CHECK(e3 == 0);
  CHECK(S_ISREG(host_lstat(d / "dir/plain").st_mode));
  auto [e3b, sock] = r.mknod(dir.nodeid, "sock", S_IFSOCK | 0644);
  CHECK(e3b == 0);
  // Device nodes never (the tests may run as root: the host would allow it).
  CHECK(r.mknod(dir.nodeid, "null", S_IFCHR | 0666, makedev(1, 3)).first == EPERM);
  CHECK(r.mknod(dir.nodeid, "sda", S_IFBLK | 0666, makedev(8, 0)).first == EPERM);
  CHECK_FALSE(fs::exists(fs::symlink_status(d / "dir/null")));

  auto [e4, ln] = r.symlink(dir.nodeid, "ln", "../elsewhere/target");
  CHECK(e4 == 0);
  CHECK(S_ISLNK(ln.attr.mode));
  CHECK(fs::read_symlink(d / "dir/ln") == "../elsewhere/target");
  Reply rl = r.readlink(ln.nodeid);
  CHECK(rl.error == 0);
  CHECK(rl.data == "../elsewhere/target");
  CHECK(r.readlink(reg.nodeid).error == EINVAL);

  auto [e5, hard] = r.link(reg.nodeid, kRoot, "hard");
  CHECK(e5 == 0);
  CHECK(hard.nodeid == reg.nodeid);
  CHECK(hard.attr.nlink == 2);
  CHECK(host_lstat(d / "hard").st_ino == host_lstat(d / "dir/plain").st_ino);
  CHECK(r.link(dir.nodeid, kRoot, "dirlink").first == EPERM);
  // A hard link to the symlink is a link to the symlink itself.
  auto [e5b, ln2] = r.link(ln.nodeid, kRoot, "ln2");
  CHECK(e5b == 0);
  CHECK(fs::is_symlink(fs::symlink_status(d / "ln2")));

  CHECK(r.rename(dir.nodeid, "plain", kRoot, "moved") == 0);
  CHECK(fs::exists(d / "moved"));
  CHECK(r.rename(kRoot, "moved", kRoot, "hard", RENAME_NOREPLACE) == EEXIST);
  d.write("a", "A");
  d.write("b", "B");
  CHECK(r.rename(kRoot, "a", kRoot, "b", RENAME_EXCHANGE) == 0);
  CHECK(d.read("a") == "B");
  CHECK(r.rename(kRoot, "a", kRoot, "b", RENAME_WHITEOUT) == EINVAL);
  // Plain RENAME (no flags) too.
  fuse_rename_in rin{};
  rin.newdir = kRoot;
  CHECK(r.call(FUSE_RENAME, kRoot, bytes(rin) + cstr("a") + cstr("c")).error == 0);
  CHECK(d.read("c") == "B");

  CHECK(r.rmdir(kRoot, "dir") == ENOTEMPTY);
  for (const char* n : {"fifo", "sock", "ln"}) CHECK(r.unlink(dir.nodeid, n) == 0);
  CHECK(r.unlink(dir.nodeid, "fifo") == ENOENT);
  CHECK(r.rmdir(kRoot, "dir") == 0);
  CHECK_FALSE(fs::exists(d / "dir"));
  CHECK(r.unlink(kRoot, "moved") == 0);
  // The guest still holds the removed directory's node: it answers, empty.
  CHECK(r.getattr(dir.nodeid).first == 0);
  CHECK(r.mkdir(dir.nodeid, "x").first == ENOENT);
}

TEST_CASE("virtio-fs sets modes, owners and times, and never sets set-user-ID", "[virtio][fs]") {
  TempDir d;
  d.write("f", "data");
  FsRig r(d.path);
  r.start();
  uint64_t f = r.node(kRoot, "f");
  fuse_setattr_in sa{};
  sa.valid = FATTR_MODE;
  sa.mode = S_IFREG | 04755;
  auto [e1, a1] = r.setattr(f, sa);
  CHECK(e1 == 0);
  CHECK((a1.mode & 07777) == 0755);
  CHECK((host_lstat(d / "f").st_mode & 07777) == 0755);
  sa.mode = S_IFREG | 02711;
  CHECK((r.setattr(f, sa).second.mode & 07777) == 0711);
  // Created files and directories too; set-group-ID stays on directories.
  auto [e2, ent, fh] = r.create(kRoot, "suid", kRdWr, 06777);
  CHECK(e2 == 0);
  CHECK((host_lstat(d / "suid").st_mode & 07000) == 0);
  CHECK(r.release(fh) == 0);
  auto [e3, dir] = r.mkdir(kRoot, "sgid", 04775);
  CHECK(e3 == 0);
  CHECK((host_lstat(d / "sgid").st_mode & S_ISUID) == 0);
  sa.mode = S_IFDIR | 06775;
  CHECK((r.setattr(dir.nodeid, sa).second.mode & 07777) == 02775);
  CHECK((host_lstat(d / "sgid").st_mode & 07777) == 02775);
  CHECK((r.mknod(kRoot, "node", S_IFREG | 04644).second.attr.mode & 07000) == 0);

  // Owners: to itself (always allowed), the host decides the rest.
  sa = {};
  sa.valid = FATTR_UID | FATTR_GID;
  sa.uid = ::geteuid();
  sa.gid = ::getegid();
  CHECK(r.setattr(f, sa).first == 0);

  // Times: explicit and now.
  sa = {};
  sa.valid = FATTR_ATIME | FATTR_MTIME;
  sa.atime = 1000000000;
  sa.atimensec = 5;
  sa.mtime = 1200000000;
  sa.mtimensec = 7;
  auto [e4, a4] = r.setattr(f, sa);
  CHECK(e4 == 0);
  CHECK(a4.mtime == 1200000000);
  CHECK(a4.mtimensec == 7);
  CHECK(host_lstat(d / "f").st_atim.tv_sec == 1000000000);
  sa.valid = FATTR_MTIME | FATTR_MTIME_NOW;
  CHECK(r.setattr(f, sa).second.mtime > 1200000000);
  sa.valid = FATTR_MTIME;
  sa.mtimensec = 1000000000;
  CHECK(r.setattr(f, sa).first == EINVAL);

  // A symlink's own times can be set, its mode cannot (Linux has no lchmod).
  uint64_t ln = r.symlink(kRoot, "ln", "f").second.nodeid;
  sa = {};
  sa.valid = FATTR_MTIME;
  sa.mtime = 1100000000;
  CHECK(r.setattr(ln, sa).first == 0);
  CHECK(host_lstat(d / "ln").st_mtim.tv_sec == 1100000000);
  CHECK(host_lstat(d / "f").st_mtim.tv_sec != 1100000000);
  sa.valid = FATTR_MODE;
  sa.mode = 0777;
  CHECK(r.setattr(ln, sa).first == EOPNOTSUPP);
  sa.valid = FATTR_SIZE;
  CHECK(r.setattr(ln, sa).first == EINVAL);
  CHECK(r.setattr(dir.nodeid, sa).first == EISDIR);
  sa.valid = FATTR_SIZE | FATTR_FH;
  sa.fh = 999;
  CHECK(r.setattr(f, sa).first == EBADF);
}

TEST_CASE("virtio-fs answers statfs, access, fallocate, lseek, flush and fsyncdir", "[virtio][fs]") {
  TempDir d;
  FsRig r(d.path);
  r.start();
  auto [err, e, fh] = r.create(kRoot, "sparse", kRdWr);
  REQUIRE(err == 0);
  fuse_fallocate_in fa{};
  fa.fh = fh;
  fa.offset = 0;
  fa.length = 1 << 20;
  CHECK(r.call(FUSE_FALLOCATE, e.nodeid, bytes(fa)).error == 0);
  CHECK(host_lstat(d / "sparse").st_size == 1 << 20);
  fa.mode = 0x8000;  // no such flag
  CHECK(r.call(FUSE_FALLOCATE, e.nodeid, bytes(fa)).error == EOPNOTSUPP);

  CHECK(r.write(fh, 3 << 20, "tail").second == 4);
  fuse_lseek_in ls{};
  ls.fh = fh;
  ls.offset = 0;
  ls.whence = SEEK_DATA;
  Reply sd = r.call(FUSE_LSEEK, e.nodeid, bytes(ls));
  CHECK(sd.error == 0);
  ls.whence = SEEK_HOLE;
  Reply sh = r.call(FUSE_LSEEK, e.nodeid, bytes(ls));
  CHECK(sh.error == 0);
  CHECK(sh.as<fuse_lseek_out>().offset <= (4u << 20));
  ls.whence = 17;
  CHECK(r.call(FUSE_LSEEK, e.nodeid, bytes(ls)).error == EINVAL);

  fuse_flush_in fl{};
  fl.fh = fh;
  CHECK(r.call(FUSE_FLUSH, e.nodeid, bytes(fl)).error == 0);
  fuse_fsync_in fs_in{};
  fs_in.fh = fh;
  fs_in.fsync_flags = 1;  // fdatasync
  CHECK(r.call(FUSE_FSYNC, e.nodeid, bytes(fs_in)).error == 0);
  CHECK(r.release(fh) == 0);

  fuse_access_in ac{};
  ac.mask = R_OK | W_OK;
  CHECK(r.call(FUSE_ACCESS, e.nodeid, bytes(ac)).error == 0);
  ac.mask = 0x100;
  CHECK(r.call(FUSE_ACCESS, e.nodeid, bytes(ac)).error == EINVAL);

  auto [e2, dfh] = r.opendir(kRoot);
  REQUIRE(e2 == 0);
  CHECK(r.fsync(dfh, true) == 0);
  CHECK(r.fsync(dfh, false) == EBADF);  // a directory handle is not a file handle
  CHECK(r.release(dfh, false) == EBADF);
  CHECK(r.release(dfh, true) == 0);

  // Extended attributes, locks and the rest are not served.
  for (uint32_t op : std::vector<uint32_t>{FUSE_GETXATTR, FUSE_SETXATTR, FUSE_LISTXATTR, FUSE_REMOVEXATTR, FUSE_GETLK, FUSE_SETLK,
                      FUSE_IOCTL, FUSE_COPY_FILE_RANGE, FUSE_SYNCFS, 9999u})
    CHECK(r.call(op, kRoot, std::string(64, '\0')).error == ENOSYS);
}

TEST_CASE("virtio-fs refuses names that are not one component: '..', '.', '/', empty, too long", "[virtio][fs]") {
  TempDir outside;
  outside.write("secret", "outside the volume");
  fs::create_directories(outside / "vol/sub");
  FsRig r(outside / "vol");
  r.start();
  uint64_t sub = r.node(kRoot, "sub");
  for (std::string bad : {"..", ".", "", "../secret", "sub/..", "/etc/passwd", "a/b"}) {
    INFO(bad);
    CHECK(r.lookup(kRoot, bad).first == EINVAL);
    CHECK(r.lookup(sub, bad).first == EINVAL);
    CHECK(r.mkdir(kRoot, bad).first == EINVAL);
    CHECK(std::get<0>(r.create(kRoot, bad, kRdWr)) == EINVAL);
    CHECK(r.unlink(sub, bad) == EINVAL);
    CHECK(r.rmdir(sub, bad) == EINVAL);
    CHECK(r.rename(sub, bad, kRoot, "x") == EINVAL);
    CHECK(r.symlink(kRoot, bad, "x").first == EINVAL);
  }
  CHECK(r.lookup(kRoot, std::string(256, 'n')).first == ENAMETOOLONG);
  CHECK(r.lookup(kRoot, std::string(255, 'n')).first == ENOENT);
  // A name with a NUL inside ends at the NUL: "sub\0../secret" is "sub".
  CHECK(r.call(FUSE_LOOKUP, kRoot, std::string("sub\0../secret\0", 14)).error == 0);
  // No NUL at all.
  CHECK(r.call(FUSE_LOOKUP, kRoot, "sub").error == EINVAL);
  CHECK(outside.read("secret") == "outside the volume");
  CHECK(r.list(kRoot) == std::vector<std::string>{".", "..", "sub"});
}

TEST_CASE("virtio-fs returns symlinks to the guest and never follows one on the host", "[virtio][fs]") {
  TempDir outside;
  outside.write("secret", "outside");
  fs::create_directories(outside / "vol");
  fs::create_symlink("/etc", outside / "vol/etc");
  fs::create_symlink(outside / "secret", outside / "vol/abs");
  fs::create_symlink("../secret", outside / "vol/rel");
  fs::create_symlink("../", outside / "vol/up");
  FsRig r(outside / "vol");
  r.start();

  auto [e1, etc] = r.lookup(kRoot, "etc");
  REQUIRE(e1 == 0);
  CHECK(S_ISLNK(etc.attr.mode));
  CHECK(r.readlink(etc.nodeid).data == "/etc");
  // Through the link: never.
  CHECK(r.lookup(etc.nodeid, "passwd").first == ENOTDIR);
  CHECK(r.mkdir(etc.nodeid, "x").first == ENOTDIR);
  CHECK(std::get<0>(r.create(etc.nodeid, "x", kRdWr)) == ENOTDIR);
  CHECK(r.opendir(etc.nodeid).first == ENOTDIR);
  CHECK(r.open(etc.nodeid, kRdOnly).first == ELOOP);
  uint64_t up = r.node(kRoot, "up");
  CHECK(r.lookup(up, "secret").first == ENOTDIR);
  CHECK(r.unlink(up, "secret") == ENOTDIR);
  CHECK(r.rename(up, "secret", kRoot, "stolen") == ENOTDIR);

  for (const char* n : {"abs", "rel"}) {
    uint64_t ln = r.node(kRoot, n);
    CHECK(r.open(ln, kRdOnly).first == ELOOP);
    CHECK(r.open(ln, kRdWr | fuse::kWireTrunc).first == ELOOP);
    // CREATE over the link's name opens nothing behind it.
    CHECK(std::get<0>(r.create(kRoot, n, kRdWr | fuse::kWireTrunc)) == ELOOP);
    fuse_setattr_in sa{};
    sa.valid = FATTR_SIZE;
    CHECK(r.setattr(ln, sa).first == EINVAL);
    sa.valid = FATTR_MODE;
    sa.mode = 0777;
    CHECK(r.setattr(ln, sa).first == EOPNOTSUPP);
    // A hard link to it links the link.
    CHECK(r.link(ln, kRoot, std::string(n) + "2").first == 0);
    CHECK(fs::is_symlink(fs::symlink_status(outside / ("vol/" + std::string(n) + "2"))));
  }
  CHECK(outside.read("secret") == "outside");
  CHECK((host_lstat(outside / "secret").st_mode & 0777) != 0777);
}

TEST_CASE("virtio-fs keeps a looked-up directory when the host swaps its name for a symlink", "[virtio][fs]") {
  TempDir outside;
  fs::create_directories(outside / "target");
  fs::create_directories(outside / "vol/d");
  FsRig r(outside / "vol");
  r.start();
  uint64_t dnode = r.node(kRoot, "d");
  // The race a guest cannot win: between its LOOKUP and its next call the
  // name now points outside.
  fs::rename(outside / "vol/d", outside / "vol/d.old");
  fs::create_directory_symlink(outside / "target", outside / "vol/d");
  auto [err, e, fh] = r.create(dnode, "planted", kRdWr);
  CHECK(err == 0);
  CHECK(r.release(fh) == 0);
  CHECK(fs::exists(outside / "vol/d.old/planted"));
  CHECK_FALSE(fs::exists(outside / "target/planted"));
  CHECK(r.mkdir(dnode, "sub").first == 0);
  CHECK(fs::is_directory(outside / "vol/d.old/sub"));
  // A fresh lookup of the name finds the link, not the directory behind it.
  auto [e2, now] = r.lookup(kRoot, "d");
  CHECK(e2 == 0);
  CHECK(S_ISLNK(now.attr.mode));
  CHECK(r.lookup(now.nodeid, "planted").first == ENOTDIR);
  CHECK(fs::is_empty(outside / "target"));
}

TEST_CASE("virtio-fs shows /proc's magic links as links and never follows them", "[virtio][fs]") {
  // A volume rooted at /proc/self: "root", "cwd" and "exe" are magic links
  // to this process's view of the host.
  FsRig r("/proc/self", true);
  r.start();
  for (const char* n : {"root", "cwd", "exe"}) {
    INFO(n);
    auto [err, e] = r.lookup(kRoot, n);
    REQUIRE(err == 0);
    CHECK(S_ISLNK(e.attr.mode));
    CHECK(r.lookup(e.nodeid, "etc").first == ENOTDIR);
    CHECK(r.open(e.nodeid, kRdOnly).first == ELOOP);
    CHECK(r.opendir(e.nodeid).first == ENOTDIR);
    Reply rl = r.readlink(e.nodeid);
    CHECK(rl.error == 0);
    CHECK(rl.data.substr(0, 1) == "/");
  }
  CHECK(r.readlink(r.node(kRoot, "root")).data == "/");
  // The descriptors under fd/ are links too.
  uint64_t fd_dir = r.node(kRoot, "fd");
  auto [err, zero] = r.lookup(fd_dir, "0");
  if (err == 0) {
    CHECK(S_ISLNK(zero.attr.mode));
    CHECK(r.open(zero.nodeid, kRdOnly).first == ELOOP);
  }
}

TEST_CASE("virtio-fs refuses every change to a read-only volume with EROFS", "[virtio][fs]") {
  TempDir d;
  d.write("f", "original");
  fs::create_directories(d / "dir");
  FsRig r(d.path, true);
  r.start();
  uint64_t f = r.node(kRoot, "f");
  uint64_t dir = r.node(kRoot, "dir");
  CHECK(r.mkdir(kRoot, "x").first == EROFS);
  CHECK(r.mknod(kRoot, "x", S_IFREG | 0644).first == EROFS);
  CHECK(r.mknod(kRoot, "x", S_IFIFO | 0644).first == EROFS);
  CHECK(r.symlink(kRoot, "x", "f").first == EROFS);
  CHECK(r.link(f, kRoot, "x").first == EROFS);
  CHECK(std::get<0>(r.create(kRoot, "x", kRdWr)) == EROFS);
  CHECK(std::get<0>(r.create(kRoot, "f", kRdOnly)) == EROFS);
  CHECK(r.unlink(kRoot, "f") == EROFS);
  CHECK(r.rmdir(kRoot, "dir") == EROFS);
  CHECK(r.rename(kRoot, "f", dir, "f") == EROFS);
  CHECK(r.rename(kRoot, "f", kRoot, "dir", RENAME_EXCHANGE) == EROFS);
  CHECK(r.open(f, kWrOnly).first == EROFS);
  CHECK(r.open(f, kRdWr).first == EROFS);
  CHECK(r.open(f, kRdOnly | fuse::kWireTrunc).first == EROFS);
  for (uint32_t valid : {FATTR_MODE, FATTR_UID, FATTR_SIZE, FATTR_MTIME, FATTR_ATIME | FATTR_ATIME_NOW}) {
    fuse_setattr_in sa{};
    sa.valid = valid;
    sa.mode = 0777;
    sa.uid = ::geteuid();
    CHECK(r.setattr(f, sa).first == EROFS);
  }
  fuse_access_in ac{};
  ac.mask = W_OK;
  CHECK(r.call(FUSE_ACCESS, f, bytes(ac)).error == EROFS);
  // Reading works; a read handle cannot write or allocate.
  auto [err, fh] = r.open(f, kRdOnly);
  REQUIRE(err == 0);
  CHECK(r.read(fh, 0, 8).data == "original");
  CHECK(r.write(fh, 0, "changed!").first == EROFS);
  fuse_fallocate_in fa{};
  fa.fh = fh;
  fa.length = 100;
  CHECK(r.call(FUSE_FALLOCATE, f, bytes(fa)).error == EROFS);
  CHECK(r.fsync(fh) == 0);
  CHECK(r.release(fh) == 0);
  CHECK(d.read("f") == "original");
  CHECK((host_lstat(d / "f").st_mode & 0777) != 0777);
  CHECK(r.list(kRoot) == std::vector<std::string>{".", "..", "dir", "f"});
}

TEST_CASE("virtio-fs caps inodes and handles with ENFILE and frees them on FORGET and RELEASE", "[virtio][fs]") {
  TempDir d;
  for (int i = 0; i < 10; i++) d.write("f" + std::to_string(i), "x");
  fuse::Limits lim;
  lim.max_inodes = 4;  // the root and three more
  lim.max_handles = 2;
  FsRig r(d.path, false, lim);
  r.start();
  std::vector<uint64_t> held;
  for (int i = 0; i < 3; i++) held.push_back(r.node(kRoot, "f" + std::to_string(i)));
  CHECK(r.lookup(kRoot, "f3").first == ENFILE);
  // Looking up a held inode again costs nothing.
  CHECK(r.node(kRoot, "f0") == held[0]);
  CHECK(r.mkdir(kRoot, "d").first == ENFILE);
  CHECK(std::get<0>(r.create(kRoot, "new", kRdWr)) == ENFILE);
  CHECK(r.fsdev->volume()->inode_count() == 4);
  r.forget(held[1], 1);
  CHECK(r.fsdev->volume()->inode_count() == 3);
  uint64_t f3 = r.node(kRoot, "f3");
  CHECK(f3 != held[1]);  // node ids are never reused
  // f0 was looked up twice: one FORGET of one is not enough.
  r.forget(held[0], 1);
  CHECK(r.getattr(held[0]).first == 0);
  r.forget(held[0], 1);
  CHECK(r.getattr(held[0]).first == ESTALE);
  // A FORGET of more than was looked up, of the root, of an unknown node: harmless.
  r.forget(f3, 1000);
  r.forget(kRoot, 5);
  r.forget(12345, 1);
  CHECK(r.getattr(kRoot).first == 0);

  auto [e1, h1] = r.open(held[2], kRdOnly);
  auto [e2, h2] = r.opendir(kRoot);
  CHECK(e1 == 0);
  CHECK(e2 == 0);
  CHECK(r.open(held[2], kRdOnly).first == ENFILE);
  CHECK(r.opendir(kRoot).first == ENFILE);
  CHECK(r.release(h1) == 0);
  CHECK(r.open(held[2], kRdOnly).first == 0);

  // BATCH_FORGET drops several at once.
  fuse_batch_forget_in bf{};
  bf.count = 2;
  fuse_forget_one one[2] = {{held[2], 1}, {kRoot, 1}};
  r.send_no_reply(FUSE_BATCH_FORGET, 0, bytes(bf) + bytes(one));
  CHECK(r.getattr(held[2]).first == ESTALE);
  // A count larger than what follows stops at the end of the request.
  bf.count = 1000000;
  r.send_no_reply(FUSE_BATCH_FORGET, 0, bytes(bf));
  CHECK(r.fsdev->volume()->inode_count() == 1);
}

TEST_CASE("virtio-fs answers malformed requests with errors and keeps serving", "[virtio][fs]") {
  TempDir d;
  d.write("f", "0123456789");
  FsRig r(d.path);
  r.start();
  uint64_t f = r.node(kRoot, "f");
  fuse_in_header h{};
  h.opcode = FUSE_GETATTR;
  h.unique = 77;
  h.nodeid = kRoot;
  auto out_header = [&] {
    fuse_out_header oh;
    std::memcpy(&oh, r.g.host(r.out_area), sizeof oh);
    return oh;
  };
  // Shorter than a header: nothing can be answered.
  CHECK(r.raw({std::string(20, 'x')}, 4096) == 0);
  // A length beyond the request, or below the header's own size.
  h.len = 4000;
  CHECK(r.raw({bytes(h), std::string(16, '\0')}, 4096) == sizeof(fuse_out_header));
  CHECK(out_header().error == -EINVAL);
  CHECK(out_header().unique == 77);
  h.len = 10;
  CHECK(r.raw({bytes(h), std::string(16, '\0')}, 4096) == sizeof(fuse_out_header));
  CHECK(out_header().error == -EINVAL);
  // Too big for anything but WRITE.
  h.opcode = FUSE_LOOKUP;
  h.len = sizeof h + fuse::kMaxRequest;
  CHECK(r.raw({bytes(h), std::string(fuse::kMaxRequest, 'a')}, 4096) == sizeof(fuse_out_header));
  CHECK(out_header().error == -EINVAL);
  // Arguments cut short.
  CHECK(r.call(FUSE_SETATTR, f, std::string(10, '\0')).error == EINVAL);
  CHECK(r.call(FUSE_MKDIR, kRoot, std::string(4, '\0')).error == EINVAL);
  CHECK(r.call(FUSE_RENAME2, kRoot, std::string(16, '\0') + "a").error == EINVAL);
  CHECK(r.call(FUSE_SYMLINK, kRoot, cstr("a") + "no-nul").error == EINVAL);
  CHECK(r.call(FUSE_READ, 0, std::string(8, '\0')).error == EINVAL);
  // Unknown nodes and handles.
  CHECK(r.getattr(999).first == ESTALE);
  CHECK(r.lookup(999, "f").first == ESTALE);
  CHECK(r.open(0, kRdOnly).first == ESTALE);
  CHECK(r.read(4242, 0, 10).error == EBADF);
  CHECK(r.write(4242, 0, "x").first == EBADF);
  CHECK(r.open(f, 3).first == EINVAL);  // access mode 3
  // A WRITE whose size runs past the request, or past max_write.
  fuse_write_in wi{};
  wi.size = 100;
  CHECK(r.call(FUSE_WRITE, f, bytes(wi), 4096, "short").error == EINVAL);
  wi.size = fuse::kMaxWrite + 1;
  CHECK(r.call(FUSE_WRITE, f, bytes(wi), 4096, "short").error == EINVAL);
  // A reply area too small for the reply: an error instead.
  fuse_getattr_in gi{};
  CHECK(r.call(FUSE_GETATTR, f, bytes(gi), 8).error == EIO);
  // No room even for the header: the request is used without a reply.
  h.opcode = FUSE_GETATTR;
  h.len = sizeof h + sizeof gi;
  CHECK(r.raw({bytes(h), bytes(gi)}, 0, 1, 8) == 0);
  CHECK(r.raw({bytes(h), bytes(gi)}, -1) == 0);
  // A negative offset.
  auto [err, fh] = r.open(f, kRdOnly);
  REQUIRE(err == 0);
  CHECK(r.read(fh, ~0ull, 10).error == EINVAL);
  // The device is still fine.
  CHECK(r.read(fh, 2, 3).data == "234");
  CHECK_FALSE((r.drv->status() & kStatusNeedsReset));
}

TEST_CASE("virtio-fs caps READ and WRITE at max_write and READDIR at its buffer", "[virtio][fs]") {
  TempDir d;
  const std::string big(fuse::kMaxWrite + 4096, 'b');
  d.write("big", big);
  FsRig r(d.path);
  r.start();
  uint64_t f = r.node(kRoot, "big");
  auto [err, fh] = r.open(f, kRdWr);
  REQUIRE(err == 0);
  // A READ asking for more than max_write gets max_write.
  Reply rd = r.read(fh, 0, fuse::kMaxWrite + 4096, fuse::kMaxWrite + 4096);
  CHECK(rd.error == 0);
  CHECK(rd.data.size() == fuse::kMaxWrite);
  // And no more than the guest's buffer.
  CHECK(r.read(fh, 0, 100000, 1000).data.size() == 1000);
  // A full-size WRITE goes through, byte-exact.
  std::string w(fuse::kMaxWrite, '\0');
  for (size_t i = 0; i < w.size(); i++) w[i] = static_cast<char>(i * 7 + i / 4096);
  CHECK(r.write(fh, 4096, w).second == fuse::kMaxWrite);
  CHECK(d.read("big") == big.substr(0, 4096) + w);
  CHECK(r.release(fh) == 0);
  // A directory listing in small buffers, resumed by offset, misses nothing.
  for (int i = 0; i < 300; i++) d.write("n" + std::to_string(i), "");
  auto names = r.list(kRoot, false, 256);
  CHECK(names.size() == 303);
  auto plus = r.list(kRoot, true, 512);
  CHECK(plus == names);
  CHECK(r.fsdev->volume()->inode_count() == 2);  // the listing's lookups were forgotten
}

TEST_CASE("virtio-fs READDIRPLUS gives entries with their attributes and counts one lookup each", "[virtio][fs]") {
  TempDir d;
  d.write("a", "aaa");
  fs::create_directories(d / "b");
  FsRig r(d.path);
  r.start();
  auto [err, fh] = r.opendir(kRoot);
  REQUIRE(err == 0);
  auto [e2, ents] = r.readdir(fh, 0, true);
  REQUIRE(e2 == 0);
  REQUIRE(ents.size() == 4);
  std::set<uint64_t> nodes;
  for (auto& e : ents) {
    if (e.name == "." || e.name == "..") {
      CHECK(e.nodeid == 0);
    } else {
      CHECK(e.nodeid != 0);
      nodes.insert(e.nodeid);
      CHECK(e.type == (e.name == "a" ? DT_REG : DT_DIR));
    }
  }
  CHECK(nodes.size() == 2);
  CHECK(r.fsdev->volume()->inode_count() == 3);
  CHECK(nodes.count(r.node(kRoot, "a")) == 1);
  // From an offset past the end: nothing.
  auto [e3, rest] = r.readdir(fh, ents.back().off, true);
  CHECK(e3 == 0);
  CHECK(rest.empty());
  CHECK(r.readdir(fh + 100, 0, true).first == EBADF);
  CHECK(r.release(fh, true) == 0);
}

TEST_CASE("virtio-fs never opens a FIFO or a device node on the host", "[virtio][fs]") {
  TempDir d;
  REQUIRE(::mkfifo((d / "fifo").c_str(), 0666) == 0);
  FsRig r(d.path);
  r.start();
  uint64_t fifo = r.node(kRoot, "fifo");
  // Opening it on the host would block this thread until a writer came.
  CHECK(r.open(fifo, kRdOnly).first == ENXIO);
  CHECK(r.open(fifo, kWrOnly).first == ENXIO);
  CHECK(std::get<0>(r.create(kRoot, "fifo", kRdOnly)) == ENXIO);
  CHECK(r.fsdev->volume()->handle_count() == 0);
  if (::geteuid() == 0 && ::mknod((d / "null").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0) {
    uint64_t dev = r.node(kRoot, "null");
    auto [err, attr] = r.getattr(dev);
    CHECK(err == 0);
    CHECK(attr.rdev == ((3u & 0xff) | (1u << 8)));
    CHECK(r.open(dev, kRdWr).first == ENXIO);
  }
}

TEST_CASE("virtio-fs DESTROY and a device reset end the session and drop its inodes and handles",
          "[virtio][fs]") {
  TempDir d;
  d.write("f", "x");
  FsRig r(d.path);
  r.start();
  uint64_t f = r.node(kRoot, "f");
  auto [err, fh] = r.open(f, kRdOnly);
  REQUIRE(err == 0);
  CHECK(r.call(FUSE_DESTROY, 0, "").error == 0);
  CHECK_FALSE(r.fsdev->session_active());
  CHECK(r.getattr(f).first == EIO);
  r.start();
  // Node ids and handles of the old session mean nothing in the new one.
  CHECK(r.getattr(f).first == ESTALE);
  CHECK(r.read(fh, 0, 1).error == EBADF);
  uint64_t f2 = r.node(kRoot, "f");
  CHECK(f2 != f);
  // The driver resets the device (status 0): the session goes too.
  r.drv->set(0x70, 0);
  CHECK_FALSE(r.fsdev->session_active());
  CHECK(r.fsdev->volume()->inode_count() == 1);
  CHECK(r.fsdev->bound());
}
