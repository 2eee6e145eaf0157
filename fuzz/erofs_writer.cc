// The EROFS writer (packer/rootfs/erofs.cc), round trip: the input builds
// a Tree (files with contents, directories, symlinks, fifos, hard links,
// xattrs, any names, modes, owners and times), write_erofs() makes an
// image of it, and fuzz/support/erofs_reader.cc, written from
// doc/rootfs-format.md rather than from the writer, reads the image back.
// Checked: a tree with valid names and targets is always written; a tree
// the writer refuses has something invalid in it; every entry of the tree
// comes back with its type, mode, owner, time, size, contents or target,
// link count and kept xattrs, and nothing else is in the image.
#include <sys/stat.h>

#include <deque>
#include <map>
#include <set>
#include <unordered_map>

#include "fuzz/support/erofs_reader.h"
#include "fuzz/support/fuzz.h"
#include "packer/rootfs/erofs.h"
#include "packer/tree.h"

using namespace spore;
using namespace spore::fuzz;
using pack::Node;

namespace {

std::string name_from(Input& in) {
  static const char* const kNames[] = {"bin", "etc", "usr", "a", "b", ".hidden", "z", "\x7f", "\xff", "long"};
  uint8_t sel = in.u8();
  if (sel < 160) return kNames[sel % 10] + (sel >= 80 ? std::to_string(sel) : "");
  if (sel < 250) return in.str8();
  if (sel == 250) return std::string(255, 'n');
  if (sel == 251) return std::string(256, 'n');
  if (sel == 252) return ".";
  if (sel == 253) return "..";
  if (sel == 254) return "";
  return std::string("a/b");
}

int64_t time_from(Input& in) {
  uint8_t sel = in.u8();
  if (sel < 128) return 1700000000;  // most entries share one time: compact inodes
  if (sel < 200) return 1700000000 + sel;
  return static_cast<int64_t>(in.u64());
}

struct Built {
  bool valid = true;       // nothing the format refuses (names, targets, times, sizes)
  bool has_xattrs = false;  // (whose fit in a block is not predicted here)
};

// Builds a tree from the input. Directories are numbered as they are made.
void build(Input& in, pack::Tree& tree, Built* b) {
  std::vector<std::shared_ptr<Node>> dirs = {tree.root_ptr()};
  std::vector<std::shared_ptr<Node>> files;
  tree.root().mtime = 1700000000;
  for (int steps = 0; !in.empty() && steps < 300; steps++) {
    uint8_t op = in.u8() % 7;
    std::shared_ptr<Node> parent = dirs[in.u8() % dirs.size()];
    std::string name = name_from(in);
    if (name.empty() || name == "." || name == ".." || name.size() > 255 || name.find('/') != std::string::npos ||
        name.find('\0') != std::string::npos)
      b->valid = false;
    if (op == 6) {  // a hard link to an existing file
      if (files.empty()) continue;
      parent->children[name] = files[in.u8() % files.size()];
      continue;
    }
    auto n = std::make_shared<Node>();
    n->mode = in.u16() & 07777;
    n->uid = in.u8() < 200 ? in.u8() : in.u32();
    n->gid = in.u8() < 200 ? in.u8() : in.u32();
    n->mtime = time_from(in);
    n->mtime_nsec = in.u8() < 200 ? 0 : in.u32() % 1'100'000'000;
    if (n->mtime_nsec >= 1'000'000'000) b->valid = false;
    switch (op) {
      case 0:
      case 1: {  // a file: up to 12 KiB, made of a repeated pattern from the input
        n->kind = Node::Kind::kFile;
        uint32_t size = in.u16() % (3 * 4096 + 2);
        std::string pattern = in.str8();
        if (pattern.empty()) pattern = "x";
        std::string content;
        while (content.size() < size) content += pattern;
        content.resize(size);
        auto at = tree.spool().append(content.data(), content.size());
        if (!at.ok()) fail("spool append", at.error().message);
        n->data_offset = *at;
        n->size = size;
        files.push_back(n);
        break;
      }
      case 2:
        n->kind = Node::Kind::kDir;
        dirs.push_back(n);
        break;
      case 3: {
        n->kind = Node::Kind::kSymlink;
        uint8_t sel = in.u8();
        n->target = sel < 240 ? in.str8() : sel < 250 ? std::string(4095, 't') : std::string(4096, 't');
        if (n->target.empty() || n->target.size() > 4095 || n->target.find('\0') != std::string::npos)
          b->valid = false;
        break;
      }
      case 4:
        n->kind = Node::Kind::kFifo;
        break;
      case 5: {  // a file with xattrs, some in namespaces EROFS keeps
        n->kind = Node::Kind::kFile;
        static const char* const kPrefixes[] = {"user.", "trusted.", "security.", "system.posix_acl_access",
                                                "system.posix_acl_default", "system.other", "bogus.", "user."};
        std::map<std::string, std::string> xs;
        for (int k = in.u8() % 4; k >= 0; k--) {
          std::string xname = kPrefixes[in.u8() % 8];
          if (xname.back() == '.') xname += in.str8();
          xs[xname] = in.u8() < 250 ? in.str8() : std::string(in.u16(), 'v');
        }
        n->xattrs.assign(xs.begin(), xs.end());
        b->has_xattrs = true;
        files.push_back(n);
        break;
      }
    }
    parent->children[name] = n;
  }
}

// What the image must say about an xattr list: the kept namespaces only.
std::vector<std::pair<std::string, std::string>> kept(const Node& n) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [name, value] : n.xattrs) {
    bool whole = name == "system.posix_acl_access" || name == "system.posix_acl_default";
    bool prefixed = false;
    for (const char* p : {"user.", "trusted.", "security."})
      if (name.starts_with(p) && name.size() > std::string_view(p).size()) prefixed = true;
    if (whole || prefixed) out.emplace_back(name, value);
  }
  return out;
}

