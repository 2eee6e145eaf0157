// Spore formats and storage: chunk store, memory index, state file,
// manifest, materialisation and forking, without KVM.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "base/codec.h"
#include "vmm/spore/cache.h"
#include "vmm/spore/chunk_store.h"
#include "vmm/spore/manifest.h"
#include "vmm/spore/memory.h"
#include "vmm/spore/spore.h"
#include "vmm/spore/state.h"

using namespace spore;
using namespace spore::vmm;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/spore-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string path;
};

void flip_byte(const std::string& path, size_t offset) {
  ::chmod(path.c_str(), 0644);
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c;
  f.get(c);
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(static_cast<char>(c ^ 0x40));
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// 4 MiB of "RAM": a few distinct chunks, a duplicate, and zeros.
std::vector<uint8_t> sample_ram(uint32_t chunk) {
  std::vector<uint8_t> ram(4 << 20, 0);
  std::mt19937 rng(7);
  for (size_t i = 0; i < chunk; i++) ram[i] = static_cast<uint8_t>(rng());          // chunk 0: random
  std::memset(ram.data() + 2 * chunk, 'a', chunk);                                   // chunk 2
  std::memcpy(ram.data() + 5 * chunk, ram.data() + 2 * chunk, chunk);                // chunk 5: duplicate of 2
  ram[9 * chunk + 17] = 1;                                                           // chunk 9: nearly zero
  return ram;
}

PlatformFacts sample_platform() {
  PlatformFacts p;
  p.arch = "aarch64";
  p.board_version = 1;
  p.page_size = 4096;
  p.ipa_bits = 40;
  p.vcpu_target = 5;
  p.vcpu_features = 4;
  p.gic = "v3";
  p.gic_iidr = 0x4b00343b;
  p.kvm_caps = {"IOEVENTFD", "IRQFD"};
  p.id_regs = {{"MIDR_EL1", 0x410fd0c1}, {"ID_AA64ISAR0_EL1", 0x1111}};
  p.reg_list_sha256 = std::string(64, 'a');
  return p;
}

}  // namespace

TEST_CASE("the chunk store keeps each chunk once and verifies it on read", "[spore][store]") {
  TempDir t;
  auto store = ChunkStore::open(t.path + "/chunks", true);
  REQUIRE(store.ok());
  std::vector<uint8_t> data(65536, 'x');
  Digest d = sha256(data.data(), data.size());
  auto n = store->put(d, data.data(), data.size());
  REQUIRE(n.ok());
  CHECK(*n < data.size());  // compressed
  CHECK(store->contains(d));
  CHECK(*store->put(d, data.data(), data.size()) == *n);  // second put is a no-op
  std::vector<uint8_t> back(data.size());
  REQUIRE(store->get(d, back.data(), back.size()).ok());
  CHECK(back == data);

  SECTION("a flipped byte is refused") {
    flip_byte(store->path_for(d), 10);
    auto s = store->get(d, back.data(), back.size());
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().kind == ErrorKind::kCorrupt);
  }
  SECTION("a chunk whose content does not match its name is refused") {
    std::vector<uint8_t> other(65536, 'y');
    Digest od = sha256(other.data(), other.size());
    REQUIRE(store->put(od, other.data(), other.size()).ok());
    fs::copy_file(store->path_for(od), store->path_for(d), fs::copy_options::overwrite_existing);
    auto s = store->get(d, back.data(), back.size());
    REQUIRE_FALSE(s.ok());
    CHECK_THAT(s.error().message, Catch::Contains("does not match its name"));
  }
  SECTION("a missing chunk is refused") {
    fs::remove(store->path_for(d));
    CHECK_FALSE(store->get(d, back.data(), back.size()).ok());
  }
  SECTION("the wrong decompressed length is refused") {
    std::vector<uint8_t> small(4096);
    CHECK_FALSE(store->get(d, small.data(), small.size()).ok());
  }
}

