#include "packer/layers.h"

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "base/sha256.h"
#include "packer/test_tar.h"

using namespace spore;
using namespace spore::pack;
using spore::pack::testing::Compression;
using spore::pack::testing::TarWriter;
using spore::pack::testing::TempDir;

namespace {

Tree make_tree() { return Tree(std::move(*Spool::create("/tmp"))); }

std::string content(const Tree& t, const std::string& path) {
  auto n = t.lookup(path);
  REQUIRE(n);
  REQUIRE(n->kind == Node::Kind::kFile);
  std::string s(n->size, '\0');
  REQUIRE(t.spool().read(n->data_offset, s.data(), s.size()).ok());
  return s;
}

std::string slurp_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Data compressed as one stream (as a layer blob is).
void write_compressed(const std::string& path, const std::string& data, Compression c) {
  archive* a = archive_write_new();
  archive_write_set_format_raw(a);
  if (c == Compression::kGzip) archive_write_add_filter_gzip(a);
  if (c == Compression::kZstd) archive_write_add_filter_zstd(a);
  REQUIRE(archive_write_open_filename(a, path.c_str()) == ARCHIVE_OK);
  archive_entry* e = archive_entry_new();
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_pathname(e, "raw");
  REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
  archive_entry_free(e);
  REQUIRE(archive_write_data(a, data.data(), data.size()) == static_cast<la_ssize_t>(data.size()));
  REQUIRE(archive_write_close(a) == ARCHIVE_OK);
  archive_write_free(a);
}

std::vector<std::string> names(const Tree& t, const std::string& dir) {
  auto n = dir.empty() ? t.root_ptr() : t.lookup(dir);
  REQUIRE(n);
  std::vector<std::string> out;
  for (const auto& [name, c] : n->children) out.push_back(name);
  return out;
}

void apply(Tree& t, const std::string& path, uint32_t layer, LayerStats* st = nullptr) {
  auto s = apply_layer(t, path, layer, st);
  INFO((s.ok() ? std::string() : s.error().message));
  REQUIRE(s.ok());
}

}  // namespace

TEST_CASE("plain, gzip, zstd and xz layers apply with their metadata", "[pack][layers]") {
  TempDir tmp;
  const std::string cap("\x01\x00\x00\x02\x00\x04\x00\x00", 8);  // binary xattr value with NULs
  auto c = GENERATE(Compression::kNone, Compression::kGzip, Compression::kZstd, Compression::kXz);
  {
    TarWriter w(tmp / "layer", c);
    w.dir("usr/", {0755, 0, 0, 1700000001});
    w.file("usr/bin/ping", "PING", {04755, 0, 0, 1700000002, 123456789, {{"security.capability", cap}, {"user.a", "b"}}});
    w.file("./etc/conf", "conf", {0640, 1000, 2000});
    w.fifo("run/fifo");
  }
  Tree t = make_tree();
  LayerStats st;
  apply(t, tmp / "layer", 1, &st);
  CHECK(st.entries == 4);
  CHECK(st.bytes == 8);
  CHECK(st.skipped.empty());
  auto ping = t.lookup("usr/bin/ping");
  REQUIRE(ping);
  CHECK(content(t, "usr/bin/ping") == "PING");
  CHECK(ping->mode == 04755);
  CHECK(ping->mtime == 1700000002);
  CHECK(ping->mtime_nsec == 123456789);
  CHECK(ping->layer == 1);
  REQUIRE(ping->xattrs.size() == 2);
  CHECK(ping->xattrs[0] == std::make_pair(std::string("security.capability"), cap));
  CHECK(ping->xattrs[1].first == "user.a");
  auto conf = t.lookup("etc/conf");
  CHECK(conf->uid == 1000);
  CHECK(conf->gid == 2000);
  CHECK(conf->mode == 0640);
  CHECK(t.lookup("usr")->mtime == 1700000001);
  CHECK(t.lookup("etc")->mode == 0755);  // created like tar does
  CHECK(t.lookup("run/fifo")->kind == Node::Kind::kFifo);
}

