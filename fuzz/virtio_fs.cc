// virtio-fs behind the mmio transport, bound to a real host directory,
// driven by a hostile guest (fuzz/support/virtio_rig.h). Device operation:
// one FUSE request laid out the way a driver does (in-header and arguments
// readable, out-header and reply writable), with the opcode, node id, fixed
// arguments, names, data, header length and buffer sizes the fuzzer's.
//
// Checked beyond "no crash", after every input: nothing outside the
// volume changed (a sibling directory holds a file the guest must never
// reach); a read-only volume is exactly as it was; and every descriptor
// the volume opened is closed once the device is gone.
#include <dirent.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "base/fd.h"
#include "fuzz/support/virtio_rig.h"
#include "vmm/devices/virtio/fs.h"

using namespace spore;
using namespace spore::fuzz;
using namespace spore::vmm::virtio;
namespace stdfs = std::filesystem;

namespace {

bool g_read_only = false;
std::string g_root;     // the fuzz directory: outside/ and vol/
std::string g_volume;   // g_root/vol

constexpr const char* kSecret = "the guest must never see or change this";

void put_file(const std::string& path, const std::string& data) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd || !write_all(fd.get(), data.data(), data.size()).ok()) fail("cannot write", path);
}

// A fresh tree for every input: a volume with files, a directory, links
// pointing out of it (absolute, relative, to /etc) and a FIFO; beside it,
// outside/secret.
void reset_tree() {
  g_root = fresh_scratch_subdir("fs");
  g_volume = g_root + "/vol";
  std::error_code ec;
  stdfs::create_directories(g_root + "/outside", ec);
  stdfs::create_directories(g_volume + "/sub/deeper", ec);
  if (ec) fail("cannot make the tree", ec.message());
  put_file(g_root + "/outside/secret", kSecret);
  put_file(g_volume + "/a", "hello");
  put_file(g_volume + "/sub/b", std::string(5000, 'b'));
  stdfs::create_symlink("/etc", g_volume + "/etc", ec);
  stdfs::create_symlink("../outside/secret", g_volume + "/rel", ec);
  stdfs::create_symlink(g_root + "/outside", g_volume + "/abs", ec);
  stdfs::create_symlink("..", g_volume + "/sub/up", ec);
  if (::mkfifo((g_volume + "/fifo").c_str(), 0644) != 0) fail("mkfifo");
}

// Every name under dir with its type, size, mode and content (files).
std::string describe(const std::string& dir) {
  std::vector<std::string> lines;
  std::error_code ec;
  for (auto it = stdfs::recursive_directory_iterator(dir, stdfs::directory_options::none, ec);
       !ec && it != stdfs::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st;
    if (::lstat(it->path().c_str(), &st) != 0) continue;
    std::string line = it->path().string() + " " + std::to_string(st.st_mode) + " " + std::to_string(st.st_size) +
                       " " + std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
    if (S_ISREG(st.st_mode)) {
      auto data = read_file(it->path().string(), 1 << 20);
      line += " " + (data.ok() ? *data : std::string("?"));
    } else if (S_ISLNK(st.st_mode)) {
      line += " -> " + stdfs::read_symlink(it->path(), ec).string();
    }
    lines.push_back(line);
  }
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (auto& l : lines) out += l + "\n";
  return out;
}

size_t open_fds() {
  size_t n = 0;
  std::error_code ec;
  for (auto it = stdfs::directory_iterator("/proc/self/fd", ec); !ec && it != stdfs::directory_iterator();
       it.increment(ec))
    n++;
  return n;
}