TEST_CASE("capture elides zero chunks, deduplicates, and materialises byte-exact", "[spore][memory]") {
  TempDir t;
  const uint32_t cs = 64 << 10;
  auto ram = sample_ram(cs);
  auto store = ChunkStore::open(t.path + "/chunks", true);
  REQUIRE(store.ok());
  CaptureStats st;
  auto idx = capture_memory(ram.data(), ram.size(), cs, *store, nullptr, &st);
  REQUIRE(idx.ok());
  CHECK(idx->entries.size() == 4);  // chunks 0, 2, 5, 9
  CHECK(st.chunks == 4);
  CHECK(st.new_chunks == 3);  // 5 duplicates 2
  CHECK(idx->entries[1].digest == idx->entries[2].digest);

  auto decoded = decode_memory_index(encode_memory_index(*idx));
  REQUIRE(decoded.ok());
  CHECK(decoded->entries.size() == 4);
  CHECK(decoded->entries[3].index == 9);

  std::string path = t.path + "/ram";
  REQUIRE(materialize_memory(*idx, *store, path).ok());
  std::string back = slurp(path);
  REQUIRE(back.size() == ram.size());
  CHECK(std::memcmp(back.data(), ram.data(), ram.size()) == 0);

  SECTION("known-zero chunks are skipped without reading") {
    auto skip_all = capture_memory(ram.data(), ram.size(), cs, *store, [](uint64_t) { return true; }, nullptr);
    REQUIRE(skip_all.ok());
    CHECK(skip_all->entries.empty());
  }
  SECTION("materialising from a corrupt chunk fails and leaves no file") {
    flip_byte(store->path_for(idx->entries[0].digest), 5);
    std::string p2 = t.path + "/ram2";
    CHECK_FALSE(materialize_memory(*idx, *store, p2).ok());
    CHECK_FALSE(fs::exists(p2));
    for (const auto& e : fs::directory_iterator(t.path)) CHECK(e.path().filename().string().find("tmp") == std::string::npos);
  }
}

TEST_CASE("malformed memory indexes are rejected", "[spore][memory]") {
  MemoryIndex idx;
  idx.chunk_size = 4096;
  idx.ram_size = 1 << 20;
  idx.entries = {{1, 10, {}}, {5, 10, {}}};
  std::string good = encode_memory_index(idx);
  REQUIRE(decode_memory_index(good).ok());
  for (size_t n = 0; n < good.size(); n++) CHECK_FALSE(decode_memory_index(good.substr(0, n)).ok());
  CHECK_FALSE(decode_memory_index(good + "x").ok());
  idx.entries = {{5, 10, {}}, {1, 10, {}}};
  CHECK_FALSE(decode_memory_index(encode_memory_index(idx)).ok());  // out of order
  idx.entries = {{256, 10, {}}};
  CHECK_FALSE(decode_memory_index(encode_memory_index(idx)).ok());  // beyond RAM
  idx.entries = {};
  idx.chunk_size = 3000;
  CHECK_FALSE(decode_memory_index(encode_memory_index(idx)).ok());
}

