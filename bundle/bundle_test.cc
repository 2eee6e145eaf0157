#include "bundle/bundle.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <random>

#include "base/codec.h"
#include "base/sha256.h"
#include "base/strings.h"
#include "bundle/app_config.h"
#include "bundle/spore_files.h"
#include "vmm/spore/memory.h"

using namespace spore;
using namespace spore::bundle;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/spore-bundle-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string path;
};

void write(const std::string& path, const std::string& data) { std::ofstream(path, std::ios::binary) << data; }
std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
void flip(const std::string& path, uint64_t off) {
  std::string d = slurp(path);
  d[off] ^= 1;
  write(path, d);
}

std::string noise(size_t n, int seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

}  // namespace

TEST_CASE("a bundle round-trips its sections and names itself by its table", "[bundle]") {
  TempDir t;
  std::string rootfs = std::string(300000, 'r') + noise(1000, 1);
  write(t.path + "/rootfs.img", rootfs);
  AppConfig cfg;
  cfg.name = "app";
  cfg.entrypoint = {"/bin/sh", "-c"};
  cfg.cmd = {"echo hi"};
  cfg.env = {"A=1"};
  std::string path = t.path + "/app.spore";
  Digest written;
  {
    auto w = Writer::create(path);
    REQUIRE(w.ok());
    REQUIRE((*w)->add(SectionType::kConfig, encode_app_config(cfg), false).ok());
    REQUIRE((*w)->add(SectionType::kKernel, noise(5000, 2), true).ok());  // incompressible: stored raw
    REQUIRE((*w)->add_file(SectionType::kRootfs, t.path + "/rootfs.img", true).ok());
    auto d = (*w)->finish();
    REQUIRE(d.ok());
    written = *d;
  }
  auto r = Reader::open(path);
  REQUIRE(r.ok());
  CHECK((*r)->digest() == written);
  CHECK_FALSE((*r)->has_spore());
  const Section* k = (*r)->find(SectionType::kKernel);
  REQUIRE(k);
  CHECK(k->flags == 0);
  const Section* rs = (*r)->find(SectionType::kRootfs);
  REQUIRE(rs);
  CHECK(rs->flags == kSectionZstd);
  CHECK(rs->stored_size < rs->size / 10);
  REQUIRE((*r)->extract(*rs, t.path + "/out.img").ok());
  CHECK(slurp(t.path + "/out.img") == rootfs);
  auto c = decode_app_config(*(*r)->read(*(*r)->find(SectionType::kConfig), 1 << 20));
  REQUIRE(c.ok());
  CHECK(c->entrypoint == cfg.entrypoint);

  SECTION("a flipped byte inside a section is caught when it is read") {
    flip(path, rs->offset + 100);
    auto r2 = Reader::open(path);
    REQUIRE(r2.ok());
    auto e = (*r2)->extract(*(*r2)->find(SectionType::kRootfs), t.path + "/bad.img");
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().kind == ErrorKind::kCorrupt);
    CHECK_FALSE(fs::exists(t.path + "/bad.img"));
  }
  SECTION("a flipped byte in the table is caught at open") {
    uint64_t size = fs::file_size(path);
    flip(path, size - kFooterSize - 10);
    auto r2 = Reader::open(path);
    REQUIRE_FALSE(r2.ok());
    CHECK_THAT(r2.error().message, Catch::Contains("table is corrupt"));
  }
  SECTION("a truncated file is refused") {
    std::string d = slurp(path);
    write(path, d.substr(0, d.size() - 100));
    CHECK_FALSE(Reader::open(path).ok());
    write(path, d.substr(0, 10));
    CHECK_FALSE(Reader::open(path).ok());
  }
  SECTION("another format version is refused with a clear message") {
    uint64_t size = fs::file_size(path);
    std::string d = slurp(path);
    d[size - kFooterSize + 8] = 2;
    write(path, d);
    auto r2 = Reader::open(path);
    REQUIRE_FALSE(r2.ok());
    CHECK_THAT(r2.error().message, Catch::Contains("format 2 is not supported"));
  }
  SECTION("something else entirely is refused") {
    write(path, std::string(4096, 'x'));
    CHECK_THAT(Reader::open(path).error().message, Catch::Contains("not a spore bundle"));
  }
}