TEST_CASE("whiteouts remove lower-layer entries only", "[pack][layers]") {
  TempDir tmp;
  {
    TarWriter w(tmp / "1");
    w.file("a/x", "x");
    w.file("a/y", "y");
    w.file("b/deep/file", "f");
    w.file("top", "t");
  }
  {
    TarWriter w(tmp / "2", Compression::kGzip);
    w.whiteout("a", "x");
    w.whiteout("", "b");          // a whole directory
    w.whiteout("a", "missing");   // nothing to hide
    w.file("new", "n");
    w.whiteout("", "new");        // same layer: stays
    w.whiteout("", "..");         // nonsense
  }
  Tree t = make_tree();
  apply(t, tmp / "1", 1);
  LayerStats st;
  apply(t, tmp / "2", 2, &st);
  CHECK(names(t, "a") == std::vector<std::string>{"y"});
  CHECK_FALSE(t.lookup("b"));
  CHECK(t.lookup("top"));
  CHECK(content(t, "new") == "n");
  CHECK_FALSE(t.lookup(".wh.new"));  // whiteout files never appear
  CHECK(st.whiteouts == 4);
  CHECK(st.skipped.size() == 1);
}

TEST_CASE("an opaque directory drops lower children and keeps this layer's", "[pack][layers]") {
  TempDir tmp;
  {
    TarWriter w(tmp / "1");
    w.file("d/old", "o");
    w.file("d/sub/lower", "l");
    w.file("d/sub2/lower", "l");
    w.file("other/keep", "k");
  }
  {
    TarWriter w(tmp / "2", Compression::kZstd);
    w.dir("d/", {0700});
    w.file("d/new", "n");
    w.dir("d/sub/");  // this layer's directory, lower content hidden
    w.file("d/sub/upper", "u");
    w.opaque("d");  // after the entries it must keep
  }
  Tree t = make_tree();
  apply(t, tmp / "1", 1);
  apply(t, tmp / "2", 2);
  CHECK(names(t, "d") == std::vector<std::string>{"new", "sub"});
  CHECK(names(t, "d/sub") == std::vector<std::string>{"upper"});
  CHECK(t.lookup("d")->mode == 0700);
  CHECK(t.lookup("other/keep"));

  // An opaque marker at the top empties the whole lower image.
  {
    TarWriter w(tmp / "3");
    w.file("/.wh..wh..opq", "");
    w.file("only", "o");
  }
  apply(t, tmp / "3", 3);
  CHECK(names(t, "") == std::vector<std::string>{"only"});
}

TEST_CASE("a whiteout never hides what its own layer added", "[pack][layers]") {
  // OCI: whiteouts apply to lower layers only. Entries this layer put at or
  // below the whited-out name stay, whichever order the tar has them in.
  TempDir tmp;
  {
    TarWriter w(tmp / "1");
    w.file("lower/file", "L");
    w.file("d/old", "o");
    w.file("d/sub/old", "o");
    w.file("e/sub/old", "o");
    w.file("gone/x", "x");
  }
  {
    TarWriter w(tmp / "2");
    // A hard link this layer adds to a lower file, then an opaque marker
    // and a whiteout of its own name in the same layer.
    w.hardlink("h/link", "lower/file");
    w.opaque("h");
    w.hardlink("h2/link", "lower/file");
    w.whiteout("h2", "link");
    // New entries inside lower directories (no directory entry of their
    // own), then the directory whited out or made opaque.
    w.file("d/new", "n");
    w.whiteout("", "d");
    w.file("e/sub/new", "n");
    w.opaque("e");
    w.whiteout("", "gone");
  }
  Tree t = make_tree();
  apply(t, tmp / "1", 1);
  apply(t, tmp / "2", 2);
  CHECK(t.lookup("h/link") == t.lookup("lower/file"));
  CHECK(t.lookup("h2/link") == t.lookup("lower/file"));
  CHECK(names(t, "d") == std::vector<std::string>{"new"});  // the lower entries went, this layer's stayed
  CHECK(content(t, "d/new") == "n");
  CHECK(names(t, "e") == std::vector<std::string>{"sub"});
  CHECK(names(t, "e/sub") == std::vector<std::string>{"new"});
  CHECK_FALSE(t.lookup("gone"));
  CHECK(content(t, "lower/file") == "L");
}