TEST_CASE("machine state round-trips and rejects damage", "[spore][state]") {
  MachineState s;
  s.board_version = 1;
  VcpuState v;
  v.index = 0;
  v.mp_state = 0;
  v.regs = {{0x6030000000100000ull, std::string(8, '\x11')}, {0x6040000000100054ull, std::string(16, '\x22')}};
  v.events = std::string(64, '\0');
  s.vcpus.push_back(v);
  s.gic.dist = {{0, 0x12}, {0x100, 0xffff}};
  s.gic.cpus = {{0, {{0x10100, 1}}, {{0xc665, 7}}}};
  s.gic.levels = {{32, 0x2}};
  s.uart.imsc = 0x20;
  s.rtc.offset_s = -5;
  s.generation.generation = 7;
  VirtioSlotState vs;
  vs.slot = 1;
  vs.device_type = 19;
  vs.transport.mmio.status = 15;
  vs.transport.activated = true;
  vs.transport.queues.resize(3);
  vs.transport.device_state = "xyz";
  s.virtio.push_back(vs);

  std::string bytes = encode_machine_state(s);
  auto back = decode_machine_state(bytes);
  REQUIRE(back.ok());
  CHECK(back->vcpus[0].regs[1].value == std::string(16, '\x22'));
  CHECK(back->gic.cpus[0].sysregs[0].second == 7);
  CHECK(back->rtc.offset_s == -5);
  CHECK(back->generation.generation == 7);
  CHECK(back->virtio[0].transport.device_state == "xyz");
  CHECK(back->virtio[0].transport.queues.size() == 3);

  for (size_t n = 0; n < bytes.size(); n += 7) CHECK_FALSE(decode_machine_state(bytes.substr(0, n)).ok());
  std::string bad_magic = bytes;
  bad_magic[0] = 'X';
  CHECK_FALSE(decode_machine_state(bad_magic).ok());
  std::string bad_version = bytes;
  bad_version[8] = 9;
  CHECK_FALSE(decode_machine_state(bad_version).ok());
}

namespace {

// state.bin cut into its 16-byte header and its sections (tag, whole
// section bytes), to be put back in another order.
struct StateParts {
  std::string header;
  std::vector<std::pair<uint32_t, std::string>> sections;
  std::string join() const {
    std::string out = header;
    for (const auto& [tag, bytes] : sections) out += bytes;
    return out;
  }
};

StateParts cut_state(const std::string& bytes) {
  StateParts p;
  p.header = bytes.substr(0, 16);
  Decoder d(std::string_view(bytes).substr(16));
  while (d.remaining()) {
    uint32_t tag = d.u32(), len = d.u32();
    std::string_view body = d.view(len);
    REQUIRE(d.ok());
    Encoder e;
    e.u32(tag);
    e.u32(len);
    e.bytes(body.data(), body.size());
    p.sections.emplace_back(tag, e.take());
  }
  return p;
}

MachineState two_vcpus_two_virtio() {
  MachineState s;
  s.board_version = 1;
  for (uint32_t i = 0; i < 2; i++) {
    VcpuState v;
    v.index = i;
    v.regs = {{0x6030000000100000ull, std::string(8, '\x11')}};
    s.vcpus.push_back(v);
  }
  for (uint32_t slot : {0u, 2u}) {
    VirtioSlotState vs;
    vs.slot = slot;
    vs.device_type = 2;
    s.virtio.push_back(vs);
  }
  return s;
}

}  // namespace

TEST_CASE("state.bin sections come in their order, each once", "[spore][state]") {
  constexpr uint32_t kVcpu = 1, kGic = 2, kUart = 3, kRtc = 4, kGen = 5, kVirtio = 6, kEnd = 0xffffffff;
  const std::string good = encode_machine_state(two_vcpus_two_virtio());
  StateParts p = cut_state(good);
  std::vector<uint32_t> tags;
  for (const auto& [tag, bytes] : p.sections) tags.push_back(tag);
  REQUIRE(tags == std::vector<uint32_t>{kVcpu, kVcpu, kGic, kUart, kRtc, kGen, kVirtio, kVirtio, kEnd});
  REQUIRE(decode_machine_state(p.join()).ok());
  // Without VIRTIO sections (a machine without devices) it is still whole.
  {
    StateParts q = p;
    q.sections.erase(q.sections.begin() + 6, q.sections.begin() + 8);
    CHECK(decode_machine_state(q.join()).ok());
  }

  auto refused = [](const StateParts& q, const std::string& why) {
    auto r = decode_machine_state(q.join());
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::kCorrupt);
    CHECK_THAT(r.error().message, Catch::Contains(why));
  };
  auto swapped = [&](size_t a, size_t b) {
    StateParts q = p;
    std::swap(q.sections[a], q.sections[b]);
    return q;
  };
  auto repeated = [&](size_t i) {
    StateParts q = p;
    q.sections.insert(q.sections.begin() + static_cast<long>(i) + 1, q.sections[i]);
    return q;
  };
  auto without = [&](size_t i) {
    StateParts q = p;
    q.sections.erase(q.sections.begin() + static_cast<long>(i));
    return q;
  };
  refused(swapped(0, 1), "vCPU sections out of order");
  refused(swapped(1, 2), "VCPU section out of order or repeated");  // a VCPU after the GIC
  refused(swapped(3, 4), "RTC section out of order or repeated");   // RTC before UART
  refused(swapped(5, 6), "VIRTIO section out of order or repeated");
  refused(swapped(6, 7), "VIRTIO sections out of slot order or repeated");
  for (size_t i : {2, 3, 4, 5}) {
    INFO("section " << i << " twice");
    refused(repeated(i), "out of order or repeated");
  }
  refused(repeated(6), "VIRTIO sections out of slot order or repeated");
  refused(without(0), "vCPU sections out of order");  // vCPU 1 first
  refused(without(2), "UART section out of order or repeated");
  refused(without(5), "VIRTIO section out of order or repeated");
  refused(without(8), "truncated");
  {
    StateParts q = p;  // END early: what follows is garbage
    q.sections.insert(q.sections.begin() + 6, q.sections.back());
    refused(q, "followed by garbage");
  }
  {
    StateParts q = p;  // END with a payload
    Encoder e;
    e.u32(kEnd);
    e.u32(4);
    e.u32(0);
    q.sections.back().second = e.take();
    refused(q, "trailing or missing bytes");
  }
}

