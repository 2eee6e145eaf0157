// `docker save` archives (packer/source/docker_archive.cc): the tar is
// unpacked into a work directory under small limits, manifest.json (or,
// for Docker 25+ archives, index.json and the OCI layout inside) is read,
// an image picked by the selector, its config parsed and its layers
// checked against their digests. Input: a selector byte (none, "@0",
// "@1", "demo:latest", or a string of the input's), then the archive.
//
// Checked: every layer the source returns is a file inside the work
// directory whose size and SHA-256 are the ones it reports.
#include <nlohmann/json.hpp>

#include "base/sha256.h"
#include "fuzz/support/fuzz.h"
#include "fuzz/support/tar_writer.h"
#include "packer/image.h"
#include "packer/source/docker_archive.h"
#include "packer/source/manifest.h"

using namespace spore;
using namespace spore::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  uint8_t sel = in.u8();
  std::string selector = sel < 64 ? "" : sel < 96 ? "@0" : sel < 128 ? "@1" : sel < 192 ? "demo:latest" : in.str8();
  std::string file = scratch_file("archive.tar", in.rest());
  pack::SourceOptions opts;
  opts.platform = "linux/arm64";
  opts.work_dir = fresh_scratch_subdir("work");
  opts.limits.max_bytes = 8 << 20;
  opts.limits.max_entries = 500;
  auto image = pack::open_docker_archive(file, selector, "docker-archive:fuzz", opts);
  if (!image.ok()) return 0;
  for (const auto& l : image->layers) {
    check(l.path.rfind(opts.work_dir + "/", 0) == 0 && l.path.find("/../") == std::string::npos,
          "a layer outside the work directory", l.path);
    check(pack::verify_file(l.path, l.digest, l.size).ok(), "a layer that does not match its digest", l.path);
  }
  return 0;
}

namespace {

std::string digest_of(const std::string& s) { return pack::sha256_digest_of(s); }
std::string hex_of(const std::string& s) { return digest_of(s).substr(7); }

std::string config_for(const std::vector<std::string>& layers) {
  nlohmann::json diff_ids = nlohmann::json::array();
  for (const auto& l : layers) diff_ids.push_back(digest_of(l));
  nlohmann::json c = {{"architecture", "arm64"},
                      {"os", "linux"},
                      {"config", {{"Entrypoint", {"/bin/sh"}}, {"Cmd", "-c true"}, {"Env", {"PATH=/bin"}},
                                  {"WorkingDir", "/"}, {"User", "1000"}}},
                      {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
  return c.dump();
}

}  // namespace

void spore::fuzz::write_seeds(Seeds& seeds) {
  const std::string layer1 = MemTar().dir("bin").file("bin/sh", "#!shell\n", 0755).finish();
  const std::string layer2 = MemTar().file("etc/hostname", "spore\n").file(".wh.tmp", "").finish();
  // Classic layout: <id>/layer.tar, <hex>.json, manifest.json; the second
  // image repeats the first layer as a symlink, as docker save does.
  {
    std::string config = config_for({layer1, layer2});
    nlohmann::json manifest = nlohmann::json::array();
    manifest.push_back({{"Config", hex_of(config) + ".json"},
                        {"RepoTags", {"demo:latest"}},
                        {"Layers", {"aaaa/layer.tar", "bbbb/layer.tar"}}});
    std::string config2 = config_for({layer1});
    manifest.push_back({{"Config", hex_of(config2) + ".json"}, {"RepoTags", {"other:1"}}, {"Layers", {"cccc/layer.tar"}}});
    std::string tar = MemTar()
                          .file("manifest.json", manifest.dump())
                          .file(hex_of(config) + ".json", config)
                          .file(hex_of(config2) + ".json", config2)
                          .file("aaaa/layer.tar", layer1)
                          .file("bbbb/layer.tar", layer2)
                          .symlink("cccc/layer.tar", "../aaaa/layer.tar")
                          .finish();
    seeds.add("classic", Output().u8(128).bytes(tar).str());
    seeds.add("classic_by_index", Output().u8(64).bytes(tar).str());
    seeds.add("classic_no_selector", Output().u8(0).bytes(tar).str());
  }
  // Docker 25+: an OCI layout (index.json, blobs/sha256/) plus a
  // manifest.json pointing into blobs/.
  {
    std::string config = config_for({layer1});
    nlohmann::json m = {{"schemaVersion", 2},
                        {"mediaType", pack::media::kOciManifest},
                        {"config", {{"mediaType", pack::media::kOciConfig}, {"digest", digest_of(config)},
                                    {"size", config.size()}}},
                        {"layers", {{{"mediaType", "application/vnd.oci.image.layer.v1.tar"},
                                     {"digest", digest_of(layer1)},
                                     {"size", layer1.size()}}}}};
    std::string mtext = m.dump();
    nlohmann::json index = {
        {"schemaVersion", 2},
        {"mediaType", pack::media::kOciIndex},
        {"manifests", {{{"mediaType", pack::media::kOciManifest},
                        {"digest", digest_of(mtext)},
                        {"size", mtext.size()},
                        {"annotations", {{"io.containerd.image.name", "docker.io/library/demo:latest"},
                                         {"org.opencontainers.image.ref.name", "latest"}}}}}}};
    nlohmann::json manifest = nlohmann::json::array();
    manifest.push_back({{"Config", "blobs/sha256/" + hex_of(config)},
                        {"RepoTags", {"demo:latest"}},
                        {"Layers", {"blobs/sha256/" + hex_of(layer1)}}});
    std::string tar = MemTar()
                          .file("oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}")
                          .file("index.json", index.dump())
                          .file("manifest.json", manifest.dump())
                          .file("blobs/sha256/" + hex_of(mtext), mtext)
                          .file("blobs/sha256/" + hex_of(config), config)
                          .file("blobs/sha256/" + hex_of(layer1), layer1)
                          .finish();
    seeds.add("oci_style", Output().u8(128).bytes(tar).str());
    // The same without manifest.json: read as an OCI layout.
    std::string only_oci = MemTar()
                               .file("oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}")
                               .file("index.json", index.dump())
                               .file("blobs/sha256/" + hex_of(mtext), mtext)
                               .file("blobs/sha256/" + hex_of(config), config)
                               .file("blobs/sha256/" + hex_of(layer1), layer1)
                               .finish();
    seeds.add("oci_layout_only", Output().u8(0).bytes(only_oci).str());
  }
}
