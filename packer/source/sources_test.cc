// Packing from local sources: OCI layouts, docker archives, directories.
#include <catch2/catch.hpp>

#include "base/strings.h"
#include "packer/image.h"
#include "packer/source/docker_archive.h"
#include "packer/source/manifest.h"
#include "packer/source/oci_layout.h"
#include "packer/source/test_images.h"

using namespace spore;
using namespace spore::pack;
using namespace spore::pack::testing;

namespace {

SourceOptions options(const TempDir& tmp, const std::string& platform = "linux/arm64") {
  SourceOptions o;
  o.platform = platform;
  o.blob_cache = tmp / "cache";
  o.work_dir = tmp / "work";
  std::filesystem::create_directories(o.work_dir);
  return o;
}

void check_demo(const Image& image, const std::string& marker = "arm64") {
  CHECK(image.config.entrypoint == std::vector<std::string>{"/bin/app"});
  CHECK(image.config.cmd == std::vector<std::string>{"--serve"});
  CHECK(image.config.env == std::vector<std::string>{"PATH=/bin", "MODE=test"});
  CHECK(image.config.workdir == "/srv");
  CHECK(image.config.user == "1000:1000");
  REQUIRE(image.layers.size() == 2);
  Tree t = unpack(image);
  CHECK(read_tree_file(t, "bin/app") == "#!/bin/sh\necho " + marker + "\n");
  CHECK(t.lookup("bin/app")->mode == 0755);
  CHECK(read_tree_file(t, "srv/data") == "data");
  CHECK_FALSE(t.lookup("tmp/junk"));
  CHECK(t.lookup("tmp"));
}

}  // namespace

TEST_CASE("oci: layouts by tag, with nested indexes and verified blobs", "[pack][source]") {
  TempDir tmp;
  auto opts = options(tmp);
  OciLayoutWriter w(tmp / "layout");
  ImageSpec arm;
  arm.layers = demo_layers(tmp / "arm");
  ImageSpec amd;
  amd.arch = "amd64";
  amd.layers = demo_layers(tmp / "amd", Compression::kNone, Compression::kGzip, "amd64");
  json arm_m = w.image(arm), amd_m = w.image(amd);
  json multi = w.index({amd_m, arm_m});
  w.finish({{arm_m, "v1"}, {multi, "multi"}});

  Image image = open_ok("oci:" + tmp / "layout" + ":v1", opts);
  CHECK(image.reference == "oci:" + tmp / "layout" + ":v1");
  CHECK(image.digest == arm_m["digest"]);
  CHECK(image.config.architecture == "arm64");
  CHECK(image.layers[0].media_type == "application/vnd.oci.image.layer.v1.tar+gzip");
  // Layers are read in place from the layout.
  CHECK(image.layers[0].path == tmp / "layout/blobs/sha256/" + image.layers[0].digest.substr(7));
  check_demo(image);

  // The multi-platform tag resolves through the nested index.
  Image m = open_ok("oci:" + tmp / "layout" + ":multi", opts);
  CHECK(m.digest == multi["digest"]);
  check_demo(m);
  Image a = open_ok("oci:" + tmp / "layout" + ":multi", options(tmp, "linux/amd64"));
  check_demo(a, "amd64");

  Error e = open_err("oci:" + tmp / "layout" + ":multi", options(tmp, "linux/riscv64"));
  CHECK(e.kind == ErrorKind::kNotFound);
  CHECK(e.message.find("linux/amd64, linux/arm64") != std::string::npos);

  e = open_err("oci:" + tmp / "layout" + ":nope", opts);
  CHECK(e.kind == ErrorKind::kNotFound);
  CHECK(e.message.find("v1, multi") != std::string::npos);

  // Two images and no tag: which one is ambiguous.
  e = open_err("oci:" + tmp / "layout", opts);
  CHECK(e.message.find("several images") != std::string::npos);

  // A single-platform image for another architecture is refused, not packed.
  e = open_err("oci:" + tmp / "layout" + ":v1", options(tmp, "linux/amd64"));
  CHECK(e.message.find("linux/arm64, not linux/amd64") != std::string::npos);
}

