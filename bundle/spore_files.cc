#include "bundle/spore_files.h"

#include <set>

#include "vmm/spore/memory.h"

namespace spore::bundle {
namespace {

class Chunks final : public vmm::ChunkSource {
 public:
  explicit Chunks(std::shared_ptr<const Reader> r) : r_(std::move(r)), impl_(*r_) {}
  Status get(const Digest& d, uint8_t* out, size_t len) const override { return impl_.get(d, out, len); }

 private:
  std::shared_ptr<const Reader> r_;  // keeps the reader alive as long as the chunks are used
  BundleChunks impl_;
};

}  // namespace

Result<std::string> BundleSporeFiles::read(const std::string& name, uint64_t max) const {
  SectionType t;
  if (name == "manifest.json") t = SectionType::kSporeManifest;
  else if (name == "state.bin") t = SectionType::kSporeState;
  else if (name == "memory.idx") t = SectionType::kSporeMemoryIndex;
  else return make_error(ErrorKind::kCorrupt, "a bundle's spore has no file named " + name);
  const Section* s = r_->find(t);
  if (!s) return make_error(ErrorKind::kNotFound, r_->path() + ": the bundle has no " + section_name(t));
  return r_->read(*s, max);
}

Result<std::shared_ptr<const vmm::ChunkSource>> BundleSporeFiles::chunks(const vmm::SporeManifest&) const {
  return std::shared_ptr<const vmm::ChunkSource>(std::make_shared<Chunks>(r_));
}

Result<vmm::Spore> open_bundle_spore(std::shared_ptr<const Reader> r) {
  std::string label = r->path() + " (sealed spore)";
  return vmm::open_spore_files(std::make_shared<BundleSporeFiles>(std::move(r)), label);
}

Status add_spore(Writer& w, const vmm::Spore& spore) {
  const auto& m = spore.manifest;
  SPORE_ASSIGN_OR_RETURN(std::string manifest, spore.files->read("manifest.json", 1 << 20));
  SPORE_ASSIGN_OR_RETURN(std::string state, vmm::read_pinned(spore, m.state));
  SPORE_ASSIGN_OR_RETURN(std::string index_bytes, vmm::read_pinned(spore, m.memory_index));
  SPORE_ASSIGN_OR_RETURN(vmm::MemoryIndex idx, vmm::decode_memory_index(index_bytes));
  SPORE_TRY(w.add(SectionType::kSporeManifest, manifest, false));
  SPORE_TRY(w.add(SectionType::kSporeState, state, true));
  SPORE_TRY(w.add(SectionType::kSporeMemoryIndex, index_bytes, true));
  SPORE_ASSIGN_OR_RETURN(vmm::ChunkStore store, vmm::ChunkStore::open(spore.store_dir, false));
  std::set<Digest> seen;
  for (const auto& e : idx.entries) {
    if (!seen.insert(e.digest).second) continue;
    SPORE_ASSIGN_OR_RETURN(std::string frame, store.read_stored(e.digest, idx.chunk_size + (1 << 16)));
    SPORE_TRY(w.add_stored_chunk(e.digest, idx.chunk_size, frame));
  }
  return ok_status();
}

}  // namespace spore::bundle