uint16_t type_of(Node::Kind k) {
  switch (k) {
    case Node::Kind::kFile: return S_IFREG;
    case Node::Kind::kDir: return S_IFDIR;
    case Node::Kind::kSymlink: return S_IFLNK;
    case Node::Kind::kFifo: return S_IFIFO;
  }
  return 0;
}

void compare(const pack::Tree& tree, const std::string& image) {
  ErofsReader r(image);
  // Names per node (hard links), counted over the whole tree.
  std::unordered_map<const Node*, uint32_t> names;
  {
    std::deque<const Node*> q = {&tree.root()};
    while (!q.empty()) {
      const Node* d = q.front();
      q.pop_front();
      for (const auto& [name, c] : d->children) {
        if (names[c.get()]++ == 0 && c->kind == Node::Kind::kDir) q.push_back(c.get());
      }
    }
  }
  std::unordered_map<const Node*, uint64_t> nid_of;
  std::map<uint64_t, const Node*> node_at;
  struct Item {
    const Node* node;
    uint64_t nid, parent;
  };
  std::deque<Item> q = {{&tree.root(), r.super().root_nid, r.super().root_nid}};
  nid_of[&tree.root()] = r.super().root_nid;
  node_at[r.super().root_nid] = &tree.root();
  while (!q.empty()) {
    Item it = q.front();
    q.pop_front();
    const Node& n = *it.node;
    ErofsInode ino = r.inode(it.nid);
    const std::string where = "nid " + std::to_string(it.nid);
    check((ino.mode & S_IFMT) == type_of(n.kind), "erofs round trip: wrong type", where);
    check((ino.mode & 07777) == (n.mode & 07777), "erofs round trip: wrong permissions", where);
    check(ino.uid == n.uid && ino.gid == n.gid, "erofs round trip: wrong owner", where);
    check(ino.mtime == static_cast<uint64_t>(n.mtime) && ino.mtime_nsec == n.mtime_nsec, "erofs round trip: wrong mtime",
          where);
    check(ino.xattrs == kept(n), "erofs round trip: wrong xattrs", where);
    switch (n.kind) {
      case Node::Kind::kFile: {
        check(ino.nlink == names[&n], "erofs round trip: wrong link count", where);
        std::string want(n.size, '\0');
        if (!tree.spool().read(n.data_offset, want.data(), want.size()).ok()) fail("spool read");
        check(ino.size == n.size && r.data(ino) == want, "erofs round trip: wrong contents", where);
        break;
      }
      case Node::Kind::kSymlink:
        check(r.data(ino) == n.target, "erofs round trip: wrong symlink target", where);
        break;
      case Node::Kind::kFifo:
        check(ino.size == 0 && ino.raw_blkaddr == 0, "erofs round trip: a fifo with data", where);
        break;
      case Node::Kind::kDir: {
        auto ents = r.dirents(ino);
        uint32_t subdirs = 0;
        std::set<std::string> seen;
        for (const auto& e : ents) {
          seen.insert(e.name);
          if (e.name == ".") {
            check(e.nid == it.nid, "erofs round trip: '.' is not the directory", where);
            continue;
          }
          if (e.name == "..") {
            check(e.nid == it.parent, "erofs round trip: '..' is not the parent", where);
            continue;
          }
          auto c = n.children.find(e.name);
          check(c != n.children.end(), "erofs round trip: an entry the tree does not have", where + " " + e.name);
          const Node* child = c->second.get();
          if (child->kind == Node::Kind::kDir) subdirs++;
          check(e.file_type == (child->kind == Node::Kind::kFile      ? 1
                                : child->kind == Node::Kind::kDir     ? 2
                                : child->kind == Node::Kind::kFifo    ? 5
                                                                      : 7),
                "erofs round trip: wrong dirent file type", where + " " + e.name);
          auto [known, fresh] = nid_of.emplace(child, e.nid);
          check(known->second == e.nid, "erofs round trip: hard links with different inodes", e.name);
          auto [other, fresh_nid] = node_at.emplace(e.nid, child);
          check(other->second == child, "erofs round trip: two entries share an inode", e.name);
          if (fresh) q.push_back({child, e.nid, it.nid});
        }
        check(seen.size() == n.children.size() + 2 && seen.count(".") && seen.count(".."),
              "erofs round trip: directory entries missing", where);
        check(ino.nlink == 2 + subdirs, "erofs round trip: wrong directory link count", where);
        break;
      }
    }
  }
  check(r.super().inos == nid_of.size(), "erofs round trip: superblock inode count is wrong");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  auto spool = pack::Spool::create(scratch_dir());
  if (!spool.ok()) fail("Spool::create", spool.error().message);
  pack::Tree tree(std::move(*spool));
  Built b;
  build(in, tree, &b);
  const std::string path = scratch_dir() + "/image.erofs";
  pack::ErofsStats stats;
  auto st = pack::write_erofs(tree, path, {}, &stats);
  if (!st.ok()) {
    check(!b.valid || b.has_xattrs, "the EROFS writer refused a valid tree", st.error().message);
    return 0;
  }
  auto image = read_file(path, 64 << 20);
  if (!image.ok()) fail("cannot read the image back", image.error().message);
  check(stats.bytes == image->size(), "ErofsStats.bytes is not the image size");
  compare(tree, *image);
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  // op, parent dir, name selector, mode, uid sel+uid, gid sel+gid, time sel, nsec sel, then per kind.
  auto entry = [](Output& o, uint8_t op, uint8_t dir, uint8_t name, uint16_t mode) {
    o.u8(op).u8(dir).u8(name);
    if (op == 6) return;
    o.u16(mode).u8(0).u8(0).u8(0).u8(0).u8(0).u8(0);
  };
  Output o;
  entry(o, 2, 0, 0, 0755);  // /bin
  entry(o, 2, 0, 1, 0755);  // /etc
  entry(o, 0, 1, 3, 0644);  // /bin/a: 5000 bytes
  o.u16(5000).str8("hello, world\n");
  entry(o, 0, 2, 3, 04755);  // /etc/a: 4096 bytes
  o.u16(4096).str8("0123456789");
  entry(o, 3, 0, 4, 0777);  // /b -> bin/a
  o.u8(0).str8("bin/a");
  entry(o, 4, 2, 6, 0600);  // /etc/z: fifo
  entry(o, 6, 2, 5, 0);     // /etc/.hidden: hard link to the first file
  o.u8(0);
  entry(o, 5, 1, 7, 0755);  // /bin/\x7f with xattrs
  o.u8(2).u8(0).str8("mime").u8(0).str8("text/plain").u8(3).u8(0).str8("x").u8(6).str8("x").u8(0).str8("y");
  entry(o, 1, 0, 8, 0644);  // /\xff: empty file
  o.u16(0).str8("");
  seeds.add("small_tree", std::string(o.str()));
  Output deep;
  for (uint8_t i = 0; i < 60; i++) {
    deep.u8(2).u8(i).u8(3).u16(0755).u8(0).u8(0).u8(0).u8(0).u8(128 + i % 60).u8(0);
  }
  seeds.add("deep", deep.str());
}