TEST_CASE("hard links share the node, also across layers", "[pack][layers]") {
  TempDir tmp;
  {
    TarWriter w(tmp / "1");
    w.file("usr/bin/tool", "TOOL", {0755});
  }
  {
    TarWriter w(tmp / "2");
    w.hardlink("usr/bin/alias", "usr/bin/tool");
    w.hardlink("/abs/alias", "/usr/bin/tool");     // absolute names are taken from the root
    w.hardlink("bad/missing", "usr/bin/nothing");  // no target: skipped
    w.hardlink("bad/up", "../../etc/passwd");      // climbs: skipped
    w.hardlink("bad/dir", "usr/bin");              // directories cannot be linked
  }
  Tree t = make_tree();
  apply(t, tmp / "1", 1);
  LayerStats st;
  apply(t, tmp / "2", 2, &st);
  CHECK(t.lookup("usr/bin/alias") == t.lookup("usr/bin/tool"));
  CHECK(t.lookup("abs/alias") == t.lookup("usr/bin/tool"));
  CHECK(content(t, "usr/bin/alias") == "TOOL");
  CHECK(st.hardlinks == 2);
  CHECK(st.skipped_total() == 3);
  CHECK_FALSE(t.lookup("bad"));  // a skipped entry does not even create its parent
}

TEST_CASE("symlinks are kept verbatim and chains resolve inside the tree", "[pack][layers]") {
  TempDir tmp;
  {
    TarWriter w(tmp / "1");
    w.dir("real/");
    w.symlink("c", "real");
    w.symlink("b", "./c");
    w.symlink("a", "/b");
    w.symlink("dangling", "../../../nowhere");
  }
  {
    TarWriter w(tmp / "2");
    w.file("a/file", "through the chain");
  }
  Tree t = make_tree();
  apply(t, tmp / "1", 1);
  apply(t, tmp / "2", 2);
  CHECK(t.lookup("a")->kind == Node::Kind::kSymlink);
  CHECK(t.lookup("a")->target == "/b");
  CHECK(t.lookup("dangling")->target == "../../../nowhere");
  CHECK(content(t, "real/file") == "through the chain");
}

TEST_CASE("entries climbing out are skipped, absolute ones land inside", "[pack][layers]") {
  TempDir tmp;
  {
    TarWriter w(tmp / "1", Compression::kGzip);
    w.file("../../etc/passwd", "root::0:0");
    w.file("ok/../../../x", "x");
    w.file("/abs/path", "abs");
    w.file("//double/slash", "d");
    w.dir("./");  // the root itself
  }
  Tree t = make_tree();
  LayerStats st;
  apply(t, tmp / "1", 1, &st);
  CHECK(st.skipped.at("path climbs out of the root (..)") == 2);
  CHECK(content(t, "abs/path") == "abs");
  CHECK(content(t, "double/slash") == "d");
  CHECK(names(t, "") == std::vector<std::string>{"abs", "double"});
  CHECK_FALSE(st.skipped_examples.empty());
}

