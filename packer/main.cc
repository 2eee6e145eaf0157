// spore-pack: packs a container image into a VM-isolated app.
//
//   spore-pack IMAGE -o ./app [options]
//
// writes ./app (the static stub) and ./app.spore (the sidecar bundle:
// kernel, agent initramfs, rootfs, app config, and a warm spore when this
// host can seal one). Both appear atomically or not at all: see supervise().
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
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

struct Options {
  std::string image, out, platform = "linux/arm64", warm, entrypoint, workdir, user, name, assets, stub;
  std::vector<std::string> env;
  uint32_t cpus = 1;
  uint64_t mem_mib = 256;
  int level = bundle::Writer::kDefaultLevel;
  bool insecure = false, no_seal = false, quiet = false;
  std::string max_image_size = "32G";
  Limits limits;
  int stall_timeout_s = 60;
};

// Where one pack writes: a private work directory, and the two outputs'
// temporary names (random, created new by the builder, renamed into
// place by the supervisor).
struct Paths {
  std::string out, sidecar, work, out_tmp, sidecar_tmp, assets, stub;
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

// The checks that need no files written: a usage error leaves nothing.
Result<Paths> check_options(Options& o) {
  if (o.platform != "linux/arm64")
    return make_error(ErrorKind::kUsage, "--platform " + o.platform + " is not supported yet (linux/arm64 is)");
  if (o.cpus < 1 || o.cpus > 32) return make_error(ErrorKind::kUsage, "--cpus must be 1..32");
  if (o.mem_mib < 64 || o.mem_mib > 65536) return make_error(ErrorKind::kUsage, "--mem must be 64..65536 MiB");
  for (const auto& e : o.env)
    if (e.find('=') == std::string::npos || e[0] == '=')
      return make_error(ErrorKind::kUsage, "--env " + e + ": expected KEY=VALUE");
  auto size = parse_size(o.max_image_size, 1);
  if (!size || *size == 0)
    return make_error(ErrorKind::kUsage, "--max-image-size " + o.max_image_size + ": expected a size like 32G");
  o.limits.max_bytes = *size;
  if (o.limits.max_entries == 0 || o.limits.max_depth == 0 || o.limits.max_path_length == 0)
    return make_error(ErrorKind::kUsage, "--max-entries, --max-path-depth and --max-path-length must be at least 1");
  if (o.stall_timeout_s < 1) return make_error(ErrorKind::kUsage, "--stall-timeout must be at least 1 second");
  Paths p;
  p.out = absolute_path(o.out);
  if (is_dir(p.out)) return make_error(ErrorKind::kUsage, "-o " + o.out + " is a directory; name the app file");
  std::string out_dir = p.out.substr(0, p.out.rfind('/'));
  if (!is_dir(out_dir)) return make_error(ErrorKind::kNotFound, "output directory " + out_dir + " does not exist");
  p.sidecar = p.out + ".spore";
  p.out_tmp = temp_name_for(p.out);
  p.sidecar_tmp = p.sidecar + p.out_tmp.substr(p.out.size());  // the same random ".tmp-<hex>"

  // What goes into every app of this platform.
  p.assets = o.assets.empty() ? exe_dir() + "/../aarch64/share/spore" : o.assets;
  p.stub = o.stub.empty() ? exe_dir() + "/../aarch64/bin/spore-stub" : o.stub;
  for (const auto& f : {p.assets + "/Image", p.assets + "/initramfs.cpio", p.stub})
    if (!path_exists(f))
      return make_error(ErrorKind::kNotFound, f + " is missing (build the project, or point --assets/--stub at "
                                                  "a spore build for " + o.platform + ")");
  return p;
}

// The builder (a child process): image to rootfs, then the sidecar and the
// stub under their temporary names, complete and synced. Everything it
// writes is in the work directory or one of those two names, which the
// supervisor removes if it does not finish.
int build(const Options& o, const Paths& p) {
  Progress& progress = Progress::get();
  progress.set_enabled(!o.quiet && ::isatty(STDERR_FILENO));

  SourceOptions so;
  so.platform = o.platform;
  so.insecure = o.insecure;
  so.work_dir = p.work;
  so.limits = o.limits;
  so.stall_timeout_s = o.stall_timeout_s;
  auto image = open_image(o.image, so);
  if (!image.ok()) return fail(image.error());

  auto spool = Spool::create(p.work);
  if (!spool.ok()) return fail(spool.error());
  Tree tree(std::move(*spool), o.limits);
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
  std::string rootfs = p.work + "/rootfs.erofs";
  ErofsStats es;
  if (auto s = write_erofs(tree, rootfs, ErofsOptions{}, &es); !s.ok()) return fail(s.error());
  progress.finish(strfmt("rootfs: %llu files, %.1f MiB image", static_cast<unsigned long long>(ts.files), mib(es.bytes)));

  bundle::AppConfig cfg;
  cfg.name = p.out.substr(p.out.rfind('/') + 1);
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
  cfg.cmdline = vmm::guest_cmdline(vmm::GuestArch::kAarch64, false, vmm::RootMode::kOverlay);  // --platform linux/arm64
  cfg.packer_version = SPORE_VERSION;

  uint64_t total = 0;
  for (const std::string& f : {p.assets + "/Image", p.assets + "/initramfs.cpio", rootfs}) {
    struct stat fst {};
    if (::stat(f.c_str(), &fst) == 0) total += static_cast<uint64_t>(fst.st_size);
  }
  progress.start("compressing into " + p.sidecar, total);
  auto w = bundle::Writer::create(p.sidecar, p.sidecar_tmp);
  if (!w.ok()) return fail(w.error());
  (*w)->set_level(o.level);
  (*w)->set_progress([&progress](uint64_t n) { progress.advance(n); });
  Status st = (*w)->add(bundle::SectionType::kConfig, bundle::encode_app_config(cfg), false);
  if (st.ok()) st = (*w)->add_file(bundle::SectionType::kKernel, p.assets + "/Image", true);
  if (st.ok()) st = (*w)->add_file(bundle::SectionType::kInitramfs, p.assets + "/initramfs.cpio", true);
  if (st.ok()) st = (*w)->add_file(bundle::SectionType::kRootfs, rootfs, true);
  if (!st.ok()) return fail(st.error());
  if (auto d = (*w)->finish_temp(); !d.ok()) return fail(d.error());
  if (auto s = copy_file(p.stub, p.out_tmp, 0755); !s.ok()) return fail(s.error().wrap("writing " + p.out_tmp));
  // Durable before the supervisor renames it: never an empty app after a crash.
  auto stub_fd = open_file(p.out_tmp, O_RDONLY | O_NOFOLLOW);
  if (!stub_fd.ok()) return fail(stub_fd.error());
  if (::fsync(stub_fd->get()) < 0) return fail(errno_error("fsync " + p.out_tmp));
  progress.finish();
  return 0;
}

void remove_partial(const Paths& p) {
  (void)remove_tree(p.work);
  ::unlink(p.out_tmp.c_str());
  ::unlink(p.sidecar_tmp.c_str());
}

// Moves the built pair into place: the sidecar first, then the stub, so
// an app never runs against a missing or older sidecar. The supervisor
// does it with every signal blocked: the pair appears whole or not at all.
Status commit(const Paths& p) {
  if (::rename(p.sidecar_tmp.c_str(), p.sidecar.c_str()) < 0) return errno_error("rename " + p.sidecar_tmp);
  if (::rename(p.out_tmp.c_str(), p.out.c_str()) < 0) return errno_error("rename " + p.out_tmp);
  return ok_status();
}

// Seal a warm spore now if this host can run the app; otherwise its first
// run on such a host does it. The app seals itself (it handles its own
// signals); an interrupted or failed seal leaves the app working.
int seal(const Options& o, const Paths& p, const sigset_t& unblocked) {
  bool native = host_arch() == "aarch64";
  if (o.no_seal) return 0;
  if (!native || ::access("/dev/kvm", R_OK | W_OK) != 0) {
    std::fprintf(stderr, "spore-pack: %s; the first run on an arm64 host with KVM will seal the warm spore\n",
                 native ? "no usable /dev/kvm here" : ("this host is " + host_arch() + ", the app is " + o.platform).c_str());
    return 0;
  }
  Progress::get().note("sealing a warm spore" + (o.warm.empty() ? std::string() : " (after: " + o.warm + ")"));
  pid_t pid = ::fork();
  if (pid == 0) {
    ::sigprocmask(SIG_SETMASK, &unblocked, nullptr);
    ::execl(p.out.c_str(), p.out.c_str(), "--spore-seal", static_cast<char*>(nullptr));
    _exit(kExitSoftware);
  }
  int ws = 0;
  while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
    std::fprintf(stderr, "spore-pack: sealing failed; the app works and will seal on its first run\n");
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  }
  return 0;
}