TEST_CASE("manifests round-trip and reject nonsense", "[spore][manifest]") {
  SporeManifest m;
  m.id = std::string(32, 'a');
  m.created = "2026-11-26T00:00:00Z";
  m.generation = 3;
  m.platform = sample_platform();
  m.machine = {2, 256, "console=ttyAMA0"};
  m.rootfs = SporeManifest::Rootfs{"/images/root.img", 4096, std::string(64, 'b')};
  m.state = {"state.bin", std::string(64, 'c'), 100};
  m.memory_index = {"memory.idx", std::string(64, 'd'), 40};
  m.memory = {262144, 256ull << 20, 10, 12345, "chunks"};
  std::string json = manifest_to_json(m);
  auto back = parse_manifest(json);
  REQUIRE(back.ok());
  CHECK(back->machine.vcpus == 2);
  CHECK(back->platform.id_regs.size() == 2);
  CHECK(back->rootfs->path == "/images/root.img");

  auto broken = [&](const std::string& from, const std::string& to) {
    std::string j = json;
    auto pos = j.find(from);
    REQUIRE(pos != std::string::npos);
    j.replace(pos, from.size(), to);
    return parse_manifest(j);
  };
  CHECK_FALSE(broken("\"spore/1\"", "\"spore/9\"").ok());
  CHECK_FALSE(broken("\"state.bin\"", "\"../state.bin\"").ok());
  CHECK_FALSE(broken("\"chunk_size\": 262144", "\"chunk_size\": 1000").ok());
  CHECK_FALSE(broken("\"mem_mib\": 256", "\"mem_mib\": 512").ok());
  CHECK_FALSE(broken("\"vcpu_target\": 5", "\"vcpu_target\": \"five\"").ok());
  // Hex facts are "0x" and digits (doc/spore-format.md), nothing a lenient
  // number parser would also take.
  CHECK(back->platform.vcpu_features == 4);
  CHECK(broken("\"0x4b00343b\"", "\"0x4B00343B\"").ok());
  for (const char* bad : {"\"0x-1\"", "\"0x 1\"", "\"0x+1\"", "\"0X1\"", "\"0x\"", "\"0x1g\"", "\"0x00000000000000001\""}) {
    INFO(bad);
    CHECK_FALSE(broken("\"0x4b00343b\"", bad).ok());
  }
  CHECK_FALSE(parse_manifest("{not json").ok());
  CHECK_FALSE(parse_manifest("{}").ok());
  // Numbers are unsigned integers that fit their field, as the JSON says:
  // nothing converted on the way (fuzz/regressions/spore_manifest/).
  CHECK_FALSE(broken("\"ipa_bits\": 40", "\"ipa_bits\": -40").ok());
  CHECK_FALSE(broken("\"ipa_bits\": 40", "\"ipa_bits\": 40.5").ok());
  CHECK_FALSE(broken("\"ipa_bits\": 40", "\"ipa_bits\": 4e1").ok());
  CHECK_FALSE(broken("\"vcpus\": 2", "\"vcpus\": 4294967298").ok());
  CHECK_FALSE(broken("\"generation\": 3", "\"generation\": -1").ok());
  CHECK_FALSE(broken("\"size\": 100", "\"size\": 1e2").ok());
  CHECK_FALSE(broken("\"0x4b00343b\"", "\"0x14b00343b\"").ok());  // GICD_IIDR is 32 bits
  CHECK(broken("\"generation\": 3", "\"generation\": 18446744073709551615").ok());
  CHECK_FALSE(broken("\"reg_list_sha256\": \"" + std::string(64, 'a'), "\"reg_list_sha256\": \"" + std::string(64, 'A')).ok());
}