constexpr uint32_t kOps[] = {
    FUSE_INIT,    FUSE_LOOKUP,  FUSE_FORGET,       FUSE_GETATTR,  FUSE_SETATTR,  FUSE_READLINK, FUSE_SYMLINK,
    FUSE_MKNOD,   FUSE_MKDIR,   FUSE_UNLINK,       FUSE_RMDIR,    FUSE_RENAME,   FUSE_LINK,     FUSE_OPEN,
    FUSE_READ,    FUSE_WRITE,   FUSE_STATFS,       FUSE_RELEASE,  FUSE_FSYNC,    FUSE_FLUSH,    FUSE_OPENDIR,
    FUSE_READDIR, FUSE_RELEASEDIR, FUSE_FSYNCDIR,  FUSE_ACCESS,   FUSE_CREATE,   FUSE_DESTROY,  FUSE_BATCH_FORGET,
    FUSE_FALLOCATE, FUSE_READDIRPLUS, FUSE_RENAME2, FUSE_LSEEK,   FUSE_GETXATTR, FUSE_INTERRUPT};
constexpr const char* kNames[] = {"a", "sub", "b", "deeper", "etc", "rel", "abs", "up", "fifo", "new",
                                  "..", ".", "", "../outside", "/etc", "secret", "outside"};

// Request: u8 opcode selector (or raw u32), u8 node selector (or raw u64),
// str8 fixed arguments, u8 names (0..2) each u8 selector (or str8), str16
// data, u8 flags (bit 0: raw header length u32 follows; bit 1: header and
// arguments in one descriptor; bit 2: no writable buffers; bit 3: hiprio
// queue), u16 reply buffer size.
void fs_request(Input& in, VirtioRig& rig) {
  uint8_t sel = in.u8();
  uint32_t opcode = sel < 240 ? kOps[sel % (sizeof kOps / sizeof kOps[0])] : in.u32();
  uint8_t node_sel = in.u8();
  uint64_t nodeid = node_sel < 240 ? node_sel % 12 : in.u64();
  std::string args = in.str8();
  if (opcode == FUSE_INIT && args.empty()) {
    fuse_init_in init{};
    init.major = 7;
    init.minor = 38;
    init.max_readahead = 1 << 20;
    init.flags = ~0u;
    args.assign(reinterpret_cast<const char*>(&init), sizeof init);
  }
  uint8_t names = in.u8() % 3;
  for (uint8_t i = 0; i < names; i++) {
    uint8_t ns = in.u8();
    args += ns < 200 ? std::string(kNames[ns % (sizeof kNames / sizeof kNames[0])]) : in.str8();
    args.push_back('\0');
  }
  std::string data = in.str16();
  uint8_t flags = in.u8();
  fuse_in_header h{};
  h.len = static_cast<uint32_t>(sizeof h + args.size() + data.size());
  if (flags & 1) h.len = in.u32();
  h.opcode = opcode;
  h.unique = 1;
  h.nodeid = nodeid;
  uint16_t reply_len = in.u16() % (16 << 10);

  std::string hdr(reinterpret_cast<const char*>(&h), sizeof h);
  std::vector<VirtioRig::Desc> descs;
  auto readable = [&](const std::string& bytes) {
    if (bytes.empty()) return;
    uint64_t at = rig.alloc(static_cast<uint32_t>(bytes.size()));
    rig.put(at, bytes);
    descs.push_back({at, static_cast<uint32_t>(bytes.size()), 0});
  };
  if (flags & 2) {
    readable(hdr + args + data);
  } else {
    readable(hdr);
    readable(args);
    readable(data);
  }
  if (!(flags & 4)) {
    uint64_t oh = rig.alloc(sizeof(fuse_out_header));
    descs.push_back({oh, sizeof(fuse_out_header), kDescFlagWrite});
    if (reply_len) descs.push_back({rig.alloc(reply_len), reply_len, kDescFlagWrite});
  }
  uint32_t q = flags & 8 ? 0 : 1;
  rig.publish_chain(q, descs);
  rig.kick(q);
}

