#include "packer/tree.h"

#include <pthread.h>

#include <catch2/catch.hpp>
#include <functional>

#include "packer/layers.h"
#include "packer/test_tar.h"

using namespace spore;
using namespace spore::pack;

namespace {
Tree make_tree() { return Tree(std::move(*Spool::create("/tmp"))); }

std::shared_ptr<Node> add(Tree& t, const std::string& path, Node::Kind kind, const std::string& target = "") {
  std::string name;
  auto dir = t.parent_of(path, &name, 1);
  REQUIRE(dir);
  auto n = std::make_shared<Node>();
  n->kind = kind;
  n->target = target;
  dir->children[name] = n;
  return n;
}
}  // namespace

TEST_CASE("paths are normalised and may not climb out", "[pack][tree]") {
  CHECK(*normalize_path("/usr//bin/./env") == "usr/bin/env");
  CHECK(*normalize_path("./a/") == "a");
  CHECK(normalize_path("a/../../etc/passwd").error().kind == ErrorKind::kCorrupt);
  CHECK_FALSE(normalize_path("../x").ok());
}

TEST_CASE("parent_of creates missing directories like tar", "[pack][tree]") {
  Tree t = make_tree();
  add(t, "a/b/c", Node::Kind::kFile);
  auto b = t.lookup("a/b");
  REQUIRE(b);
  CHECK(b->kind == Node::Kind::kDir);
  CHECK(b->mode == 0755);
  CHECK(t.lookup("a/b/c")->kind == Node::Kind::kFile);
}

TEST_CASE("symlinks are followed only inside the tree", "[pack][tree]") {
  Tree t = make_tree();
  add(t, "usr/bin/env", Node::Kind::kFile);
  add(t, "bin", Node::Kind::kSymlink, "usr/bin");
  add(t, "abs", Node::Kind::kSymlink, "/usr");
  add(t, "up", Node::Kind::kSymlink, "../../../../usr");
  add(t, "usr/lib/rel", Node::Kind::kSymlink, "../bin");
  CHECK(t.lookup("bin/env") == t.lookup("usr/bin/env"));
  CHECK(t.lookup("abs/bin/env") == t.lookup("usr/bin/env"));
  CHECK(t.lookup("up/bin/env") == t.lookup("usr/bin/env"));  // ".." stops at the root
  CHECK(t.lookup("usr/lib/rel/env") == t.lookup("usr/bin/env"));
  CHECK(t.lookup("bin")->kind == Node::Kind::kSymlink);
  CHECK(t.lookup("bin", true)->kind == Node::Kind::kDir);

  // A new entry under a symlinked directory lands in the real directory.
  add(t, "bin/newtool", Node::Kind::kFile);
  CHECK(t.lookup("usr/bin/newtool"));
}

TEST_CASE("symlink loops and files in the way fail cleanly", "[pack][tree]") {
  Tree t = make_tree();
  add(t, "loop1", Node::Kind::kSymlink, "loop2");
  add(t, "loop2", Node::Kind::kSymlink, "loop1");
  CHECK_FALSE(t.lookup("loop1/x"));
  add(t, "file", Node::Kind::kFile);
  std::string name;
  CHECK_FALSE(t.parent_of("file/x", &name, 1));
}

TEST_CASE("the spool stores and returns file contents", "[pack][tree]") {
  Tree t = make_tree();
  auto a = t.spool().append("hello", 5);
  auto b = t.spool().append("world", 5);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  char buf[6] = {};
  REQUIRE(t.spool().read(*b, buf, 5).ok());
  CHECK(std::string(buf) == "world");
  CHECK_FALSE(t.spool().read(8, buf, 5).ok());
}

namespace {

// Runs fn on a thread with a 256 KiB stack: code that recurses once per
// level of a deep tree overflows it (and crashes the test binary), code
// that keeps its own work list does not.
void on_small_stack(const std::function<void()>& fn) {
  pthread_attr_t attr;
  REQUIRE(pthread_attr_init(&attr) == 0);
  REQUIRE(pthread_attr_setstacksize(&attr, 256 << 10) == 0);
  pthread_t th;
  auto run = [](void* arg) -> void* {
    (*static_cast<const std::function<void()>*>(arg))();
    return nullptr;
  };
  REQUIRE(pthread_create(&th, &attr, run, const_cast<std::function<void()>*>(&fn)) == 0);
  pthread_join(th, nullptr);
  pthread_attr_destroy(&attr);
}

// A chain of directories d/d/d/... `levels` deep, made by `layer`.
void deep_chain(Tree& t, int levels, uint32_t layer) {
  Node* at = &t.root();
  for (int i = 0; i < levels; i++) {
    auto n = std::make_shared<Node>();
    n->kind = Node::Kind::kDir;
    n->layer = layer;
    at->children["d"] = n;
    at = n.get();
  }
  auto f = std::make_shared<Node>();
  f->layer = layer;
  at->children["leaf"] = f;
}

}  // namespace

TEST_CASE("a deep tree is counted, pruned and freed without recursion", "[pack][tree]") {
  // The depth of a tree is the image's choice (symlinks lead past any
  // limit on a single path); no walk over it may use the stack per level.
  constexpr int kLevels = 100000;
  spore::pack::testing::TempDir tmp;
  {
    spore::pack::testing::TarWriter w(tmp / "opaque");
    w.file("/.wh..wh..opq", "");
  }
  Tree::Stats stats;
  Status opaque;
  size_t left = 0;
  on_small_stack([&] {
    Tree t = make_tree();
    deep_chain(t, kLevels, 1);
    stats = t.stats();
    // An opaque marker in layer 2 prunes everything layer 1 made: the
    // whole chain, walked to its bottom.
    opaque = apply_layer(t, tmp / "opaque", 2);
    left = t.root().children.size();
    Tree t2 = make_tree();
    deep_chain(t2, kLevels, 1);
  });  // both trees are freed on the small stack too
  CHECK(stats.dirs == kLevels);
  CHECK(stats.files == 1);
  CHECK(opaque.ok());
  CHECK(left == 0);
}