TEST_CASE("a spore embedded in a bundle keeps its digest and serves its chunks", "[bundle]") {
  TempDir t;
  const uint32_t cs = 64 << 10;
  std::string ram(1 << 20, '\0');
  std::memset(ram.data(), 'a', cs);
  std::memset(ram.data() + 3 * cs, 'b', cs);
  vmm::Spore sp;
  {
    auto w = vmm::SporeWriter::begin(t.path + "/s", "");
    REQUIRE(w.ok());
    auto idx = vmm::capture_memory(reinterpret_cast<uint8_t*>(ram.data()), ram.size(), cs, (*w)->store(), nullptr,
                                   nullptr);
    REQUIRE(idx.ok());
    vmm::SporeManifest m;
    m.id = std::string(32, 'f');
    m.created = "x";
    m.platform.arch = "aarch64";
    m.platform.reg_list_sha256 = std::string(64, '0');  // decoders require 64 hex digits
    m.machine = {1, 1, ""};
    m.memory = {cs, ram.size(), idx->entries.size(), 0, ""};
    auto s = (*w)->commit(m, "STATE", vmm::encode_memory_index(*idx));
    REQUIRE(s.ok());
    sp = *s;
  }
  std::string path = t.path + "/b.spore";
  {
    auto w = Writer::create(path);
    REQUIRE(w.ok());
    REQUIRE(add_spore(**w, sp).ok());
    REQUIRE((*w)->finish().ok());
  }
  auto r = Reader::open(path);
  REQUIRE(r.ok());
  std::shared_ptr<const Reader> shared(std::move(*r));
  auto bs = open_bundle_spore(shared);
  REQUIRE(bs.ok());
  CHECK(bs->digest == sp.digest);
  CHECK(*vmm::read_pinned(*bs, bs->manifest.state) == "STATE");
  Digest idx_digest;
  auto idx = vmm::load_memory_index(*bs, &idx_digest);
  REQUIRE(idx.ok());
  auto chunks = bs->files->chunks(bs->manifest);
  REQUIRE(chunks.ok());
  REQUIRE(vmm::materialize_memory(*idx, **chunks, t.path + "/ram").ok());
  CHECK(slurp(t.path + "/ram") == ram);
}

namespace {

// A bundle taken apart the way doc/bundle-format.md describes it, to be put
// back together with deliberate damage: the checks below must each refuse
// one kind, also when the table's digest is right.
struct Parts {
  std::string body;  // header and section data: everything before the table
  std::vector<Section> sections;
};

Parts take_apart(const std::string& path) {
  std::string d = slurp(path);
  REQUIRE(d.size() >= kFooterSize);
  Decoder f(std::string_view(d).substr(d.size() - kFooterSize));
  char magic[8];
  f.bytes(magic, 8);
  f.u32();
  f.u32();
  uint64_t off = f.u64(), size = f.u64();
  Parts p;
  p.body = d.substr(0, off);
  Decoder t(std::string_view(d).substr(off, size));
  uint32_t n = t.u32();
  for (uint32_t i = 0; i < n; i++) {
    Section s;
    s.type = static_cast<SectionType>(t.u32());
    s.flags = t.u32();
    s.offset = t.u64();
    s.stored_size = t.u64();
    s.size = t.u64();
    t.bytes(s.sha256.data(), s.sha256.size());
    p.sections.push_back(s);
  }
  REQUIRE(t.done());
  return p;
}

void put_together(const std::string& path, const Parts& p, uint32_t footer_reserved = 0) {
  Encoder t;
  t.u32(static_cast<uint32_t>(p.sections.size()));
  for (const auto& s : p.sections) {
    t.u32(static_cast<uint32_t>(s.type));
    t.u32(s.flags);
    t.u64(s.offset);
    t.u64(s.stored_size);
    t.u64(s.size);
    t.bytes(s.sha256.data(), s.sha256.size());
  }
  std::string table = t.take();
  Digest sha = sha256(table);
  Encoder f;
  f.bytes("SPORBNDL", 8);
  f.u32(kFormatVersion);
  f.u32(footer_reserved);
  f.u64(p.body.size());
  f.u64(table.size());
  f.bytes(sha.data(), sha.size());
  write(path, p.body + table + f.take());
}

// Inserts bytes at a file offset, moving the sections behind it.
void insert_gap(Parts& p, uint64_t at, size_t n) {
  p.body.insert(at, std::string(n, '\0'));
  for (auto& s : p.sections)
    if (s.offset >= at) s.offset += n;
}

}  // namespace