TEST_CASE("a symlink cannot carry later entries out of the tree", "[pack][layers]") {
  TempDir tmp;
  // A host directory the symlinks point at: it must stay untouched.
  std::filesystem::create_directories(tmp / "host");
  {
    TarWriter w(tmp / "1");
    w.symlink("evil", "../../../../../../.." + tmp.path + "/host");
    w.symlink("evil_abs", tmp.path + "/host");
    w.symlink("etc", "../../../etc");
  }
  {
    TarWriter w(tmp / "2");
    w.file("evil/planted", "p");
    w.file("evil_abs/planted2", "p");
    w.file("etc/passwd", "x");
    w.dir("evil_abs/sub/");
  }
  Tree t = make_tree();
  apply(t, tmp / "1", 1);
  LayerStats st;
  apply(t, tmp / "2", 2, &st);
  CHECK(std::filesystem::is_empty(tmp / "host"));
  // The links resolved as the guest would see them: inside the image.
  std::string inside = tmp.path.substr(1) + "/host";
  CHECK(content(t, inside + "/planted") == "p");
  CHECK(content(t, inside + "/planted2") == "p");
  CHECK(t.lookup(inside + "/sub")->kind == Node::Kind::kDir);
  // "etc" -> "../../../etc" climbs to the root and back down to itself: a loop.
  CHECK(t.lookup("etc")->kind == Node::Kind::kSymlink);
  CHECK(st.skipped.at("a parent is not a directory") == 1);
}

TEST_CASE("devices are skipped, replacing changes the kind", "[pack][layers]") {
  TempDir tmp;
  {
    TarWriter w(tmp / "1");
    w.device("dev/null", false, 1, 3);
    w.device("dev/sda", true, 8, 0);
    w.file("x/child", "c");
    w.file("y", "file");
    w.file("d/keep", "k");
    w.dir("d/", {0755, 1, 1});
  }
  {
    TarWriter w(tmp / "2");
    w.file("x", "now a file");
    w.dir("y/");
    w.file("y/z", "z");
    w.dir("d/", {0700, 5, 6});
    w.symlink("x", "y");  // a symlink replaces the file in turn
  }
  Tree t = make_tree();
  LayerStats st;
  apply(t, tmp / "1", 1, &st);
  CHECK(st.skipped.at("device node") == 2);
  CHECK_FALSE(t.lookup("dev"));
  apply(t, tmp / "2", 2);
  CHECK(t.lookup("x")->kind == Node::Kind::kSymlink);
  CHECK(t.lookup("y")->kind == Node::Kind::kDir);
  CHECK(content(t, "y/z") == "z");
  auto d = t.lookup("d");
  CHECK(d->mode == 0700);
  CHECK(d->uid == 5);
  CHECK(d->gid == 6);
  CHECK(content(t, "d/keep") == "k");  // a directory entry keeps the children
}

TEST_CASE("a huge file is streamed, not held in memory", "[pack][layers]") {
  TempDir tmp;
  constexpr uint64_t kSize = 384ull << 20;
  auto gen = [](uint64_t off, std::string* chunk) {
    chunk->assign(1 << 20, '\0');
    for (size_t i = 0; i < chunk->size(); i += 4096) std::memcpy(chunk->data() + i, &off, sizeof off), off += 4096;
  };
  {
    TarWriter w(tmp / "big", Compression::kZstd);
    w.big_file("big.bin", kSize, gen);
  }
  struct rusage before {};
  ::getrusage(RUSAGE_SELF, &before);
  Tree t = make_tree();
  LayerStats st;
  apply(t, tmp / "big", 1, &st);
  struct rusage after {};
  ::getrusage(RUSAGE_SELF, &after);
  CHECK(st.bytes == kSize);
  auto n = t.lookup("big.bin");
  REQUIRE(n);
  CHECK(n->size == kSize);
  for (uint64_t off : {uint64_t{0}, uint64_t{4096} * 1000, kSize - 4096}) {
    uint64_t v = 0;
    REQUIRE(t.spool().read(n->data_offset + off, &v, sizeof v).ok());
    CHECK(v == off);
  }
  // ru_maxrss is in KiB; the whole file would be 384 MiB.
  CHECK(after.ru_maxrss - before.ru_maxrss < 64 * 1024);
}