// spore-pack runs as two processes: this supervisor, which owns the work
// directory and the output names, and a builder it forks. SIGINT, SIGTERM
// and SIGHUP reach the supervisor as ordinary events (blocked, waited
// for): it kills the builder, waits for it, removes everything the pack
// wrote and exits 128+N. Nothing runs in a signal handler, and no partial
// file survives an interruption at any point before the commit.
int supervise(Options& o) {
  auto paths = check_options(o);
  if (!paths.ok()) return fail(paths.error());
  Paths& p = *paths;

  sigset_t watched, unblocked;
  sigemptyset(&watched);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaddset(&watched, sig);
  ::sigprocmask(SIG_BLOCK, &watched, &unblocked);
  // An inherited SIG_IGN for SIGCHLD would reap the builder behind our back.
  ::signal(SIGCHLD, SIG_DFL);

  // A fresh private directory (mkdtemp: 0700, a name nobody can predict,
  // never one that already exists) in $TMPDIR.
  const char* tmpdir = std::getenv("TMPDIR");
  std::string work = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/spore-pack-XXXXXX";
  if (!::mkdtemp(work.data())) return fail(errno_error("creating a work directory in " + work.substr(0, work.rfind('/'))));
  p.work = work;

  const pid_t supervisor = ::getpid();
  pid_t builder = ::fork();
  if (builder < 0) {
    remove_partial(p);
    return fail(errno_error("fork"));
  }
  if (builder == 0) {
    // Dies with the supervisor, whatever kills it (also if that happened
    // before the request).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != supervisor) _exit(128 + SIGKILL);
    ::sigprocmask(SIG_SETMASK, &unblocked, nullptr);
    std::fflush(stderr);
    _exit(build(o, p));
  }

  int status = 0;
  for (;;) {
    siginfo_t si{};
    int sig = ::sigwaitinfo(&watched, &si);
    if (sig < 0) continue;  // EINTR
    if (sig == SIGCHLD) {
      pid_t r = ::waitpid(builder, &status, WNOHANG);
      if (r == builder) break;
      continue;
    }
    ::kill(builder, SIGKILL);
    while (::waitpid(builder, &status, 0) < 0 && errno == EINTR) {
    }
    remove_partial(p);
    // (On a terminal, over the builder's progress line.)
    std::fprintf(stderr, "%sspore-pack: interrupted; nothing written\n", ::isatty(STDERR_FILENO) ? "\r\033[K" : "");
    return 128 + sig;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    remove_partial(p);
    if (WIFEXITED(status)) return WEXITSTATUS(status);  // the builder said why
    std::fprintf(stderr, "spore-pack: the packing process was killed by signal %d; nothing written\n",
                 WTERMSIG(status));
    return 128 + WTERMSIG(status);
  }
  Status c = commit(p);
  remove_partial(p);
  if (!c.ok()) return fail(c.error());

  struct stat sst {}, bst {};
  ::stat(p.out.c_str(), &sst);
  ::stat(p.sidecar.c_str(), &bst);
  std::fprintf(stderr, "spore-pack: wrote %s (%.1f MiB) and %s (%.1f MiB)\n", p.out.c_str(), mib(sst.st_size),
               p.sidecar.c_str(), mib(bst.st_size));
  return seal(o, p, unblocked);
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
  // Limits on what an untrusted image may expand to (doc/image-sources.md).
  app.add_option("--max-image-size", o.max_image_size,
                 "most the image may expand to: file contents, and separately what the layers decompress to "
                 "(K, M, G suffixes)")
      ->capture_default_str();
  app.add_option("--max-entries", o.limits.max_entries, "most entries all layers together may hold")
      ->capture_default_str();
  app.add_option("--max-path-depth", o.limits.max_depth, "most directories an entry may lie below the root")
      ->capture_default_str();
  app.add_option("--max-path-length", o.limits.max_path_length, "longest entry name or link target, in bytes")
      ->capture_default_str();
  app.add_option("--stall-timeout", o.stall_timeout_s,
                 "seconds a registry request may receive nothing before spore-pack gives up")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }
  return supervise(o);
}
