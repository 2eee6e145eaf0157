// spore-pack: packs a container image into a VM-isolated app.
//
//   spore-pack IMAGE -o ./app [options]
//
// writes ./app (the static stub) and ./app.spore (the sidecar bundle:
// kernel, agent initramfs, rootfs, app config, and a warm spore when this
// host can seal one). Both appear atomically or not at all.
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "base/exit_codes.h"
#include "base/files.h"
#include "base/strings.h"
#include "bundle/app_config.h"
#include "bundle/bundle.h"
#include "packer/image.h"
#include "packer/layers.h"
#include "packer/rootfs/erofs.h"
#include "packer/tree.h"
#include "vmm/guest_cmdline.h"

#ifndef SPORE_VERSION
#define SPORE_VERSION "dev"
#endif

namespace spore::pack {
namespace {

// Temporary files to remove if we are interrupted: written by the main
// thread, read by the signal handler (which only calls unlink and _exit).
constexpr int kMaxTemps = 8;
char g_temps[kMaxTemps][PATH_MAX];
volatile sig_atomic_t g_ntemps = 0;

void track_temp(const std::string& path) {
  if (g_ntemps >= kMaxTemps || path.size() >= PATH_MAX) return;
  std::snprintf(g_temps[g_ntemps], PATH_MAX, "%s", path.c_str());
  g_ntemps = g_ntemps + 1;
}

void on_interrupt(int sig) {
  for (int i = 0; i < g_ntemps; i++) ::unlink(g_temps[i]);
  _exit(128 + sig);
}

struct Options {
  std::string image, out, platform = "linux/arm64", warm, entrypoint, workdir, user, name, assets, stub;
  std::vector<std::string> env;
  uint32_t cpus = 1;
  uint64_t mem_mib = 256;
  int level = bundle::Writer::kDefaultLevel;
  bool insecure = false, no_seal = false, quiet = false;
};

int fail(const Error& e) {
  std::fprintf(stderr, "spore-pack: %s\n", e.message.c_str());
  return exit_code_for(e);
}

std::string exe_dir() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  std::string exe = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string(".");
  return exe.substr(0, exe.rfind('/'));
}

std::string host_arch() {
  utsname u{};
  ::uname(&u);
  return u.machine;
}

double mib(uint64_t b) { return b / 1048576.0; }

int run_pack(const Options& o) {
  if (o.platform != "linux/arm64")
    return fail(make_error(ErrorKind::kUsage, "--platform " + o.platform + " is not supported yet (linux/arm64 is)"));
  if (o.cpus < 1 || o.cpus > 32) return fail(make_error(ErrorKind::kUsage, "--cpus must be 1..32"));
  if (o.mem_mib < 64 || o.mem_mib > 65536) return fail(make_error(ErrorKind::kUsage, "--mem must be 64..65536 MiB"));
  for (const auto& e : o.env)
    if (e.find('=') == std::string::npos || e[0] == '=')
      return fail(make_error(ErrorKind::kUsage, "--env " + e + ": expected KEY=VALUE"));
  std::string out = absolute_path(o.out);
  if (is_dir(out)) return fail(make_error(ErrorKind::kUsage, "-o " + o.out + " is a directory; name the app file"));
  std::string out_dir = out.substr(0, out.rfind('/'));
  if (!is_dir(out_dir)) return fail(make_error(ErrorKind::kNotFound, "output directory " + out_dir + " does not exist"));

  // What goes into every app of this platform.
  std::string assets = o.assets.empty() ? exe_dir() + "/../aarch64/share/spore" : o.assets;
  std::string stub = o.stub.empty() ? exe_dir() + "/../aarch64/bin/spore-stub" : o.stub;
  for (const auto& f : {assets + "/Image", assets + "/initramfs.cpio", stub})
    if (!path_exists(f))
      return fail(make_error(ErrorKind::kNotFound, f + " is missing (build the project, or point --assets/--stub at "
                                                       "a spore build for " + o.platform + ")"));

  Progress& progress = Progress::get();
  progress.set_enabled(!o.quiet && ::isatty(STDERR_FILENO));
  const char* tmpdir = std::getenv("TMPDIR");
  std::string work = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/spore-pack-" + std::to_string(::getpid());
  if (auto s = make_dirs(work, 0700); !s.ok()) return fail(s.error());
  struct Cleanup {
    std::string dir;
    ~Cleanup() { (void)remove_tree(dir); }
  } cleanup{work};

  SourceOptions so;
  so.platform = o.platform;
  so.insecure = o.insecure;
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  so.blob_cache = xdg && *xdg ? std::string(xdg) + "/spore/blobs" : std::string(home ? home : "/tmp") + "/.cache/spore/blobs";
  so.work_dir = work;
  auto image = open_image(o.image, so);
  if (!image.ok()) return fail(image.error());

  auto spool = Spool::create(work);
  if (!spool.ok()) return fail(spool.error());
  Tree tree(std::move(*spool));
  LayerStats ls;
  if (!image->rootfs_dir.empty()) {
    progress.start("importing " + image->rootfs_dir, 0);
    if (auto s = import_dir(tree, image->rootfs_dir, &ls); !s.ok()) return fail(s.error());
  } else {
    for (size_t i = 0; i < image->layers.size(); i++) {
      progress.start(strfmt("applying layer %zu/%zu", i + 1, image->layers.size()), 0);
      const LayerBlob& l = image->layers[i];
      LayerStats layer_stats;
      if (auto s = apply_layer(tree, l.path, static_cast<uint32_t>(i + 1), &layer_stats, l.diff_id); !s.ok())
        return fail(s.error().wrap("layer " + image->layers[i].digest));
      for (const auto& [reason, count] : layer_stats.skipped) ls.skipped[reason] += count;
      for (auto& e : layer_stats.skipped_examples)
        if (ls.skipped_examples.size() < 5) ls.skipped_examples.push_back(strfmt("layer %zu: %s", i + 1, e.c_str()));
    }
  }
  progress.finish();
  auto ts = tree.stats();
  if (ls.skipped_total()) {
    // One line for the user: how many, why, and the first example.
    std::string reasons;
    for (const auto& [reason, count] : ls.skipped)
      reasons += strfmt("%s%s: %llu", reasons.empty() ? "" : ", ", reason.c_str(), static_cast<unsigned long long>(count));
    std::fprintf(stderr, "spore-pack: skipped %llu entries the image cannot carry (%s; e.g. %s)\n",
                 static_cast<unsigned long long>(ls.skipped_total()), reasons.c_str(),
                 ls.skipped_examples.empty() ? "?" : ls.skipped_examples[0].c_str());
  }

  progress.start("building the rootfs", 0);
  std::string rootfs = work + "/rootfs.erofs";
  ErofsStats es;
  if (auto s = write_erofs(tree, rootfs, ErofsOptions{}, &es); !s.ok()) return fail(s.error());
  progress.finish(strfmt("rootfs: %llu files, %.1f MiB image", static_cast<unsigned long long>(ts.files), mib(es.bytes)));

  bundle::AppConfig cfg;
  cfg.name = out.substr(out.rfind('/') + 1);
  if (!o.name.empty()) cfg.name = o.name;
  cfg.image = o.image;
  cfg.image_digest = image->digest;
  cfg.platform = o.platform;
  cfg.entrypoint = image->config.entrypoint;
  cfg.cmd = image->config.cmd;
  if (!o.entrypoint.empty()) {  // docker: --entrypoint replaces it and drops the image's Cmd
    cfg.entrypoint = {o.entrypoint};
    cfg.cmd.clear();
  }
  cfg.env = merge_env(image->config.env, o.env);
  cfg.workdir = o.workdir.empty() ? image->config.workdir : o.workdir;
  cfg.user = o.user.empty() ? image->config.user : o.user;
  cfg.cpus = o.cpus;
  cfg.mem_mib = o.mem_mib;
  if (!o.warm.empty()) cfg.warm = {"/bin/sh", "-c", o.warm};
  cfg.cmdline = vmm::guest_cmdline(false, vmm::RootMode::kOverlay);
  cfg.packer_version = SPORE_VERSION;

  // The sidecar, then the stub: each through a temporary name.
  std::string sidecar = out + ".spore";
  uint64_t total = 0;
  for (const std::string& f : {assets + "/Image", assets + "/initramfs.cpio", rootfs}) {
    struct stat fst {};
    if (::stat(f.c_str(), &fst) == 0) total += static_cast<uint64_t>(fst.st_size);
  }
  progress.start("compressing into " + sidecar, total);
  auto w = bundle::Writer::create(sidecar);
  if (!w.ok()) return fail(w.error());
  track_temp((*w)->temp_path());
  (*w)->set_level(o.level);
  (*w)->set_progress([&progress](uint64_t n) { progress.advance(n); });
  Status st = (*w)->add(bundle::SectionType::kConfig, bundle::encode_app_config(cfg), false);
  if (st.ok()) st = (*w)->add_file(bundle::SectionType::kKernel, assets + "/Image", true);
  if (st.ok()) st = (*w)->add_file(bundle::SectionType::kInitramfs, assets + "/initramfs.cpio", true);
  if (st.ok()) st = (*w)->add_file(bundle::SectionType::kRootfs, rootfs, true);
  if (!st.ok()) return fail(st.error());
  std::string stub_tmp = out + ".tmp." + std::to_string(::getpid());
  track_temp(stub_tmp);
  ::unlink(stub_tmp.c_str());
  if (auto s = copy_file(stub, stub_tmp, 0755); !s.ok()) return fail(s.error());
  auto digest = (*w)->finish();
  if (!digest.ok()) {
    ::unlink(stub_tmp.c_str());
    return fail(digest.error());
  }
  if (::rename(stub_tmp.c_str(), out.c_str()) < 0) {
    ::unlink(stub_tmp.c_str());
    return fail(errno_error("rename " + stub_tmp));
  }
  progress.finish();
  struct stat sst {}, bst {};
  ::stat(out.c_str(), &sst);
  ::stat(sidecar.c_str(), &bst);
  std::fprintf(stderr, "spore-pack: wrote %s (%.1f MiB) and %s (%.1f MiB)\n", out.c_str(), mib(sst.st_size),
               sidecar.c_str(), mib(bst.st_size));

  // Seal a warm spore now if this host can run the app; otherwise its
  // first run on such a host does it.
  bool native = host_arch() == "aarch64";
  if (o.no_seal) return 0;
  if (!native || ::access("/dev/kvm", R_OK | W_OK) != 0) {
    std::fprintf(stderr, "spore-pack: %s; the first run on an arm64 host with KVM will seal the warm spore\n",
                 native ? "no usable /dev/kvm here" : ("this host is " + host_arch() + ", the app is " + o.platform).c_str());
    return 0;
  }
  progress.note("sealing a warm spore" + (o.warm.empty() ? std::string() : " (after: " + o.warm + ")"));
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl(out.c_str(), out.c_str(), "--spore-seal", static_cast<char*>(nullptr));
    _exit(kExitSoftware);
  }
  int ws = 0;
  while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
    std::fprintf(stderr, "spore-pack: sealing failed; the app works and will seal on its first run\n");
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : kExitSoftware;
  }
  return 0;
}

}  // namespace
}  // namespace spore::pack