TEST_CASE("a layer's uncompressed stream is checked against its diff_id", "[pack][layers]") {
  TempDir tmp;
  for (auto c : {Compression::kNone, Compression::kGzip, Compression::kZstd, Compression::kXz}) {
    {
      TarWriter w(tmp / "plain");
      w.file("a", "alpha");
      w.file("dir/b", std::string(70000, 'b'));
    }
    {
      TarWriter w(tmp / "layer", c);
      w.file("a", "alpha");
      w.file("dir/b", std::string(70000, 'b'));
    }
    std::ifstream f(tmp / "plain", std::ios::binary);
    std::string plain((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    // The whole stream counts, the padding after the end-of-archive blocks too.
    const std::string diff_id = "sha256:" + digest_hex(sha256(plain));
    INFO("compression " << static_cast<int>(c) << ", tar of " << plain.size() << " bytes");
    Tree t = make_tree();
    auto s = apply_layer(t, tmp / "layer", 1, nullptr, diff_id);
    INFO((s.ok() ? std::string() : s.error().message));
    CHECK(s.ok());
    CHECK(content(t, "dir/b").size() == 70000);

    Tree t2 = make_tree();
    s = apply_layer(t2, tmp / "layer", 1, nullptr, "sha256:" + std::string(64, '0'));
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().kind == ErrorKind::kCorrupt);
    CHECK(s.error().message.find("diff_id") != std::string::npos);
  }
}

TEST_CASE("broken archives are errors, empty ones are empty layers", "[pack][layers]") {
  TempDir tmp;
  {
    TarWriter w(tmp / "good", Compression::kGzip);
    for (int i = 0; i < 50; i++) w.file("f" + std::to_string(i), std::string(10000, static_cast<char>('a' + i % 26)));
  }
  auto size = std::filesystem::file_size(tmp / "good");
  std::filesystem::copy_file(tmp / "good", tmp / "truncated");
  std::filesystem::resize_file(tmp / "truncated", size / 2);
  Tree t = make_tree();
  auto s = apply_layer(t, tmp / "truncated", 1);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().kind == ErrorKind::kCorrupt);
  CHECK(s.error().message.find("layer 1") != std::string::npos);

  std::ofstream(tmp / "garbage") << "this is not a tar archive at all, not even close; padding padding padding";
  CHECK_FALSE(apply_layer(t, tmp / "garbage", 1).ok());
  CHECK(apply_layer(t, tmp / "missing", 1).error().kind == ErrorKind::kNotFound);

  std::ofstream(tmp / "empty").close();
  LayerStats st;
  CHECK(apply_layer(t, tmp / "empty", 1, &st).ok());
  CHECK(st.entries == 0);
}

