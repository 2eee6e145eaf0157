// Test helper: builds images the way registries and `docker save` hold
// them (OCI layouts, docker archives) from tar layers made with TarWriter.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "base/sha256.h"
#include "packer/image.h"
#include "packer/layers.h"
#include "packer/test_tar.h"

namespace spore::pack::testing {

using json = nlohmann::json;

inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void spit(const std::string& path, const std::string& data) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream f(path, std::ios::binary);
  f << data;
  REQUIRE(f.good());
}

inline std::string digest_of(const std::string& data) { return "sha256:" + digest_hex(sha256(data)); }

// Compresses a file as a single stream (what a gzip/zstd layer is).
inline void compress_file(const std::string& in, const std::string& out, Compression c) {
  std::string data = slurp(in);
  archive* a = archive_write_new();
  archive_write_set_format_raw(a);
  if (c == Compression::kGzip) archive_write_add_filter_gzip(a);
  if (c == Compression::kZstd) archive_write_add_filter_zstd(a);
  if (c == Compression::kXz) archive_write_add_filter_xz(a);
  REQUIRE(archive_write_open_filename(a, out.c_str()) == ARCHIVE_OK);
  archive_entry* e = archive_entry_new();
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_pathname(e, "raw");
  REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
  archive_entry_free(e);
  REQUIRE(archive_write_data(a, data.data(), data.size()) == static_cast<la_ssize_t>(data.size()));
  REQUIRE(archive_write_close(a) == ARCHIVE_OK);
  archive_write_free(a);
}

struct Layer {
  std::string tar;          // uncompressed tar on disk
  Compression compression;  // how it is stored in the image
};

// What goes into an image config.
struct ImageSpec {
  std::string os = "linux", arch = "arm64", variant;
  std::vector<std::string> entrypoint = {"/bin/app"}, cmd = {"--serve"}, env = {"PATH=/bin", "MODE=test"};
  std::string workdir = "/srv", user = "1000:1000";
  std::vector<Layer> layers;
  std::vector<std::string> diff_ids;  // the config's rootfs.diff_ids; default: the layers' own
};

inline json config_json(const ImageSpec& s) {
  json diff_ids = json::array();
  for (const auto& l : s.layers) diff_ids.push_back(digest_of(slurp(l.tar)));
  if (!s.diff_ids.empty()) diff_ids = s.diff_ids;
  json c = {
      {"os", s.os},
      {"architecture", s.arch},
      {"config",
       {{"Entrypoint", s.entrypoint}, {"Cmd", s.cmd}, {"Env", s.env}, {"WorkingDir", s.workdir}, {"User", s.user}}},
      {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
  if (!s.variant.empty()) c["variant"] = s.variant;
  return c;
}

inline const char* layer_media_type(Compression c) {
  switch (c) {
    case Compression::kGzip: return "application/vnd.oci.image.layer.v1.tar+gzip";
    case Compression::kZstd: return "application/vnd.oci.image.layer.v1.tar+zstd";
    default: return "application/vnd.oci.image.layer.v1.tar";
  }
}

// An OCI image layout directory, written blob by blob.
class OciLayoutWriter {
 public:
  explicit OciLayoutWriter(std::string dir) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_ + "/blobs/sha256");
    spit(dir_ + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  }

  json blob(const std::string& data, const std::string& media_type) {
    std::string d = digest_of(data);
    spit(dir_ + "/blobs/sha256/" + d.substr(7), data);
    return {{"mediaType", media_type}, {"digest", d}, {"size", data.size()}};
  }

  // Config, layers and manifest; returns the manifest's descriptor.
  json image(const ImageSpec& s) {
    json layers = json::array();
    for (const auto& l : s.layers) {
      std::string stored = l.tar;
      if (l.compression != Compression::kNone) {
        stored = l.tar + ".c";
        compress_file(l.tar, stored, l.compression);
      }
      layers.push_back(blob(slurp(stored), layer_media_type(l.compression)));
    }
    json manifest = {{"schemaVersion", 2},
                     {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                     {"config", blob(config_json(s).dump(), "application/vnd.oci.image.config.v1+json")},
                     {"layers", layers}};
    json d = blob(manifest.dump(), "application/vnd.oci.image.manifest.v1+json");
    d["platform"] = {{"os", s.os}, {"architecture", s.arch}};
    if (!s.variant.empty()) d["platform"]["variant"] = s.variant;
    return d;
  }

  json index(const std::vector<json>& manifests) {
    json idx = {
        {"schemaVersion", 2}, {"mediaType", "application/vnd.oci.image.index.v1+json"}, {"manifests", manifests}};
    return blob(idx.dump(), "application/vnd.oci.image.index.v1+json");
  }

  // index.json: descriptors with their tags.
  void finish(const std::vector<std::pair<json, std::string>>& tagged) {
    json list = json::array();
    for (auto [d, tag] : tagged) {
      if (!tag.empty()) d["annotations"] = {{"org.opencontainers.image.ref.name", tag}};
      list.push_back(d);
    }
    json idx = {{"schemaVersion", 2}, {"mediaType", "application/vnd.oci.image.index.v1+json"}, {"manifests", list}};
    spit(dir_ + "/index.json", idx.dump());
  }

  std::string blob_path(const json& d) const {
    return dir_ + "/blobs/sha256/" + d["digest"].get<std::string>().substr(7);
  }

 private:
  std::string dir_;
};

// A tar of files given as name -> content (plus symlinks), for docker archives.
struct ArchiveMember {
  std::string name, content, link_target;  // link_target: a symlink member
};
inline void write_tar(const std::string& path, const std::vector<ArchiveMember>& members) {
  TarWriter w(path);
  for (const auto& m : members) {
    if (!m.link_target.empty())
      w.symlink(m.name, m.link_target);
    else
      w.file(m.name, m.content);
  }
}

// The classic `docker save` layout: <id>/layer.tar, <hex>.json, manifest.json.
// A layer used twice is stored once and linked, as docker does.
inline std::vector<ArchiveMember> classic_docker_save(const ImageSpec& s, const std::vector<std::string>& tags) {
  std::vector<ArchiveMember> out;
  std::string config = config_json(s).dump();
  std::string config_name = digest_of(config).substr(7) + ".json";
  json layers = json::array();
  std::map<std::string, std::string> seen;  // content digest -> member
  for (size_t i = 0; i < s.layers.size(); i++) {
    std::string data = slurp(s.layers[i].tar);
    std::string id = digest_of(data + std::to_string(i)).substr(7);  // v1 ids are not content digests
    std::string name = id + "/layer.tar";
    auto it = seen.find(digest_of(data));
    if (it != seen.end())
      out.push_back({name, "", "../" + it->second});
    else
      out.push_back({name, data, ""});
    seen.emplace(digest_of(data), name);
    out.push_back({id + "/VERSION", "1.0", ""});
    layers.push_back(name);
  }
  out.push_back({config_name, config, ""});
  json manifest = json::array({{{"Config", config_name}, {"RepoTags", tags}, {"Layers", layers}}});
  out.push_back({"manifest.json", manifest.dump(), ""});
  return out;
}

// Docker 25+: an OCI layout plus a manifest.json pointing into blobs/.
inline std::vector<ArchiveMember> oci_docker_save(const ImageSpec& s, const std::string& tag) {
  std::vector<ArchiveMember> out;
  auto blob = [&](const std::string& data) {
    std::string name = "blobs/sha256/" + digest_of(data).substr(7);
    out.push_back({name, data, ""});
    return name;
  };
  json layers = json::array(), manifest_layers = json::array();
  for (const auto& l : s.layers) {
    std::string data = slurp(l.tar);
    layers.push_back(blob(data));
    manifest_layers.push_back(
        {{"mediaType", "application/vnd.oci.image.layer.v1.tar"}, {"digest", digest_of(data)}, {"size", data.size()}});
  }
  std::string config = config_json(s).dump();
  std::string config_name = blob(config);
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"config",
                    {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                     {"digest", digest_of(config)},
                     {"size", config.size()}}},
                   {"layers", manifest_layers}};
  std::string m = manifest.dump();
  blob(m);
  json index = {{"schemaVersion", 2},
                {"mediaType", "application/vnd.oci.image.index.v1+json"},
                {"manifests",
                 {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"digest", digest_of(m)},
                   {"size", m.size()},
                   {"annotations",
                    {{"io.containerd.image.name", "docker.io/library/" + tag},
                     {"org.opencontainers.image.ref.name", tag.substr(tag.find(':') + 1)}}}}}}};
  out.push_back({"index.json", index.dump(), ""});
  out.push_back({"oci-layout", R"({"imageLayoutVersion":"1.0.0"})", ""});
  out.push_back(
      {"manifest.json", json::array({{{"Config", config_name}, {"RepoTags", {tag}}, {"Layers", layers}}}).dump(), ""});
  return out;
}