int main(int argc, char** argv) {
  using namespace spore;
  using namespace spore::pack;
  Options o;
  CLI::App app{"spore-pack: pack a container image into a self-contained, VM-isolated app", "spore-pack"};
  app.set_version_flag("--version", std::string("spore-pack ") + SPORE_VERSION);
  app.add_option("image", o.image,
                 "name[:tag] | host:port/name[:tag] | name@sha256:... | oci:DIR[:tag] | docker-archive:FILE | dir:PATH")
      ->required();
  app.add_option("-o,--output", o.out, "the app to write (its sidecar is the same path + .spore)")->required();
  app.add_option("--platform", o.platform, "target platform")->default_val("linux/arm64");
  app.add_option("--cpus", o.cpus, "vCPUs of the app's VM")->default_val(1);
  app.add_option("--mem", o.mem_mib, "RAM of the app's VM in MiB")->default_val(256);
  app.add_option("--warm", o.warm, "shell command run once before sealing (e.g. import a runtime)");
  app.add_option("--entrypoint", o.entrypoint, "replace the image's entrypoint (and drop its Cmd)");
  app.add_option("-e,--env", o.env, "add KEY=VALUE to the image's environment");
  app.add_option("-w,--workdir", o.workdir, "replace the image's working directory");
  app.add_option("-u,--user", o.user, "replace the image's user");
  app.add_option("--name", o.name, "the app's name in messages (default: the output file name)");
  app.add_option("--compression", o.level,
                 "zstd level of the sidecar's kernel, initramfs and rootfs: 1 (fastest) to 19 (smallest)")
      ->check(CLI::Range(1, 19))
      ->capture_default_str();
  app.add_flag("--insecure", o.insecure, "plain HTTP to the registry (for local test registries)");
  app.add_flag("--no-seal", o.no_seal, "do not seal a warm spore now (the first run will)");
  app.add_option("--assets", o.assets, "folder with the guest kernel Image and initramfs.cpio");
  app.add_option("--stub", o.stub, "the stub binary to copy");
  app.add_flag("-q,--quiet", o.quiet, "no progress output");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  return run_pack(o);
}