TEST_CASE("the bundle reader accounts for every byte, as the format says", "[bundle]") {
  TempDir t;
  std::string path = t.path + "/app.spore";
  {
    auto w = Writer::create(path);
    REQUIRE(w.ok());
    REQUIRE((*w)->add(SectionType::kConfig, encode_app_config(AppConfig{}), false).ok());
    REQUIRE((*w)->add(SectionType::kKernel, noise(5000, 2), false).ok());
    REQUIRE((*w)->add(SectionType::kRootfs, std::string(100000, 'r'), true).ok());
    REQUIRE((*w)->finish().ok());
  }
  // Taken apart and put back unchanged, it opens: the helpers are faithful.
  Parts good = take_apart(path);
  REQUIRE(good.sections.size() == 3);
  put_together(path, good);
  REQUIRE(Reader::open(path).ok());
  const std::string original = slurp(path);
  auto refused = [&](const std::string& why) {
    auto r = Reader::open(path);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::kCorrupt);
    CHECK_THAT(r.error().message, Catch::Contains(why));
    write(path, original);
  };

  SECTION("the header: magic, version and reserved word") {
    for (size_t at : {size_t{0}, size_t{7}, size_t{8}, size_t{12}, size_t{15}}) {
      INFO("header byte " << at);
      std::string d = original;
      d[at] ^= 1;
      write(path, d);
      refused("bundle header does not match its footer");
    }
  }
  SECTION("the footer's reserved word") {
    put_together(path, good, 1);
    refused("reserved word is not 0");
  }
  SECTION("bytes between the last section and the table") {
    Parts p = good;
    p.body += "junk";
    put_together(path, p);
    refused("table does not start where the last section ends");
  }
  SECTION("bytes between two sections, or before the first") {
    for (size_t i : {size_t{0}, size_t{1}, size_t{2}}) {
      INFO("before section " << i);
      Parts p = good;
      insert_gap(p, p.sections[i].offset, 8);
      put_together(path, p);
      refused(strfmt("bundle section %zu is out of place", i));
    }
  }
  SECTION("overlapping sections") {
    Parts p = good;
    p.sections[1].offset -= 1;
    put_together(path, p);
    refused("bundle section 1 is out of place");
  }
  SECTION("a section given twice") {
    Parts p = good;
    Section again = p.sections[0];
    again.offset = p.body.size();
    p.body += p.body.substr(p.sections[0].offset, p.sections[0].stored_size);
    p.sections.push_back(again);
    put_together(path, p);
    refused("bundle section 3 is a second config section");
  }
  SECTION("part of a spore") {
    Parts p = good;
    std::string state = "STATE";
    Section s;
    s.type = SectionType::kSporeState;
    s.offset = p.body.size();
    s.stored_size = s.size = state.size();
    s.sha256 = sha256(state);
    p.body += state;
    p.sections.push_back(s);
    put_together(path, p);
    refused("part of a spore");
  }
}

TEST_CASE("a bundle repeating a RAM chunk is refused", "[bundle]") {
  TempDir t;
  std::string path = t.path + "/b.spore";
  std::string chunk(4096, 'c');
  Digest d = sha256(chunk);
  {
    auto w = Writer::create(path);
    REQUIRE(w.ok());
    for (auto type : {SectionType::kSporeManifest, SectionType::kSporeState, SectionType::kSporeMemoryIndex})
      REQUIRE((*w)->add(type, "x", false).ok());
    REQUIRE((*w)->add_stored_chunk(d, chunk.size(), "frame").ok());
    REQUIRE((*w)->finish().ok());
  }
  REQUIRE(Reader::open(path).ok());
  Parts p = take_apart(path);
  Section again = p.sections.back();
  again.offset = p.body.size();
  p.body += "frame";
  p.sections.push_back(again);
  put_together(path, p);
  auto r = Reader::open(path);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message, Catch::Contains("repeats RAM chunk " + digest_hex(d)));
}

TEST_CASE("docker's rules pick the command and merge the environment", "[bundle]") {
  AppConfig c;
  c.cmd = {"sh"};
  CHECK(resolve_command(c, {}) == std::vector<std::string>{"sh"});
  CHECK(resolve_command(c, {"ls", "-l"}) == std::vector<std::string>{"ls", "-l"});
  c.entrypoint = {"python3", "-u"};
  c.cmd = {"app.py"};
  CHECK(resolve_command(c, {}) == std::vector<std::string>{"python3", "-u", "app.py"});
  CHECK(resolve_command(c, {"other.py"}) == std::vector<std::string>{"python3", "-u", "other.py"});
  CHECK(spore::merge_env({"PATH=/bin", "A=1"}, {"A=2", "B=3"}) == std::vector<std::string>{"PATH=/bin", "A=2", "B=3"});
}

TEST_CASE("app configs reject damage", "[bundle]") {
  AppConfig c;
  std::string e = encode_app_config(c);
  for (size_t n = 0; n < e.size(); n++) CHECK_FALSE(decode_app_config(e.substr(0, n)).ok());
  CHECK_FALSE(decode_app_config(e + "x").ok());
}
