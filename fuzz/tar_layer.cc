// Image layers (packer/layers.cc): tar archives, plain or compressed
// (the compression is sniffed), applied one after another to a Tree with
// OCI whiteouts, under small limits (so that the limit paths run too).
// The input is up to three layers: a count, then each layer but the last
// as a u16-length-prefixed blob, the last one taking the rest.
//
// Checked: whatever the layers hold, the tree stays a tree with valid
// names (no "", ".", "..", '/' or NUL), no directory reachable twice, file
// contents inside the spool, the bytes within the limit, and, after every
// layer that applied, no directory deeper than the limit.
#include <deque>
#include <unordered_set>

#include "fuzz/support/fuzz.h"
#include "fuzz/support/tar_writer.h"
#include "packer/layers.h"
#include "packer/tree.h"

using namespace spore;
using namespace spore::fuzz;
using pack::Node;

namespace {

pack::Limits small_limits() {
  pack::Limits l;
  l.max_bytes = 8 << 20;
  l.max_entries = 2000;
  l.max_depth = 32;
  l.max_path_length = 1024;
  return l;
}

// depth_ok: the last layer applied without error (a layer that fails the
// depth limit may leave the directories above the refused entry; the pack
// ends there).
void check_tree(const pack::Tree& tree, bool depth_ok) {
  const pack::Limits& lim = tree.limits();
  std::unordered_set<const Node*> dirs_seen = {&tree.root()};
  std::deque<std::pair<const Node*, uint32_t>> q = {{&tree.root(), 0}};
  check(tree.root().kind == Node::Kind::kDir, "the root is not a directory");
  while (!q.empty()) {
    auto [d, depth] = q.front();
    q.pop_front();
    for (const auto& [name, c] : d->children) {
      check(c != nullptr, "a null node in the tree");
      check(!name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
                name.find('\0') == std::string::npos,
            "an invalid name in the tree", name);
      if (c->kind == Node::Kind::kFile)
        check(c->data_offset <= tree.spool().size() && c->size <= tree.spool().size() - c->data_offset,
              "file contents outside the spool", name);
      if (c->kind != Node::Kind::kDir) {
        check(c->children.empty(), "a non-directory with children", name);
        continue;
      }
      check(dirs_seen.insert(c.get()).second, "a directory reachable twice", name);
      if (depth_ok) check(depth + 1 <= lim.max_depth, "a directory deeper than the limit", name);
      q.push_back({c.get(), depth + 1});
    }
  }
  check(tree.spool().size() <= lim.max_bytes, "the spool grew past the byte limit");
  auto st = tree.stats();
  check(st.files + st.dirs + st.symlinks + st.other <= 3 * lim.max_entries + 1, "more entries than were read");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  uint8_t head = in.u8();
  const size_t layers = 1 + head % 3;
  const bool with_diff_id = head & 0x80;
  auto spool = pack::Spool::create(scratch_dir());
  if (!spool.ok()) fail("Spool::create", spool.error().message);
  pack::Tree tree(std::move(*spool), small_limits());
  tree.spool().set_limit(tree.limits().max_bytes);
  for (size_t i = 0; i < layers; i++) {
    std::string blob = i + 1 < layers ? in.bytes(in.u16()) : in.rest();
    std::string path = scratch_file("layer", blob);
    pack::LayerStats stats;
    // A wrong diff_id, when asked for: the layer must then be refused.
    auto st = pack::apply_layer(tree, path, static_cast<uint32_t>(i + 1), &stats,
                                with_diff_id ? "sha256:" + std::string(64, '0') : "");
    if (with_diff_id) check(!st.ok(), "a layer whose diff_id does not match was accepted");
    check_tree(tree, st.ok());
    if (!st.ok()) break;
  }
  return 0;
}

void spore::fuzz::write_seeds(Seeds& seeds) {
  auto one = [](const std::string& blob) { return Output().u8(0).bytes(blob).str(); };
  auto base = [](MemTar::Filter f) {
    return MemTar(f)
        .dir("bin")
        .file("bin/sh", std::string(3000, 's'), 0755)
        .symlink("bin/ls", "sh")
        .hardlink("bin/busybox", "bin/sh")
        .dir("etc")
        .file("etc/passwd", "root:x:0:0::/root:/bin/sh\n")
        .dir("etc/deep/er/still")
        .file("etc/deep/er/still/f", "x")
        .fifo("run/fifo")
        .device("dev/null")
        .file("/abs/path", "absolute")
        .file("./dot/slash", "dot")
        .file("../escape", "no")
        .symlink("link-out", "../../etc")
        .file("link-out/through", "resolved inside")
        .file("x", "attrs", 0644, {{"user.mime", "text/plain"}, {"security.capability", std::string(20, '\1')}})
        .sparse("sparse", 1 << 20, "head")
        .finish();
  };
  seeds.add("plain", one(base(MemTar::kNone)));
  seeds.add("gzip", one(base(MemTar::kGzip)));
  seeds.add("zstd", one(base(MemTar::kZstd)));
  // Two layers: the second whites out, makes a directory opaque, and
  // replaces a directory with a file.
  std::string lower = MemTar().dir("a").file("a/1", "1").file("a/2", "2").dir("b").file("b/1", "1").finish();
  std::string upper = MemTar()
                          .file(".wh.b", "")
                          .file("a/.wh..wh..opq", "")
                          .file("a/3", "3")
                          .file("etc", "now a file")
                          .file("a/.wh..wh.plnk", "")
                          .file(".wh...", "")
                          .finish();
  seeds.add("whiteouts", Output().u8(1).u16(static_cast<uint16_t>(lower.size())).bytes(lower).bytes(upper).str());
  std::string deep;
  for (int i = 0; i < 40; i++) deep += "d/";
  seeds.add("too_deep", one(MemTar().file(deep + "f", "deep").finish()));
}
