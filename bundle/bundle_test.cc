#include "bundle/bundle.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <random>

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
