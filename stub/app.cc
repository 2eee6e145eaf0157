#include "stub/app.h"

#include <limits.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>

#include "base/files.h"
#include "base/strings.h"
#include "bundle/spore_files.h"
#include "vmm/guest.h"
#include "vmm/seccomp_policy.h"
#include "vmm/spore/capture.h"

namespace spore::stub {
namespace {

constexpr int kBootTimeoutMs = 180'000;

std::string self_exe() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

std::string host_platform() {
  utsname u{};
  ::uname(&u);
  std::string m = u.machine;
  if (m == "aarch64") return "linux/arm64";
  if (m == "x86_64") return "linux/amd64";
  return "linux/" + m;
}

}  // namespace

void say(const std::string& app, const std::string& msg) {
  static std::mutex mu;
  static std::set<std::string> said;
  std::lock_guard<std::mutex> g(mu);
  if (!said.insert(msg).second) return;
  std::fprintf(stderr, "%s: %s\n", app.c_str(), msg.c_str());
}

Result<std::unique_ptr<App>> App::open(const std::string& name) {
  std::unique_ptr<App> a(new App());
  a->name_ = name;
  if (const char* b = std::getenv("SPORE_BUNDLE"); b && *b) a->bundle_path_ = b;
  else a->bundle_path_ = self_exe() + ".spore";
  auto r = bundle::Reader::open(a->bundle_path_);
  if (!r.ok()) {
    if (r.error().kind == ErrorKind::kNotFound)
      return make_error(ErrorKind::kNotFound, "no sidecar bundle at " + a->bundle_path_ +
                                                  " (keep it next to this program, named like it plus .spore, "
                                                  "or set SPORE_BUNDLE)");
    return std::move(r).error();
  }
  a->reader_ = std::move(*r);
  const bundle::Section* cfg = a->reader_->find(bundle::SectionType::kConfig);
  if (!cfg) return make_error(ErrorKind::kCorrupt, a->bundle_path_ + ": the bundle has no app config");
  SPORE_ASSIGN_OR_RETURN(std::string cfg_bytes, a->reader_->read(*cfg, 1 << 20));
  auto c = bundle::decode_app_config(cfg_bytes);
  if (!c.ok()) return std::move(c).error().wrap(a->bundle_path_);
  a->config_ = std::move(*c);
  // The name it was packed with (spore-pack --name, default the output's
  // file name) prefixes messages and names its daemon, however the stub was
  // renamed since.
  if (!a->config_.name.empty()) a->name_ = a->config_.name;
  if (a->config_.platform != host_platform())
    return make_error(ErrorKind::kUnavailable, "this app is packed for " + a->config_.platform + ", this host is " +
                                                   host_platform());
  for (auto t : {bundle::SectionType::kKernel, bundle::SectionType::kInitramfs, bundle::SectionType::kRootfs})
    if (!a->reader_->find(t))
      return make_error(ErrorKind::kCorrupt, a->bundle_path_ + ": the bundle has no " + bundle::section_name(t));

  SPORE_ASSIGN_OR_RETURN(vmm::Cache cache, vmm::Cache::open());
  a->cache_ = std::move(cache);
  a->dir_ = a->cache_->dir() + "/bundles/" + a->digest_hex();
  SPORE_TRY(make_private_dir(a->cache_->dir() + "/bundles"));
  SPORE_TRY(make_private_dir(a->dir_));
  return a;
}

std::string App::digest_hex() const { return spore::digest_hex(reader_->digest()); }

Result<std::string> App::extracted(bundle::SectionType type) {
  const bundle::Section* s = reader_->find(type);
  if (!s) return make_error(ErrorKind::kCorrupt, bundle_path_ + ": the bundle has no " + bundle::section_name(type));
  // Named by content, not by bundle: sealing a bundle (which changes its
  // digest) or another app with the same kernel finds it extracted already.
  std::string path = cache_->section_path(s->sha256, bundle::section_name(type));
  // Written by rename after verification; still, a file that changed since
  // (or that the cache never vouched for) is hashed again, and redone if
  // it is not the section any more.
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) == s->size) {
    auto d = cache_->file_digest(path);
    if (d.ok() && *d == s->sha256) return path;
  }
  SPORE_TRY(reader_->extract(*s, path));
  cache_->remember_digest(path, s->sha256);
  return path;
}