TEST_CASE("the platform contract names every difference", "[spore][platform]") {
  PlatformFacts a = sample_platform(), b = sample_platform();
  CHECK(compare_platform(a, b).empty());
  b.id_regs[1].second = 0x2222;
  b.vcpu_target = 6;
  b.kvm_caps = {"IRQFD"};
  auto d = compare_platform(a, b);
  REQUIRE(d.size() == 3);
  std::string all;
  for (const auto& line : d) all += line + "\n";
  CHECK_THAT(all, Catch::Contains("ID_AA64ISAR0_EL1: the spore has 0x1111, this host 0x2222"));
  CHECK_THAT(all, Catch::Contains("vCPU target"));
  CHECK_THAT(all, Catch::Contains("IOEVENTFD"));
}

TEST_CASE("spores are written atomically, verified on read, and forked as metadata", "[spore][dir]") {
  TempDir t;
  const uint32_t cs = 64 << 10;
  auto ram = sample_ram(cs);
  std::string dir = t.path + "/s";
  SporeManifest m;
  m.id = std::string(32, 'e');
  m.created = "2026-11-26T00:00:00Z";
  m.platform = sample_platform();
  m.machine = {1, 4, ""};
  Spore parent;
  {
    auto w = SporeWriter::begin(dir, "");
    REQUIRE(w.ok());
    auto idx = capture_memory(ram.data(), ram.size(), cs, (*w)->store(), nullptr, nullptr);
    REQUIRE(idx.ok());
    m.memory.chunk_size = cs;
    m.memory.ram_size = ram.size();
    m.memory.chunks = idx->entries.size();
    auto s = (*w)->commit(m, "STATE", encode_memory_index(*idx));
    REQUIRE(s.ok());
    parent = *s;
  }
  CHECK(fs::exists(dir + "/manifest.json"));
  for (const auto& e : fs::directory_iterator(t.path)) CHECK(e.path().filename() == "s");
  CHECK(*read_pinned(parent, parent.manifest.state) == "STATE");

  SECTION("a writer that is not committed leaves nothing") {
    {
      auto w = SporeWriter::begin(t.path + "/abandoned", "");
      REQUIRE(w.ok());
    }
    CHECK_FALSE(fs::exists(t.path + "/abandoned"));
    for (const auto& e : fs::directory_iterator(t.path)) CHECK(e.path().filename() == "s");
  }
  SECTION("a link planted at the old predictable work name is never followed") {
    // Another local user could create <dir>.tmp-<pid> before us.
    fs::create_directories(t.path + "/victim");
    fs::create_directory_symlink(t.path + "/victim", t.path + "/planted.tmp-" + std::to_string(::getpid()));
    {
      auto w = SporeWriter::begin(t.path + "/planted", "");
      REQUIRE(w.ok());
      REQUIRE((*w)->commit(m, "STATE", "").ok());
    }
    CHECK(fs::exists(t.path + "/planted/state.bin"));
    CHECK(fs::is_empty(t.path + "/victim"));
    CHECK(fs::is_symlink(t.path + "/planted.tmp-" + std::to_string(::getpid())));
  }
  SECTION("an existing spore is not overwritten") {
    CHECK_FALSE(SporeWriter::begin(dir, "").ok());
  }
  SECTION("a flipped byte in the state file is refused") {
    flip_byte(dir + "/state.bin", 1);
    auto r = read_pinned(parent, parent.manifest.state);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::kCorrupt);
  }
  SECTION("forks share the store, get new identities, copy no chunks") {
    auto kids = fork_spore(parent, t.path + "/kids", 3);
    REQUIRE(kids.ok());
    REQUIRE(kids->size() == 3);
    CHECK((*kids)[0].manifest.id != (*kids)[1].manifest.id);
    CHECK((*kids)[0].manifest.parent == digest_hex(parent.digest));
    CHECK(fs::equivalent((*kids)[2].store_dir, parent.store_dir));
    CHECK_FALSE(fs::exists(t.path + "/kids/0/chunks"));
    Digest pd, kd;
    REQUIRE(load_memory_index(parent, &pd).ok());
    REQUIRE(load_memory_index((*kids)[1], &kd).ok());
    CHECK(pd == kd);  // so they share one materialised RAM file
  }
  SECTION("the cache materialises RAM once per memory index") {
    auto cache = Cache::open_at(t.path + "/cache");
    REQUIRE(cache.ok());
    Digest d;
    auto idx = load_memory_index(parent, &d);
    REQUIRE(idx.ok());
    auto store = ChunkStore::open(parent.store_dir, false);
    bool made = false;
    auto p1 = cache->ram_file(*idx, d, *store, &made);
    REQUIRE(p1.ok());
    CHECK(made);
    auto p2 = cache->ram_file(*idx, d, *store, &made);
    REQUIRE(p2.ok());
    CHECK_FALSE(made);
    CHECK(*p1 == *p2);
    CHECK(slurp(*p1) == std::string(reinterpret_cast<char*>(ram.data()), ram.size()));

    // Same size, other bytes (edited in place, or swapped for another file):
    // not the file the cache vouched for, so it is made again. The cache
    // tells by inode, size, mtime and ctime; timestamps are set apart
    // explicitly, since two writes within one clock tick share them.
    auto touch_apart = [](const std::string& p) {
      timespec ts[2] = {{1'000'000'000, 0}, {1'000'000'000, 0}};
      REQUIRE(::utimensat(AT_FDCWD, p.c_str(), ts, 0) == 0);
    };
    {
      std::fstream f(*p1, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(0);
      f.put('\x5a');
    }
    touch_apart(*p1);
    auto p3 = cache->ram_file(*idx, d, *store, &made);
    REQUIRE(p3.ok());
    CHECK(made);
    CHECK(slurp(*p3) == std::string(reinterpret_cast<char*>(ram.data()), ram.size()));
    fs::remove(*p3);
    std::ofstream(*p3, std::ios::binary) << std::string(ram.size(), '\0');
    touch_apart(*p3);
    REQUIRE(cache->ram_file(*idx, d, *store, &made).ok());
    CHECK(made);
    CHECK(slurp(*p3) == std::string(reinterpret_cast<char*>(ram.data()), ram.size()));
  }
}

