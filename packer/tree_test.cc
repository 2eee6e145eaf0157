#include "packer/tree.h"

#include <catch2/catch.hpp>

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