Result<std::unique_ptr<vmm::Machine>> App::resume(const vmm::Spore& spore, const MachineRequest& req,
                                                  vmm::ResumeReport* report) {
  vmm::ResumeOptions ro;
  ro.console = req.console;
  if (spore.manifest.rootfs) {
    SPORE_ASSIGN_OR_RETURN(ro.rootfs_override, extracted(bundle::SectionType::kRootfs));
  }
  SPORE_ASSIGN_OR_RETURN(auto m, vmm::resume_spore(spore, ro, *cache_, report));
  SPORE_TRY(m->start());
  return m;
}

Result<std::unique_ptr<vmm::Machine>> App::cold_boot(uint32_t cpus, uint64_t mem_mib, const MachineRequest& req) {
  vmm::MachineConfig mc;
  SPORE_ASSIGN_OR_RETURN(mc.kernel, extracted(bundle::SectionType::kKernel));
  SPORE_ASSIGN_OR_RETURN(mc.initrd, extracted(bundle::SectionType::kInitramfs));
  SPORE_ASSIGN_OR_RETURN(mc.rootfs, extracted(bundle::SectionType::kRootfs));
  mc.cmdline = config_.cmdline;
  mc.vcpus = cpus;
  mc.mem_mib = mem_mib;
  auto console = std::make_shared<vmm::ConsoleLog>(false);
  auto forward = req.console;
  mc.console = [console, forward](const char* d, size_t n) {
    console->write(d, n);
    if (forward) forward(d, n);
  };
  SPORE_ASSIGN_OR_RETURN(auto m, vmm::Machine::create(mc));
  SPORE_ASSIGN_OR_RETURN(auto ready, vmm::AgentReady::listen(*m));
  SPORE_TRY(m->start());
  // The guest runs: from here on this thread only finishes what obtain()
  // and the caller started (vmm/seccomp_policy.h).
  SPORE_TRY(vmm::confine_this_thread(vmm::ThreadRole::kController));
  auto hello = ready->wait(kBootTimeoutMs, req.signal_fd);
  if (!hello.ok()) {
    if (hello.error().kind == ErrorKind::kInterrupted) return std::move(hello).error();
    std::string tail = console->report_tail(15);
    if (!tail.empty()) tail.pop_back();  // the caller ends the message's line
    return make_error(hello.error().kind, hello.error().message + (tail.empty() ? "" : "\n" + tail));
  }
  return m;
}

Status App::run_warm(vmm::Machine& m) {
  if (config_.warm.empty()) return ok_status();
  proto::ExecRequest req;
  req.argv = config_.warm;
  req.env = config_.env;
  req.cwd = config_.workdir;
  req.user = config_.user;
  agent::ExecIo io;
  io.stdout_fd = STDERR_FILENO;  // the warm-up's chatter is not the command's output
  auto out = vmm::exec_in_guest(m, req, io);
  if (!out.ok()) return std::move(out).error().wrap("warm command");
  if (out->refused) return make_error(ErrorKind::kUsage, "warm command: " + out->refused->message);
  if (out->exit->status != 0)
    return make_error(ErrorKind::kGuest, strfmt("warm command exited with status %u", out->exit->status));
  return ok_status();
}

