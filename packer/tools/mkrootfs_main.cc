// spore-mkrootfs: a directory of the host into a deterministic EROFS image
// (the build's demo rootfs). The directory is read as spore-pack reads a
// dir: source (import_dir, packer/layers.h).
//
//   spore-mkrootfs [--root-owned] [--volume NAME] DIR IMAGE
//
// --root-owned makes every entry root:root, so the image does not depend on
// who built the tree. Exit status: 0, or one of doc/exit-codes.md.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

#include "base/exit_codes.h"
#include "base/log.h"
#include "packer/layers.h"
#include "packer/rootfs/erofs.h"

#ifndef SPORE_VERSION
#define SPORE_VERSION "dev"
#endif

namespace {

std::string dir_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

void make_root_owned(spore::pack::Node& root) {
  std::vector<spore::pack::Node*> todo = {&root};
  while (!todo.empty()) {
    spore::pack::Node* n = todo.back();
    todo.pop_back();
    n->uid = n->gid = 0;
    for (auto& [name, child] : n->children) todo.push_back(child.get());
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace spore;
  using namespace spore::pack;

  std::string dir, image;
  bool root_owned = false, verbose = false;
  ErofsOptions opts;
  CLI::App app{"spore-mkrootfs: a host directory into a deterministic, read-only EROFS image", "spore-mkrootfs"};
  app.set_version_flag("--version", std::string("spore-mkrootfs ") + SPORE_VERSION);
  app.add_option("DIR", dir, "the root of the tree")->required()->check(CLI::ExistingDirectory);
  app.add_option("IMAGE", image, "the image to write (replaced atomically)")->required();
  app.add_flag("--root-owned", root_owned, "make every entry root:root");
  app.add_option("--volume", opts.volume_name, "volume name (at most 15 bytes)");
  app.add_flag("-v,--verbose", verbose, "print what was written and how long it took");
  CLI11_PARSE(app, argc, argv);

  auto fail = [](const Error& e) {
    std::fprintf(stderr, "spore-mkrootfs: %s\n", e.message.c_str());
    return exit_code_for(e);
  };
  // The spool sits next to the image: same filesystem, and not a tmpfs
  // that would hold a whole image's contents in RAM.
  auto spool = Spool::create(dir_of(image));
  if (!spool.ok()) return fail(spool.error());
  Tree tree(std::move(*spool));

  auto t0 = std::chrono::steady_clock::now();
  LayerStats is;
  if (auto st = import_dir(tree, dir, &is); !st.ok()) return fail(st.error());
  if (root_owned) make_root_owned(tree.root());
  auto t1 = std::chrono::steady_clock::now();
  ErofsStats es;
  if (auto st = write_erofs(tree, image, opts, &es); !st.ok()) return fail(st.error());
  auto t2 = std::chrono::steady_clock::now();
  if (verbose) {
    auto secs = [](auto d) { return std::chrono::duration<double>(d).count(); };
    auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
    std::fprintf(stderr,
                 "spore-mkrootfs: %llu entries (%llu skipped); %llu inodes (%llu extended, %llu inline tails), "
                 "%llu metadata blocks, %llu bytes; import %.2fs, write %.2fs\n",
                 u(is.entries), u(is.skipped_total()), u(es.inodes), u(es.extended_inodes), u(es.inline_tails),
                 u(es.metadata_blocks), u(es.bytes), secs(t1 - t0), secs(t2 - t1));
  }
  return 0;
}