TEST_CASE("import_dir reads a host directory with the same rules", "[pack][layers]") {
  TempDir tmp;
  std::string root = tmp / "root";
  std::filesystem::create_directories(root + "/usr/bin");
  std::ofstream(root + "/usr/bin/tool") << "TOOL";
  ::chmod((root + "/usr/bin/tool").c_str(), 04711);
  REQUIRE(::link((root + "/usr/bin/tool").c_str(), (root + "/usr/bin/alias").c_str()) == 0);
  REQUIRE(::symlink("usr/bin", (root + "/bin").c_str()) == 0);
  REQUIRE(::symlink("/../../etc/passwd", (root + "/escape").c_str()) == 0);
  REQUIRE(::mkfifo((root + "/fifo").c_str(), 0600) == 0);
  std::ofstream(root + "/.wh.kept") << "";
  int sock = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::string sock_path = root + "/sock";
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path.c_str());
  REQUIRE(::bind(sock, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  ::close(sock);

  Tree t = make_tree();
  LayerStats st;
  auto s = import_dir(t, root, &st);
  INFO((s.ok() ? "" : s.error().message));
  REQUIRE(s.ok());
  CHECK(content(t, "usr/bin/tool") == "TOOL");
  CHECK(t.lookup("usr/bin/tool")->mode == 04711);
  CHECK(t.lookup("usr/bin/alias") == t.lookup("usr/bin/tool"));
  CHECK(t.lookup("bin")->target == "usr/bin");
  CHECK(t.lookup("escape")->target == "/../../etc/passwd");
  CHECK(t.lookup("fifo")->kind == Node::Kind::kFifo);
  CHECK(t.lookup(".wh.kept"));
  CHECK_FALSE(t.lookup("sock"));
  CHECK(st.skipped.at("socket") == 1);
  CHECK(st.hardlinks == 1);
  CHECK(st.bytes == 4);
  CHECK_FALSE(import_dir(t, tmp / "nope").ok());
}

namespace {

Tree limited_tree(const Limits& l) { return Tree(std::move(*Spool::create("/tmp")), l); }

Error apply_err(Tree& t, const std::string& path, uint32_t layer = 1) {
  auto s = apply_layer(t, path, layer);
  REQUIRE_FALSE(s.ok());
  INFO(s.error().message);
  CHECK(s.error().kind == ErrorKind::kCorrupt);  // exit 65
  CHECK(s.error().message.find('\n') == std::string::npos);
  return s.error();
}

}  // namespace

TEST_CASE("a sparse entry declaring a terabyte is refused before a byte is written", "[pack][layers][limits]") {
  TempDir tmp;
  {
    TarWriter w(tmp / "layer", Compression::kGzip);
    w.file("ok", "fine");
    w.sparse_file("huge", uint64_t{1} << 40, "data");
  }
  Tree t = make_tree();  // the default limits
  Error e = apply_err(t, tmp / "layer");
  CHECK_THAT(e.message, Catch::Contains("--max-image-size"));
  CHECK_THAT(e.message, Catch::Contains("32 GiB"));
  CHECK(t.spool().size() < 4096);

  // Below the limit a sparse entry is fine: its holes become zeros.
  {
    TarWriter w(tmp / "small", Compression::kZstd);
    w.sparse_file("sparse", 1 << 20, "head");
  }
  Tree t2 = make_tree();
  apply(t2, tmp / "small", 1);
  std::string c = content(t2, "sparse");
  CHECK(c.size() == 1 << 20);
  CHECK(c.substr(0, 4) == "head");
  CHECK(c.find_first_not_of('\0', 4) == std::string::npos);
}

TEST_CASE("compression bombs stop at the size limit", "[pack][layers][limits]") {
  TempDir tmp;
  constexpr uint64_t kBomb = 64ull << 20;
  auto zeros = [](uint64_t, std::string* chunk) { chunk->assign(1 << 20, '\0'); };
  Limits l;
  l.max_bytes = 8 << 20;
  for (auto c : {Compression::kGzip, Compression::kZstd}) {
    INFO("compression " << static_cast<int>(c));
    {
      TarWriter w(tmp / "bomb", c);
      w.big_file("zeros", kBomb, zeros);
    }
    CHECK(std::filesystem::file_size(tmp / "bomb") < kBomb / 100);
    Tree t = limited_tree(l);
    Error e = apply_err(t, tmp / "bomb");
    CHECK_THAT(e.message, Catch::Contains("--max-image-size"));
    CHECK_THAT(e.message, Catch::Contains("8 MiB"));
    CHECK(t.spool().size() <= l.max_bytes);  // the disk never got more

    // Zeros after the end-of-archive blocks are still decompressed (the
    // diff_id covers them) and count as well, though nothing is stored.
    std::filesystem::remove(tmp / "bomb");
    {
      TarWriter w(tmp / "small.tar");
      w.file("a", "a");
    }
    std::string tail = slurp_file(tmp / "small.tar") + std::string(16 << 20, '\0');
    write_compressed(tmp / "tail", tail, c);
    Tree t2 = limited_tree(l);
    auto s = apply_layer(t2, tmp / "tail", 1, nullptr, "sha256:" + digest_hex(sha256(tail)));
    REQUIRE_FALSE(s.ok());
    CHECK_THAT(s.error().message, Catch::Contains("--max-image-size"));
  }
}

TEST_CASE("entries, depth and path length are capped", "[pack][layers][limits]") {
  TempDir tmp;
  Limits l;
  l.max_entries = 100;
  l.max_depth = 8;
  l.max_path_length = 100;

  SECTION("entries, counted over all layers") {
    {
      TarWriter w(tmp / "1");
      for (int i = 0; i < 60; i++) w.file("f" + std::to_string(i), "");
    }
    Tree t = limited_tree(l);
    apply(t, tmp / "1", 1);
    CHECK_THAT(apply_err(t, tmp / "1", 2).message, Catch::Contains("more than 100 entries"));
  }
  SECTION("depth, as written") {
    {
      TarWriter w(tmp / "1");
      w.file("1/2/3/4/5/6/7/eight", "");  // depth 8: allowed
      w.file("1/2/3/4/5/6/7/8/nine", "");
    }
    Tree t = limited_tree(l);
    CHECK_THAT(apply_err(t, tmp / "1").message, Catch::Contains("--max-path-depth"));
    CHECK(t.lookup("1/2/3/4/5/6/7/eight"));
  }
  SECTION("depth, where symlinks lead") {
    {
      TarWriter w(tmp / "1");
      w.dir("1/2/3/4/5/6/");
      w.symlink("deep", "1/2/3/4/5/6");
      w.file("deep/x/y", "");  // lands at 1/2/3/4/5/6/x/y: depth 8
      w.file("deep/x/y2/z", "");
    }
    Tree t = limited_tree(l);
    CHECK_THAT(apply_err(t, tmp / "1").message, Catch::Contains("--max-path-depth"));
  }
  SECTION("names and link targets") {
    {
      TarWriter w(tmp / "1");
      w.file(std::string(101, 'n'), "");
    }
    {
      TarWriter w(tmp / "2");
      w.symlink("l", std::string(101, 't'));
    }
    {
      TarWriter w(tmp / "3");
      w.file("a", "");
      w.hardlink("b", "./" + std::string(99, '/') + "a");
    }
    for (const char* layer : {"1", "2", "3"}) {
      Tree t = limited_tree(l);
      CHECK_THAT(apply_err(t, tmp / layer).message, Catch::Contains("--max-path-length"));
    }
  }
  SECTION("a host directory") {
    std::string dir = tmp / "root/1/2/3/4/5/6/7/8/9";  // depth 9
    std::filesystem::create_directories(dir);
    Tree t = limited_tree(l);
    auto s = import_dir(t, tmp / "root");
    REQUIRE_FALSE(s.ok());
    CHECK_THAT(s.error().message, Catch::Contains("--max-path-depth"));
    // A sparse terabyte on the host is refused before it is copied.
    std::filesystem::remove_all(tmp / "root/1");
    std::ofstream(tmp / "root/huge").close();
    std::filesystem::resize_file(tmp / "root/huge", uint64_t{1} << 40);
    Tree t1 = make_tree();
    s = import_dir(t1, tmp / "root");
    REQUIRE_FALSE(s.ok());
    CHECK_THAT(s.error().message, Catch::Contains("--max-image-size"));
    CHECK(t1.spool().size() == 0);
    std::filesystem::remove(tmp / "root/huge");
    for (int i = 0; i < 120; i++) std::ofstream(tmp / ("root/f" + std::to_string(i)));
    std::filesystem::remove_all(tmp / "root/1");
    Tree t2 = limited_tree(l);
    s = import_dir(t2, tmp / "root");
    REQUIRE_FALSE(s.ok());
    CHECK_THAT(s.error().message, Catch::Contains("--max-entries"));
  }
}