DeviceOps fs_ops() {
  DeviceOps ops;
  ops.make = [](vmm::EventLoop&) -> std::unique_ptr<Device> {
    auto dev = std::make_unique<Fs>("fuzz");
    vmm::fuse::Limits limits;
    limits.max_inodes = 16;
    limits.max_handles = 8;
    auto v = vmm::fuse::Volume::open(g_volume, g_read_only, limits);
    if (!v.ok()) fail("Volume::open", v.error().message);
    dev->bind(std::move(*v));
    return dev;
  };
  ops.op = fs_request;
  return ops;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const DeviceOps ops = fs_ops();
  Input in(data, size);
  g_read_only = in.flag();
  reset_tree();
  const std::string outside_before = describe(g_root + "/outside");
  const std::string volume_before = describe(g_volume);
  const size_t fds_before = open_fds();
  {
    VirtioRig rig(ops);
    rig.run(in);
  }
  check(describe(g_root + "/outside") == outside_before, "something outside the volume changed");
  if (g_read_only) check(describe(g_volume) == volume_before, "a read-only volume changed");
  check(open_fds() == fds_before, "the volume leaked descriptors");
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  // One request: opcode selector, node, fixed args, names, data, flags, reply size.
  auto op_index = [](uint32_t opcode) {
    for (size_t i = 0; i < sizeof kOps / sizeof kOps[0]; i++)
      if (kOps[i] == opcode) return static_cast<uint8_t>(i);
    return uint8_t{0};
  };
  auto name_index = [](const std::string& n) {
    for (size_t i = 0; i < sizeof kNames / sizeof kNames[0]; i++)
      if (n == kNames[i]) return static_cast<uint8_t>(i);
    return uint8_t{0};
  };
  auto request = [&](VirtioProgram& p, uint32_t opcode, uint8_t node, std::string fixed,
                     std::vector<std::string> names = {}, std::string data = "", uint16_t reply = 4096) {
    Output& o = p.device().u8(op_index(opcode)).u8(node).str8(fixed).u8(static_cast<uint8_t>(names.size()));
    for (auto& n : names) o.u8(name_index(n));
    o.str16(data).u8(0).u16(reply);
  };
  auto raw = [](const auto& v) { return std::string(reinterpret_cast<const char*>(&v), sizeof v); };
  for (uint8_t ro : {0, 1}) {
    VirtioProgram p;
    Output head;
    head.u8(ro);
    p.init();
    request(p, FUSE_INIT, 0, "");
    request(p, FUSE_LOOKUP, 1, "", {"sub"});        // node 2
    request(p, FUSE_LOOKUP, 2, "", {"b"});          // node 3
    fuse_open_in oi{};
    request(p, FUSE_OPEN, 3, raw(oi));              // fh 1
    fuse_read_in ri{};
    ri.fh = 1;
    ri.size = 4096;
    request(p, FUSE_READ, 3, raw(ri));
    request(p, FUSE_OPENDIR, 2, raw(oi));           // fh 2
    ri.fh = 2;
    request(p, FUSE_READDIRPLUS, 2, raw(ri));
    request(p, FUSE_LOOKUP, 1, "", {"etc"});
    request(p, FUSE_LOOKUP, 2, "", {"up"});
    request(p, FUSE_LOOKUP, 1, "", {".."});
    fuse_create_in ci{};
    ci.flags = 2;
    ci.mode = 0100644;
    request(p, FUSE_CREATE, 1, raw(ci), {"new"});
    fuse_write_in wi{};
    wi.fh = 3;
    wi.size = 5;
    request(p, FUSE_WRITE, 1, raw(wi), {}, "12345");
    fuse_mkdir_in mi{};
    mi.mode = 0755;
    request(p, FUSE_MKDIR, 2, raw(mi), {"new"});
    request(p, FUSE_SYMLINK, 1, "", {"new", "/etc"});
    fuse_rename2_in rn{};
    rn.newdir = 2;
    request(p, FUSE_RENAME2, 1, raw(rn), {"a", "new"});
    request(p, FUSE_UNLINK, 1, "", {"rel"});
    fuse_setattr_in sa{};
    sa.valid = FATTR_MODE | FATTR_SIZE;
    sa.mode = 04777;
    request(p, FUSE_SETATTR, 3, raw(sa));
    fuse_forget_in fi{};
    fi.nlookup = 1;
    request(p, FUSE_FORGET, 3, raw(fi));
    request(p, FUSE_DESTROY, 0, "");
    seeds.add(ro ? "session_ro" : "session_rw", head.str() + p.str());
  }
}
