// A spore carried inside a bundle: its manifest, state and memory index are
// sections, and its RAM chunks are chunk sections.
#pragma once

#include <memory>

#include "bundle/bundle.h"
#include "vmm/spore/spore.h"

namespace spore::bundle {

class BundleSporeFiles final : public vmm::SporeFiles {
 public:
  explicit BundleSporeFiles(std::shared_ptr<const Reader> r) : r_(std::move(r)) {}
  Result<std::string> read(const std::string& name, uint64_t max) const override;
  Result<std::shared_ptr<const vmm::ChunkSource>> chunks(const vmm::SporeManifest& m) const override;

 private:
  std::shared_ptr<const Reader> r_;
};

// Opens the bundle's spore (NotFound if it has none).
Result<vmm::Spore> open_bundle_spore(std::shared_ptr<const Reader> r);

// Adds a directory spore to a bundle being written: its three files as they
// are (so its digest is unchanged) and every chunk its memory index names,
// each once, copied as stored.
Status add_spore(Writer& w, const vmm::Spore& spore);

}  // namespace spore::bundle