Result<Obtained> App::obtain(const MachineRequest& req) {
  const uint32_t cpus = req.cpus.value_or(config_.cpus);
  const uint64_t mem = req.mem_mib.value_or(config_.mem_mib);
  Obtained o;
  if (cpus != config_.cpus || mem != config_.mem_mib) {
    say(name_, strfmt("%u vCPU / %llu MiB differs from the sealed %u vCPU / %llu MiB: cold booting", cpus,
                      static_cast<unsigned long long>(mem), config_.cpus,
                      static_cast<unsigned long long>(config_.mem_mib)));
    SPORE_ASSIGN_OR_RETURN(o.machine, cold_boot(cpus, mem, req));
    return o;
  }
  // The spore sealed into the bundle, when this host can run it.
  std::string refused;  // why this host cannot resume it
  if (reader_->has_spore()) {
    SPORE_ASSIGN_OR_RETURN(vmm::Spore sp, bundle::open_bundle_spore(reader_));
    auto m = resume(sp, req, &o.report);
    if (m.ok()) {
      o.machine = std::move(*m);
      o.resumed = true;
      SPORE_TRY(vmm::confine_this_thread(vmm::ThreadRole::kController));  // as in cold_boot
      return o;
    }
    if (m.error().kind != ErrorKind::kPlatform) return std::move(m).error();
    refused = m.error().message;
    if (auto nl = refused.find("\n  "); nl != std::string::npos) refused = refused.substr(nl + 3);
  }
  // A spore sealed on this host by an earlier run (silently: that run said
  // why it sealed one).
  std::string local = dir_ + "/local-spore";
  if (path_exists(local + "/manifest.json")) {
    auto sp = vmm::open_spore(local);
    auto m = sp.ok() ? resume(*sp, req, &o.report) : Result<std::unique_ptr<vmm::Machine>>(sp.error());
    if (m.ok()) {
      o.machine = std::move(*m);
      o.resumed = true;
      SPORE_TRY(vmm::confine_this_thread(vmm::ThreadRole::kController));
      return o;
    }
    say(name_, "discarding the local spore (" + m.error().message + ")");
    (void)remove_tree(local);
  }
  if (!refused.empty())
    say(name_, "this host cannot resume the sealed spore (" + refused + "); booting and sealing a local one");
  else if (!reader_->has_spore())
    say(name_, "first run on this host: booting and sealing a warm spore (later runs resume it)");
  SPORE_ASSIGN_OR_RETURN(o.machine, cold_boot(cpus, mem, req));
  SPORE_TRY(run_warm(*o.machine));
  vmm::CaptureOptions co;
  co.dir = local;
  auto cap = vmm::capture_spore(*o.machine, co, *cache_);
  if (!cap.ok() && !path_exists(local + "/manifest.json"))  // losing a race to a concurrent first run is fine
    say(name_, "could not seal a local spore: " + cap.error().message);
  o.machine->unpause();
  return o;
}

vmm::WorkingSetRecorder App::working_set_recorder(const Obtained& o) {
  return o.resumed ? vmm::WorkingSetRecorder::prepare(*cache_, o.report) : vmm::WorkingSetRecorder();
}

Status App::seal_into_bundle() {
  SPORE_ASSIGN_OR_RETURN(auto m, cold_boot(config_.cpus, config_.mem_mib, MachineRequest{}));
  SPORE_TRY(run_warm(*m));
  vmm::CaptureOptions co;
  co.dir = dir_ + "/seal-" + std::to_string(::getpid());
  (void)remove_tree(co.dir);
  auto cap = vmm::capture_spore(*m, co, *cache_);
  m->stop();
  if (!cap.ok()) return std::move(cap).error().wrap("sealing");
  auto cleanup = [&] { (void)remove_tree(co.dir); };
  auto w = bundle::Writer::create(bundle_path_);
  if (!w.ok()) {
    cleanup();
    return std::move(w).error();
  }
  for (const auto& s : reader_->sections()) {
    if (s.type == bundle::SectionType::kSporeManifest || s.type == bundle::SectionType::kSporeState ||
        s.type == bundle::SectionType::kSporeMemoryIndex || s.type == bundle::SectionType::kChunk)
      continue;
    if (auto st = (*w)->copy_from(*reader_, s); !st.ok()) {
      cleanup();
      return st;
    }
  }
  auto st = bundle::add_spore(**w, cap->spore);
  auto digest = st.ok() ? (*w)->finish() : Result<Digest>(st.error());
  cleanup();
  if (!digest.ok()) return std::move(digest).error();
  std::fprintf(stderr, "%s: sealed a warm spore into %s: %llu MiB RAM, %llu chunks, %.1f MiB\n", name_.c_str(),
               bundle_path_.c_str(), static_cast<unsigned long long>(cap->spore.manifest.machine.mem_mib),
               static_cast<unsigned long long>(cap->spore.manifest.memory.chunks),
               cap->spore.manifest.memory.stored_bytes / 1048576.0);
  return ok_status();
}

}  // namespace spore::stub