TEST_CASE("the cache refuses directories other users own or can write", "[spore][cache]") {
  TempDir t;
  SECTION("made private when it does not exist") {
    REQUIRE(Cache::open_at(t.path + "/new/cache").ok());
    CHECK((fs::status(t.path + "/new/cache").permissions() & fs::perms::all) == fs::perms::owner_all);
    CHECK((fs::status(t.path + "/new/cache/ram").permissions() & fs::perms::all) == fs::perms::owner_all);
  }
  SECTION("group- or world-writable") {
    for (auto extra : {fs::perms::group_write, fs::perms::others_write}) {
      fs::create_directories(t.path + "/c");
      fs::permissions(t.path + "/c", fs::perms::owner_all | extra, fs::perm_options::replace);
      auto c = Cache::open_at(t.path + "/c");
      REQUIRE_FALSE(c.ok());
      CHECK(c.error().kind == ErrorKind::kUnavailable);
      CHECK_THAT(c.error().message, Catch::Contains("writable by other users"));
      fs::remove_all(t.path + "/c");
    }
  }
  SECTION("a writable subdirectory") {
    fs::create_directories(t.path + "/c/sections");
    fs::permissions(t.path + "/c", fs::perms::owner_all, fs::perm_options::replace);
    fs::permissions(t.path + "/c/sections", fs::perms::all, fs::perm_options::replace);
    CHECK_FALSE(Cache::open_at(t.path + "/c").ok());
  }
  SECTION("owned by another user") {
    // Needs root to give a directory away (we are root here and in CI).
    REQUIRE(::geteuid() == 0);
    fs::create_directories(t.path + "/c");
    fs::permissions(t.path + "/c", fs::perms::owner_all, fs::perm_options::replace);
    REQUIRE(::chown((t.path + "/c").c_str(), 65534, 65534) == 0);
    auto c = Cache::open_at(t.path + "/c");
    REQUIRE_FALSE(c.ok());
    CHECK_THAT(c.error().message, Catch::Contains("not by you"));
  }
}

