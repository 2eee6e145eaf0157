// The sidecar bundle (bundle/bundle.cc) as the stub opens it: footer,
// header, table, sections, and the spore inside (manifest, state, memory
// index, RAM chunks), from a file holding the input.
//
// The first input byte says which digests the harness fixes up before
// writing the file (bit 0: the table's, bit 1: every section's), so that
// the fuzzer also gets past the digest checks to the parsers behind them.
// Checked: every section the reader accepts lies inside the file, back to
// back; what it returns has the recorded size and digest.
#include <zstd.h>

#include <memory>

#include "base/codec.h"
#include "base/sha256.h"
#include "bundle/app_config.h"
#include "bundle/bundle.h"
#include "bundle/spore_files.h"
#include "fuzz/support/fuzz.h"
#include "fuzz/support/samples.h"
#include "base/files.h"
#include "vmm/spore/chunk_store.h"
#include "vmm/spore/memory.h"
#include "vmm/spore/spore.h"

using namespace spore;
using namespace spore::fuzz;
using bundle::Section;
using bundle::SectionType;

namespace {

constexpr size_t kHeader = 16;
constexpr size_t kEntry = 64;  // type, flags, offset, stored, size, sha256

// Where the footer says the table is, if it is inside the file.
bool table_of(const std::string& b, uint64_t* off, uint64_t* size) {
  if (b.size() < kHeader + bundle::kFooterSize) return false;
  Decoder d(std::string_view(b).substr(b.size() - bundle::kFooterSize + 16, 16));
  *off = d.u64();
  *size = d.u64();
  return *off <= b.size() && *size <= b.size() - *off;
}

// Recomputes what the input asks for: section digests (of the stored
// bytes, decompressed when flagged and possible) and the table's.
void fix_digests(std::string& b, uint8_t what) {
  uint64_t off, size;
  if (!table_of(b, &off, &size)) return;
  if (what & 2) {
    Decoder t(std::string_view(b).substr(off, size));
    uint32_t n = t.u32();
    for (uint32_t i = 0; i < n && t.ok() && t.remaining() >= kEntry; i++) {
      size_t at = off + 4 + kEntry * i;
      t.u32();
      uint32_t flags = t.u32();
      uint64_t s_off = t.u64(), stored = t.u64(), s_size = t.u64();
      t.view(32);
      if (s_off > b.size() || stored > b.size() - s_off || stored > (4 << 20)) continue;
      std::string content = b.substr(s_off, stored);
      if (flags & bundle::kSectionZstd) {
        if (s_size > (4 << 20)) continue;
        std::string out(s_size, '\0');
        size_t n = ZSTD_decompress(out.data(), out.size(), content.data(), content.size());
        if (ZSTD_isError(n)) continue;
        out.resize(n);
        content = std::move(out);
      }
      Digest d = sha256(content);
      std::memcpy(&b[at + 32], d.data(), d.size());
    }
  }
  if (what & 1) {
    Digest d = sha256(std::string_view(b).substr(off, size));
    std::memcpy(&b[b.size() - bundle::kFooterSize + 32], d.data(), d.size());
  }
}

void read_everything(const std::string& path, uint64_t file_size) {
  auto opened = bundle::Reader::open(path);
  if (!opened.ok()) return;
  std::shared_ptr<const bundle::Reader> r = std::move(*opened);
  uint64_t expect = kHeader;
  for (const Section& s : r->sections()) {
    check(s.offset == expect && s.stored_size <= file_size - s.offset, "a section out of place was accepted");
    expect = s.offset + s.stored_size;
    auto bytes = r->read(s, 1 << 20);
    if (bytes.ok()) {
      check(bytes->size() == s.size && sha256(*bytes) == s.sha256, "a section read back with the wrong size or digest");
      if (s.type == SectionType::kConfig) (void)bundle::decode_app_config(*bytes);
    }
  }
  check(expect <= file_size - bundle::kFooterSize, "sections overlap the footer");
  if (const Section* s = r->find(SectionType::kConfig)) {
    std::string out = scratch_dir() + "/extracted";
    if (r->extract(*s, out).ok()) ::unlink(out.c_str());
  }
  auto spore = bundle::open_bundle_spore(r);
  if (!spore.ok()) return;
  // What a resume reads next: state, memory index, every chunk it names.
  auto state = vmm::read_pinned(*spore, spore->manifest.state);
  if (state.ok()) (void)vmm::decode_machine_state(*state);
  auto index_bytes = vmm::read_pinned(*spore, spore->manifest.memory_index);
  if (!index_bytes.ok()) return;
  auto idx = vmm::decode_memory_index(*index_bytes);
  if (!idx.ok() || idx->chunk_size > (1 << 20)) return;
  auto chunks = spore->files->chunks(spore->manifest);
  if (!chunks.ok()) return;
  std::vector<uint8_t> buf(idx->chunk_size);
  for (size_t i = 0; i < idx->entries.size() && i < 64; i++) {
    if ((*chunks)->get(idx->entries[i].digest, buf.data(), buf.size()).ok())
      check(sha256(buf.data(), buf.size()) == idx->entries[i].digest, "a RAM chunk read back with the wrong digest");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  uint8_t fix = in.u8();
  std::string b = in.rest();
  fix_digests(b, fix);
  std::string path = scratch_file("bundle", b);
  read_everything(path, b.size());
  return 0;
}

// Seeds: small bundles written by bundle::Writer, one without a spore and
// one with a whole spore (manifest, state, index, chunks).
void spore::fuzz::write_seeds(Seeds& seeds) {
  auto write = [&](const std::string& name, bool with_spore) {
    std::string path = scratch_dir() + "/seed.bundle";
    ::unlink(path.c_str());
    auto w = bundle::Writer::create(path);
    if (!w.ok()) fail("Writer::create", w.error().message);
    auto& wr = **w;
    wr.set_level(1);
    bool ok = wr.add(SectionType::kConfig, bundle::encode_app_config(sample_app_config()), false).ok() &&
              wr.add(SectionType::kKernel, std::string(3000, 'K'), true).ok() &&
              wr.add(SectionType::kInitramfs, "initramfs", false).ok();
    if (with_spore) {
      vmm::MemoryIndex idx;
      idx.chunk_size = 4096;
      idx.ram_size = 8 * 4096;
      std::string chunk(4096, '\0');
      for (size_t i = 0; i < chunk.size(); i++) chunk[i] = static_cast<char>(i % 251);
      Digest cd = sha256(chunk);
      idx.entries.push_back({2, 0, cd});
      std::string frame(ZSTD_compressBound(chunk.size()), '\0');
      frame.resize(ZSTD_compress(frame.data(), frame.size(), chunk.data(), chunk.size(), 1));
      idx.entries[0].stored_size = static_cast<uint32_t>(frame.size());
      std::string index = vmm::encode_memory_index(idx);
      std::string state = vmm::encode_machine_state(sample_state(1));
      vmm::SporeManifest m = sample_manifest(false);
      m.machine.mem_mib = 1;
      m.memory = {4096, 1 << 20, 1, frame.size(), "chunks"};
      m.state = {"state.bin", digest_hex(sha256(state)), state.size()};
      m.memory_index = {"memory.idx", digest_hex(sha256(index)), index.size()};
      ok = ok && wr.add(SectionType::kSporeManifest, vmm::manifest_to_json(m), false).ok() &&
           wr.add(SectionType::kSporeState, state, true).ok() &&
           wr.add(SectionType::kSporeMemoryIndex, index, true).ok() &&
           wr.add_stored_chunk(cd, chunk.size(), frame).ok();
    }
    if (!ok || !wr.finish().ok()) fail("cannot write a seed bundle");
    auto bytes = read_file(path, 1 << 20);
    if (!bytes.ok()) fail("cannot read a seed bundle back");
    seeds.add(name, std::string(1, '\0') + *bytes);
    seeds.add(name + "_fix_digests", std::string(1, '\3') + *bytes);
  };
  write("plain", false);
  write("with_spore", true);
}