TEST_CASE("oci: a damaged blob fails its digest", "[pack][source]") {
  TempDir tmp;
  auto opts = options(tmp);
  OciLayoutWriter w(tmp / "layout");
  ImageSpec s;
  s.layers = demo_layers(tmp / "l");
  json m = w.image(s);
  w.finish({{m, ""}});
  CHECK(open_ok("oci:" + tmp / "layout", opts).layers.size() == 2);  // the only image needs no tag

  auto manifest = json::parse(slurp(w.blob_path(m)));
  std::string layer = w.blob_path(manifest["layers"][1]);
  std::string data = slurp(layer);
  data[data.size() / 2] ^= 1;
  spit(layer, data);
  Error e = open_err("oci:" + tmp / "layout", opts);
  CHECK(e.kind == ErrorKind::kCorrupt);
  CHECK(e.message.find("does not match its digest") != std::string::npos);

  std::filesystem::remove(layer);
  e = open_err("oci:" + tmp / "layout", opts);
  CHECK(e.message.find("missing") != std::string::npos);

  CHECK(open_err("oci:" + tmp / "nowhere", opts).kind == ErrorKind::kNotFound);
}

TEST_CASE("oci: a compressed layer is checked against the config's diff_id", "[pack][source]") {
  TempDir tmp;
  auto opts = options(tmp);
  ImageSpec s;
  s.layers = demo_layers(tmp / "l", Compression::kGzip, Compression::kZstd);
  {
    OciLayoutWriter w(tmp / "good");
    w.finish({{w.image(s), ""}});
  }
  Image good = open_ok("oci:" + tmp / "good", opts);
  REQUIRE(good.layers.size() == 2);
  // A compressed blob's digest is not its diff_id: both are checked.
  CHECK(good.layers[0].diff_id == digest_of(slurp(s.layers[0].tar)));
  CHECK(good.layers[0].diff_id != good.layers[0].digest);
  check_demo(good);

  // Blobs intact (their digests match), but the config vouches for other
  // content: the uncompressed stream gives it away.
  s.diff_ids = {digest_of(slurp(s.layers[0].tar)), digest_of("something else")};
  OciLayoutWriter w(tmp / "bad");
  w.finish({{w.image(s), ""}});
  Image bad = open_ok("oci:" + tmp / "bad", opts);
  Tree t(std::move(*Spool::create("/tmp")));
  REQUIRE(apply_layer(t, bad.layers[0].path, 1, nullptr, bad.layers[0].diff_id).ok());
  auto st = apply_layer(t, bad.layers[1].path, 2, nullptr, bad.layers[1].diff_id);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().kind == ErrorKind::kCorrupt);
  CHECK(st.error().message.find("does not match the config's diff_id " + digest_of("something else")) !=
        std::string::npos);

  // Only SHA-256 diff_ids are checked; an uncompressed layer's is its digest.
  CHECK(layer_diff_id({"sha512:abc"}, 0, "sha256:x").empty());
  CHECK(layer_diff_id({"sha256:x"}, 0, "sha256:x").empty());
  CHECK(layer_diff_id({"sha256:y"}, 0, "sha256:x") == "sha256:y");
  CHECK(layer_diff_id({}, 0, "sha256:x").empty());
}

TEST_CASE("docker-archive: classic docker save with a repeated layer", "[pack][source]") {
  TempDir tmp;
  auto opts = options(tmp);
  ImageSpec s;
  s.layers = demo_layers(tmp / "l", Compression::kNone, Compression::kNone);
  s.layers.push_back(s.layers[0]);  // the base again: stored once, linked
  write_tar(tmp / "image.tar", classic_docker_save(s, {"demo:1.0", "demo:latest"}));

  Image image = open_ok("docker-archive:" + tmp / "image.tar", opts);
  CHECK(image.config.user == "1000:1000");
  REQUIRE(image.layers.size() == 3);
  CHECK(image.layers[0].digest == image.layers[2].digest);
  CHECK(image.layers[0].digest == digest_of(slurp(s.layers[0].tar)));
  Tree t = unpack(image);
  CHECK(read_tree_file(t, "tmp/junk") == "junk");  // the third layer brings it back
  CHECK(t.lookup("srv/data"));

  // By tag, and the selector's error lists what is there.
  CHECK(open_ok("docker-archive:" + tmp / "image.tar:demo:1.0", opts).layers.size() == 3);
  CHECK(open_ok("docker-archive:" + tmp / "image.tar:docker.io/library/demo:latest", opts).layers.size() == 3);
  Error e = open_err("docker-archive:" + tmp / "image.tar:other:1", opts);
  CHECK(e.message.find("demo:1.0 demo:latest") != std::string::npos);
}