#include <sys/mman.h>

#include "vmm/spore/working_set.h"

TEST_CASE("working sets round-trip and see which pages were read or written", "[spore][ws]") {
  std::string states = {0, 1, 2, 0, 0, 1, 1, 2, 2};
  auto back = decode_working_set(encode_working_set(states), states.size());
  REQUIRE(back.ok());
  CHECK(*back == states);
  CHECK_FALSE(decode_working_set(encode_working_set(states), states.size() + 1).ok());
  std::string bad = encode_working_set(states);
  bad.back() = static_cast<char>(0xff);
  CHECK_FALSE(decode_working_set(bad, states.size()).ok());
  // 9 pages: page 8 in the low bits of the last byte, the rest unused and 0
  // (fuzz/regressions/working_set/).
  bad = encode_working_set(states);
  bad.back() = static_cast<char>(bad.back() | 0x40);
  CHECK_FALSE(decode_working_set(bad, states.size()).ok());
  // A file cut after its magic is not a set of 0 pages.
  CHECK(decode_working_set(encode_working_set(""), 0).ok());
  CHECK_FALSE(decode_working_set("SPORWSET", 0).ok());
  // A page count whose byte count overflows is refused, not allocated.
  CHECK_FALSE(decode_working_set(std::string("SPORWSET") + std::string(8, '\xff'), ~0ull).ok());

  // A private file mapping, like a resumed guest's RAM.
  TempDir t;
  std::string path = t.path + "/ram";
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  {
    std::ofstream f(path, std::ios::binary);
    std::string data(8 * page, 'x');
    f << data;
  }
  int fd = ::open(path.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  auto* ram = static_cast<uint8_t*>(::mmap(nullptr, 8 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0));
  ::close(fd);
  REQUIRE(ram != MAP_FAILED);
  volatile uint8_t sink = ram[1 * page];
  (void)sink;
  ram[3 * page] = 'w';
  auto seen = observe_working_set(ram, 8 * page);
  REQUIRE(seen.ok());
  CHECK((*seen)[3] == 2);
  CHECK((*seen)[1] != 0);  // read (fault-around may map neighbours too)
  prefetch_working_set(ram, 8 * page, std::string{0, 0, 0, 0, 0, 0, 2, 0});
  auto after = observe_working_set(ram, 8 * page);
  CHECK((*after)[6] == 2);  // prefetched writable: a private copy now
  CHECK(ram[6 * page] == 'x');
  ::munmap(ram, 8 * page);
}