// The two layers most tests use: a base and an update with a whiteout.
inline std::vector<Layer> demo_layers(const std::string& dir, Compression c1 = Compression::kGzip,
                                      Compression c2 = Compression::kZstd, const std::string& marker = "arm64") {
  std::filesystem::create_directories(dir);
  {
    TarWriter w(dir + "/l1.tar");
    w.file("bin/app", "#!/bin/sh\necho " + marker + "\n", {0755});
    w.file("etc/os-release", "ID=demo\n");
    w.file("tmp/junk", "junk");
  }
  {
    TarWriter w(dir + "/l2.tar");
    w.whiteout("tmp", "junk");
    w.file("srv/data", "data");
  }
  return {{dir + "/l1.tar", c1}, {dir + "/l2.tar", c2}};
}

// open_image that must work / must fail, saying which reference and why.
inline Image open_ok(const std::string& ref, const SourceOptions& o) {
  auto r = open_image(ref, o);
  INFO(ref << ": " << (r.ok() ? "" : r.error().message));
  REQUIRE(r.ok());
  return std::move(*r);
}

inline Error open_err(const std::string& ref, const SourceOptions& o) {
  auto r = open_image(ref, o);
  INFO(ref);
  REQUIRE_FALSE(r.ok());
  INFO(r.error().message);
  return r.error();
}

inline Tree unpack(const Image& image) {
  Tree t(std::move(*Spool::create("/tmp")));
  if (!image.rootfs_dir.empty()) {
    REQUIRE(import_dir(t, image.rootfs_dir).ok());
    return t;
  }
  for (size_t i = 0; i < image.layers.size(); i++) {
    auto s = apply_layer(t, image.layers[i].path, static_cast<uint32_t>(i + 1), nullptr, image.layers[i].diff_id);
    INFO((s.ok() ? "" : s.error().message));
    REQUIRE(s.ok());
  }
  return t;
}

inline std::string read_tree_file(const Tree& t, const std::string& path) {
  auto n = t.lookup(path);
  REQUIRE(n);
  REQUIRE(n->kind == Node::Kind::kFile);
  std::string s(n->size, '\0');
  REQUIRE(t.spool().read(n->data_offset, s.data(), s.size()).ok());
  return s;
}

}  // namespace spore::pack::testing