TEST_CASE("docker-archive: a layer that does not match its diff_id is refused", "[pack][source]") {
  TempDir tmp;
  auto opts = options(tmp);
  ImageSpec s;
  s.layers = demo_layers(tmp / "l", Compression::kNone, Compression::kNone);
  auto members = classic_docker_save(s, {"demo:1"});
  for (auto& m : members)
    if (m.name.find("layer.tar") != std::string::npos && !m.content.empty()) {
      m.content[600] ^= 1;
      break;
    }
  write_tar(tmp / "bad.tar", members);
  Error e = open_err("docker-archive:" + tmp / "bad.tar", opts);
  CHECK(e.kind == ErrorKind::kCorrupt);
  CHECK(e.message.find("diff_id") != std::string::npos);

  // A member escaping the archive is refused before anything is read.
  {
    TarWriter w(tmp / "evil.tar");
    w.file("../../evil", "x");
  }
  e = open_err("docker-archive:" + tmp / "evil.tar", opts);
  CHECK(e.message.find("climbs out") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(tmp / "evil"));
}

TEST_CASE("docker-archive: the OCI layout of Docker 25+", "[pack][source]") {
  TempDir tmp;
  auto opts = options(tmp);
  ImageSpec s;
  s.layers = demo_layers(tmp / "l", Compression::kNone, Compression::kNone);
  auto members = oci_docker_save(s, "demo:2");
  write_tar(tmp / "oci.tar", members);
  check_demo(open_ok("docker-archive:" + tmp / "oci.tar", opts));

  // Without manifest.json it is read as the OCI layout it also is.
  std::vector<ArchiveMember> only_oci;
  for (const auto& m : members)
    if (m.name != "manifest.json") only_oci.push_back(m);
  write_tar(tmp / "oci-only.tar", only_oci);
  Image image = open_ok("docker-archive:" + tmp / "oci-only.tar", opts);
  CHECK_FALSE(image.digest.empty());
  check_demo(image);
  check_demo(open_ok("docker-archive:" + tmp / "oci-only.tar:2", opts));

  // A blob whose bytes do not match its name.
  for (auto& m : members)
    if (starts_with(m.name, "blobs/") && m.content.size() > 1000) {
      m.content[700] ^= 1;
      break;
    }
  write_tar(tmp / "bad.tar", members);
  Error e = open_err("docker-archive:" + tmp / "bad.tar", opts);
  CHECK(e.kind == ErrorKind::kCorrupt);
}

TEST_CASE("dir: a plain root directory", "[pack][source]") {
  TempDir tmp;
  auto opts = options(tmp);
  spit(tmp / "root/bin/app", "app");
  Image image = open_ok("dir:" + tmp / "root", opts);
  CHECK(image.rootfs_dir == tmp / "root");
  CHECK(image.layers.empty());
  CHECK(image.config.entrypoint.empty());
  Tree t = unpack(image);
  CHECK(read_tree_file(t, "bin/app") == "app");
  CHECK(open_err("dir:" + tmp / "root/bin/app", opts).kind == ErrorKind::kNotFound);
}

TEST_CASE("image arguments that cannot work say why", "[pack][source]") {
  TempDir tmp;
  auto opts = options(tmp);
  CHECK(open_err("containers-storage:alpine", opts).message.find("not supported") != std::string::npos);
  CHECK(open_err("Not A Reference", opts).kind == ErrorKind::kUsage);
  CHECK(open_err("alpine", options(tmp, "arm64")).kind == ErrorKind::kUsage);  // platform needs os/arch
  auto no_work = opts;
  no_work.work_dir.clear();
  ImageSpec s;
  s.layers = demo_layers(tmp / "l", Compression::kNone, Compression::kNone);
  write_tar(tmp / "image.tar", classic_docker_save(s, {"demo:1"}));
  CHECK(open_err("docker-archive:" + tmp / "image.tar", no_work).message.find("work directory") != std::string::npos);
}
