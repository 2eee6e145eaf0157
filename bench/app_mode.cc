#include "bench/app_mode.h"

#include <elf.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>

#include "agent/client.h"
#include "base/files.h"
#include "base/strings.h"
#include "bundle/app_config.h"
#include "bundle/bundle.h"
#include "vmm/spore/cache.h"

namespace spore::bench {
namespace {

namespace fs = std::filesystem;

constexpr double kMiB = 1024.0 * 1024.0;
const std::vector<std::string> kTrue = {"true"};
const std::vector<std::string> kEcho = {"echo", "x"};

// ------------------------------------------------------ a timed program

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& a : v) s += (s.empty() ? "" : " ") + a;
  return s;
}

// Exit status 0 and, with want, exactly that on stdout.
Status check(const Timed& t, const std::string& what, const std::optional<std::string>& want = std::nullopt) {
  if (t.status != 0)
    return make_error(ErrorKind::kGuest, strfmt("%s exited %d; %s%s", what.c_str(), t.status,
                                                t.err.empty() ? "it printed nothing on stderr" : "its stderr ends:\n",
                                                last_lines(t.err, 15).c_str()));
  if (want && t.out != *want)
    return make_error(ErrorKind::kGuest, what + " printed " + quote(t.out) + ", expected " + quote(*want));
  return ok_status();
}

// -------------------------------------------------------------- an app

struct AppRun {
  std::string name, path, bundle;  // the stub and its sidecar
  std::string dir, cache, runtime;  // work/NAME, its SPORE_CACHE_DIR and XDG_RUNTIME_DIR
  std::vector<std::string> env;
  bundle::AppConfig config;
  std::map<std::string, std::string> extracted;  // section name -> where the stub extracts it in the cache
  std::vector<std::string> files;   // --kernel K --initrd I --rootfs R: the app's own guest files
  std::string vm_spore;             // spore-vm's capture of the same guest
  bool sealed = false, vm_ready = false;
  pid_t monitor = 0;
  std::string socket;

  std::string kind(const char* k) const { return name + ":" + k; }
  std::vector<std::string> stub(std::vector<std::string> args) const {
    args.insert(args.begin(), path);
    return args;
  }
};

// ---------------------------------------------------------------- sizes

// Is the ELF file at path static (no PT_INTERP)? Also checks it is an
// aarch64 executable.
Result<bool> elf_static(const std::string& path) {
  SPORE_ASSIGN_OR_RETURN(UniqueFd fd, open_file(path, O_RDONLY | O_CLOEXEC));
  SPORE_ASSIGN_OR_RETURN(uint64_t size, file_size(fd.get()));
  std::string head(std::min<uint64_t>(size, 1 << 16), '\0');
  SPORE_TRY(pread_exact(fd.get(), head.data(), head.size(), 0));
  Elf64_Ehdr eh;
  if (head.size() < sizeof eh || std::memcmp(head.data(), ELFMAG, SELFMAG) != 0 || head[EI_CLASS] != ELFCLASS64)
    return make_error(ErrorKind::kCorrupt, path + " is not a 64-bit ELF file");
  std::memcpy(&eh, head.data(), sizeof eh);
  if (eh.e_machine != EM_AARCH64) return make_error(ErrorKind::kCorrupt, path + " is not an aarch64 program");
  bool interp = false;
  for (unsigned i = 0; i < eh.e_phnum; i++) {
    Elf64_Phdr ph;
    uint64_t at = eh.e_phoff + static_cast<uint64_t>(i) * eh.e_phentsize;
    if (at + sizeof ph > head.size()) return make_error(ErrorKind::kCorrupt, path + ": program headers out of reach");
    std::memcpy(&ph, head.data() + at, sizeof ph);
    if (ph.p_type == PT_INTERP) interp = true;
  }
  return !interp;
}

Status record_stub(const AppRun& a, Report& report) {
  struct stat st;
  if (::stat(a.path.c_str(), &st) < 0) return errno_error(a.path);
  SPORE_ASSIGN_OR_RETURN(bool is_static, elf_static(a.path));
  report.record(a.kind("stub"), 1,
                {{"bytes", static_cast<double>(st.st_size)},
                 {"mib", static_cast<double>(st.st_size) / kMiB},
                 {"static", is_static ? 1.0 : 0.0}});
  return ok_status();
}

// The sidecar's size and what it is made of (stored bytes per kind of section).
Status record_bundle(AppRun& a, const char* kind, Report& report) {
  SPORE_ASSIGN_OR_RETURN(auto r, bundle::Reader::open(a.bundle));
  struct stat st;
  if (::stat(a.bundle.c_str(), &st) < 0) return errno_error(a.bundle);
  double kernel = 0, initramfs = 0, rootfs = 0, rootfs_raw = 0, spore = 0, chunks = 0, chunks_raw = 0, other = 0;
  for (const auto& s : r->sections()) {
    const double stored = static_cast<double>(s.stored_size);
    switch (s.type) {
      case bundle::SectionType::kKernel: kernel += stored; break;
      case bundle::SectionType::kInitramfs: initramfs += stored; break;
      case bundle::SectionType::kRootfs:
        rootfs += stored;
        rootfs_raw += static_cast<double>(s.size);
        break;
      case bundle::SectionType::kSporeManifest:
      case bundle::SectionType::kSporeState:
      case bundle::SectionType::kSporeMemoryIndex: spore += stored; break;
      case bundle::SectionType::kChunk:
        spore += stored;
        chunks++;
        chunks_raw += static_cast<double>(s.size);
        break;
      default: other += stored;
    }
  }
  report.record(a.kind(kind), 1,
                {{"bytes", static_cast<double>(st.st_size)},
                 {"file_mib", static_cast<double>(st.st_size) / kMiB},
                 {"kernel_mib", kernel / kMiB},
                 {"initramfs_mib", initramfs / kMiB},
                 {"rootfs_mib", rootfs / kMiB},
                 {"rootfs_raw_mib", rootfs_raw / kMiB},
                 {"spore_mib", spore / kMiB},
                 {"chunks", chunks},
                 {"chunks_raw_mib", chunks_raw / kMiB},
                 {"other_mib", other / kMiB}});
  if (std::string(kind) == "bundle_unsealed") {
    SPORE_ASSIGN_OR_RETURN(auto cache, vmm::Cache::open_at(a.cache));
    for (auto t : {bundle::SectionType::kKernel, bundle::SectionType::kInitramfs, bundle::SectionType::kRootfs})
      if (const bundle::Section* s = r->find(t))
        a.extracted[bundle::section_name(t)] = cache.section_path(s->sha256, bundle::section_name(t));
    const bundle::Section* cfg = r->find(bundle::SectionType::kConfig);
    if (!cfg) return make_error(ErrorKind::kCorrupt, a.bundle + " has no app config");
    SPORE_ASSIGN_OR_RETURN(std::string bytes, r->read(*cfg, 1 << 20));
    SPORE_ASSIGN_OR_RETURN(a.config, bundle::decode_app_config(bytes));
    if (r->has_spore()) report.note(a.name + ": the bundle given was sealed already; --spore-seal replaces its spore");
  }
  return ok_status();
}

// ------------------------------------------------------- seal, first run

// `./app --spore-seal`: cold boot (extracting kernel, initramfs and rootfs
// into the cache first), the warm command if any, capture, and the bundle
// rewritten with the spore in it. What spore-pack runs on an arm64 host.
Status seal_once(AppRun& a, const AppOptions& ao, Report& report) {
  SPORE_ASSIGN_OR_RETURN(Timed t, run_timed(a.stub({"--spore-seal"}), a.env, ao.seal_timeout_s));
  SPORE_TRY(check(t, a.name + " --spore-seal"));
  // "NAME: sealed a warm spore into PATH: 256 MiB RAM, 60 chunks, 2.7 MiB"
  double chunks = -1, stored = -1;
  if (size_t at = t.err.find("MiB RAM, "); at != std::string::npos) {
    chunks = std::strtod(t.err.c_str() + at + 9, nullptr);
    if (size_t c = t.err.find(" chunks, ", at); c != std::string::npos) stored = std::strtod(t.err.c_str() + c + 9, nullptr);
  }
  report.note(a.name + " --spore-seal: " + last_lines(t.err, 1));
  report.record(a.kind("seal"), 1,
                {{"wall_ms", t.exit_ms()}, {"cpu_ms", t.cpu_ms()}, {"chunks", chunks}, {"stored_mib", stored}});
  a.sealed = true;
  return ok_status();
}

size_t count_files(const std::string& dir, const std::string& suffix) {
  size_t n = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string f = it->path().filename().string();
    if (f.size() >= suffix.size() && f.compare(f.size() - suffix.size(), suffix.size(), suffix) == 0) n++;
  }
  return n;
}

// The first run after sealing: extracts the rootfs for the sealed bundle's
// digest, materialises the RAM file from the bundle's chunks, and records
// the working set later runs prefetch.
Status first_once(AppRun& a, const Options& o, const AppOptions& ao, Report& report) {
  const size_t ws_before = count_files(a.cache + "/ram", ".ws");
  SPORE_ASSIGN_OR_RETURN(Timed t, run_timed(a.stub(kTrue), a.env, std::max(o.timeout_s, ao.seal_timeout_s)));
  SPORE_TRY(check(t, a.name + " true", std::string()));
  const size_t ws_after = count_files(a.cache + "/ram", ".ws");
  report.record(a.kind("first"), 1, {{"exit_ms", t.exit_ms()}, {"working_sets_recorded", double(ws_after - ws_before)}});
  if (!t.err.empty()) report.note(a.name + " first run said: " + last_lines(t.err, 3));
  // What the cache holds now: the sections extracted (by content, so the
  // seal's cold boot and the sealed bundle share them) and the RAM files.
  for (const char* dir : {"sections", "ram"}) {
    std::string files;
    double total = 0;
    std::error_code ec;
    for (fs::directory_iterator f(a.cache + "/" + dir, ec), fend; !ec && f != fend; f.increment(ec)) {
      if (!f->is_regular_file()) continue;
      const std::string n = f->path().filename().string();
      const double mib = static_cast<double>(f->file_size()) / kMiB;
      total += mib;
      files += strfmt(" %.12s…%s (%.1f MiB)", n.c_str(), n.substr(std::min<size_t>(n.size(), 64)).c_str(), mib);
    }
    report.note(strfmt("%s cache after the first run: %s/:%s (%.1f MiB apparent)", a.name.c_str(), dir,
                       files.empty() ? " nothing" : files.c_str(), total));
  }
  return ok_status();
}

// spore-vm's spore of the same guest: the files the seal's cold boot
// extracted (kernel, initramfs, rootfs), the app's vCPUs and RAM, captured
// idle at the agent's HELLO as --spore-seal does without a warm command;
// then its first resume, which materialises its RAM file.
Status vm_setup(AppRun& a, const Options& o, Report& report) {
  for (const char* f : {"kernel", "initramfs", "rootfs"})
    if (!a.extracted.count(f) || !path_exists(a.extracted[f]))
      return make_error(ErrorKind::kNotFound, std::string("the app's ") + f + " was not extracted by the seal");
  a.files = {"--cpus",   std::to_string(a.config.cpus), "--mem",    std::to_string(a.config.mem_mib),
             "--kernel", a.extracted["kernel"],          "--initrd", a.extracted["initramfs"],
             "--rootfs", a.extracted["rootfs"]};
  if (!a.config.warm.empty())
    report.note(a.name + ": the app has a warm command; spore-vm's spore is captured without it");
  a.vm_spore = a.dir + "/vm-spore";
  std::vector<std::string> argv{o.spore_vm, "run", "--timings", "--capture", a.vm_spore};
  argv.insert(argv.end(), a.files.begin(), a.files.end());
  SPORE_ASSIGN_OR_RETURN(Timed cap, run_timed(argv, a.env, o.timeout_s));
  SPORE_TRY(check(cap, "spore-vm run --capture"));
  auto ct = parse_timings(cap.err);
  SPORE_ASSIGN_OR_RETURN(Timed first, run_timed({o.spore_vm, "resume", a.vm_spore, "--timings", "--", "true"}, a.env,
                                                o.timeout_s));
  SPORE_TRY(check(first, "spore-vm resume", std::string()));
  report.record(a.kind("vm_capture"), 1,
                {{"wall_ms", cap.exit_ms()}, {"capture_total_ms", ct["capture_total_ms"]}, {"first_resume_ms", first.exit_ms()}});
  a.vm_ready = true;
  return ok_status();
}

// ------------------------------------------------------------ cold boots

// `spore-vm run --timings -- CMD` on the app's own guest files: the cold
// boot to the same point (exit, or first output of `echo x`).
Status cold_once(const AppRun& a, const Options& o, bool echo, uint32_t round, Report& report) {
  std::vector<std::string> argv{o.spore_vm, "run", "--timings"};
  argv.insert(argv.end(), a.files.begin(), a.files.end());
  argv.push_back("--");
  const auto& cmd = echo ? kEcho : kTrue;
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  SPORE_ASSIGN_OR_RETURN(Timed t, run_timed(argv, a.env, o.timeout_s));
  SPORE_TRY(check(t, "spore-vm run -- " + joined(cmd), echo ? "x\n" : ""));
  auto tm = parse_timings(t.err);
  std::vector<std::pair<std::string, double>> fields = {{"exit_ms", t.exit_ms()},
                                                        {"self_ready_ms", tm["agent_ready_ms"]},
                                                        {"self_exit_ms", tm["exit_ms"]}};
  if (echo) {
    fields.push_back({"first_output_ms", t.first_ms()});
    fields.push_back({"self_first_output_ms", tm["first_output_ms"]});
  }
  report.record(a.kind(echo ? "cold_echo" : "cold_true"), round, fields, t.out);
  return ok_status();
}

// The stub's own cold boot of the same guest: a RAM size other than the
// sealed one makes it boot from the bundle's files instead of resuming.
Status cold_app_once(const AppRun& a, const Options& o, const AppOptions& ao, uint32_t round, Report& report) {
  SPORE_ASSIGN_OR_RETURN(Timed t, run_timed(a.stub({"--mem", std::to_string(ao.cold_mem_mib), "true"}), a.env,
                                            std::max(o.timeout_s, ao.seal_timeout_s)));
  SPORE_TRY(check(t, a.name + " --mem " + std::to_string(ao.cold_mem_mib) + " true", std::string()));
  if (t.err.find("cold booting") == std::string::npos)
    return make_error(ErrorKind::kInternal, "the app did not say it cold-booted: " + quote(t.err));
  report.record(a.kind("cold_app"), round, {{"exit_ms", t.exit_ms()}});
  return ok_status();
}

// ------------------------------------------------------------- one-shot

// `./app CMD`: resumes the sealed spore, runs CMD, stops.
Status app_once(const AppRun& a, const Options& o, bool echo, uint32_t round, Report& report) {
  const auto& cmd = echo ? kEcho : kTrue;
  SPORE_ASSIGN_OR_RETURN(Timed t, run_timed(a.stub(cmd), a.env, o.timeout_s));
  SPORE_TRY(check(t, a.name + " " + joined(cmd), echo ? "x\n" : ""));
  if (!t.err.empty())  // a resumed run says nothing; a cold boot or a re-seal would
    return make_error(ErrorKind::kInternal, "the app did not just resume; it said " + quote(t.err));
  std::vector<std::pair<std::string, double>> fields = {{"exit_ms", t.exit_ms()},
                                                        {"minflt", static_cast<double>(t.usage.ru_minflt)},
                                                        {"cpu_ms", t.cpu_ms()}};
  if (echo) fields.push_back({"first_output_ms", t.first_ms()});
  report.record(a.kind(echo ? "app_echo" : "app_true"), round, fields, t.out);
  return ok_status();
}

// `spore-vm resume DIR --timings -- CMD` of spore-vm's spore of the same
// guest: what the VMM alone costs, without the stub.
Status vm_once(const AppRun& a, const Options& o, bool echo, uint32_t round, Report& report) {
  const auto& cmd = echo ? kEcho : kTrue;
  std::vector<std::string> argv{o.spore_vm, "resume", a.vm_spore, "--timings", "--"};
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  SPORE_ASSIGN_OR_RETURN(Timed t, run_timed(argv, a.env, o.timeout_s));
  SPORE_TRY(check(t, "spore-vm resume -- " + joined(cmd), echo ? "x\n" : ""));
  auto tm = parse_timings(t.err);
  if (t.err.find("(materialised RAM)") != std::string::npos)
    return make_error(ErrorKind::kInternal, "a resume materialised the RAM file again (cache lost?)");
  std::vector<std::pair<std::string, double>> fields = {
      {"exit_ms", t.exit_ms()},
      {"self_exit_ms", tm["exit_ms"]},
      {"prepare_ms", tm["prepare_ms"]},
      {"restore_ms", tm["restore_ms"]},
      {"started_ms", tm["started_ms"]},
      {"minflt", static_cast<double>(t.usage.ru_minflt)},
      {"cpu_ms", t.cpu_ms()}};
  if (echo) {
    fields.push_back({"first_output_ms", t.first_ms()});
    fields.push_back({"self_first_output_ms", tm["first_output_ms"]});
  }
  report.record(a.kind(echo ? "vm_echo" : "vm_true"), round, fields, t.out);
  return ok_status();
}

// One resume held with `sh -c 'echo ready; exec sleep 3600'`, by the stub
// or by spore-vm: once the line is out (and a second more), the VM's KVM
// exits since the resume (debugfs); then SIGTERM, which goes to the command.
const std::vector<std::string> kHold = {"sh", "-c", "echo ready; exec sleep 3600"};
std::map<std::string, double> kvm_stats(pid_t pid);

Status hold_once(const AppRun& a, const Options& o, bool vm, Report& report) {
  std::vector<std::string> argv;
  if (vm) argv = {o.spore_vm, "resume", a.vm_spore, "--"};
  else argv = {a.path};
  argv.insert(argv.end(), kHold.begin(), kHold.end());
  SPORE_ASSIGN_OR_RETURN(UniqueFd devnull, open_file("/dev/null", O_RDONLY));
  SPORE_ASSIGN_OR_RETURN(UniqueFd err, memfd("hold-stderr"));
  SPORE_ASSIGN_OR_RETURN(Pipe out, Pipe::create());
  const int64_t t0 = mono_ns();
  const int64_t deadline = t0 + o.timeout_s * 1'000'000'000ll;
  SPORE_ASSIGN_OR_RETURN(Child child, Child::spawn(argv, devnull.get(), out.w.get(), err.get(), a.env));
  out.w.reset();
  for (;;) {
    pollfd fds[2] = {{out.r.get(), POLLIN, 0}, {child.pidfd(), POLLIN, 0}};
    int r = ::poll(fds, 2, remaining_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return make_error(ErrorKind::kTimeout, "no output in time");
    if (fds[0].revents) break;
    return make_error(ErrorKind::kGuest, "exited before its output: " + last_lines(read_back(err.get()), 5));
  }
  const int64_t t_first = mono_ns();
  ::usleep(1'000'000);
  auto kvm = kvm_stats(child.pid());
  child.signal(SIGTERM);
  (void)child.wait(remaining_ms(deadline));
  if (!kvm.count("exits")) return make_error(ErrorKind::kUnavailable, "no KVM counters (debugfs not mounted?)");
  report.record(a.kind(vm ? "hold_vm" : "hold_app"), 1,
                {{"first_output_ms", ms_between(t0, t_first)},
                 {"exits", kvm["exits"]},
                 {"mmio_exits", kvm["mmio_exit_user"] + kvm["mmio_exit_kernel"]},
                 {"wfi_exits", kvm["wfi_exit_stat"]}});
  return ok_status();
}

// --------------------------------------------------------------- daemon

Result<nlohmann::json> status_json(const AppRun& a, const Options& o) {
  SPORE_ASSIGN_OR_RETURN(Timed t, run_timed(a.stub({"status", "--json"}), a.env, o.timeout_s));
  SPORE_TRY(check(t, a.name + " status --json"));
  auto j = nlohmann::json::parse(t.out, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return make_error(ErrorKind::kProtocol, "status --json printed " + quote(t.out));
  return j;
}

Status start_once(AppRun& a, const Options& o, Report& report) {
  SPORE_ASSIGN_OR_RETURN(Timed t, run_timed(a.stub({"start"}), a.env, o.timeout_s));
  SPORE_TRY(check(t, a.name + " start"));
  SPORE_ASSIGN_OR_RETURN(auto j, status_json(a, o));
  if (j.value("state", "") != "running") return make_error(ErrorKind::kGuest, "after start, status says " + j.dump());
  a.monitor = j.value("pid", 0);
  a.socket = j.value("socket", "");
  report.record(a.kind("start"), 1,
                {{"exit_ms", t.exit_ms()}, {"resumed", j.value("resumed", false) ? 1.0 : 0.0},
                 {"rss_mib", j.value("rss_kib", 0.0) / 1024}});
  return ok_status();
}

// `./app exec CMD`: a new stub process asks the monitor for a session.
Status exec_once(const AppRun& a, const Options& o, bool echo, uint32_t round, Report& report) {
  const auto& cmd = echo ? kEcho : kTrue;
  std::vector<std::string> args{"exec"};
  args.insert(args.end(), cmd.begin(), cmd.end());
  SPORE_ASSIGN_OR_RETURN(Timed t, run_timed(a.stub(args), a.env, o.timeout_s));
  SPORE_TRY(check(t, a.name + " exec " + joined(cmd), echo ? "x\n" : ""));
  std::vector<std::pair<std::string, double>> fields = {{"exit_ms", t.exit_ms()},
                                                        {"minflt", static_cast<double>(t.usage.ru_minflt)},
                                                        {"cpu_ms", t.cpu_ms()}};
  if (echo) fields.push_back({"first_output_ms", t.first_ms()});
  report.record(a.kind(echo ? "exec_echo" : "exec_true"), round, fields, t.out);
  return ok_status();
}

// The same session without a stub process: this process connects to the
// monitor's socket, sends EXEC, and speaks the agent protocol with the
// request the stub would build (the image's command, env, workdir, user).
Status direct_once(const AppRun& a, const Options& o, bool echo, uint32_t round, Report& report) {
  const auto& cmd = echo ? kEcho : kTrue;
  proto::ExecRequest req;
  req.argv = bundle::resolve_command(a.config, cmd);
  req.env = a.config.env;
  req.cwd = a.config.workdir;
  req.user = a.config.user;
  SPORE_ASSIGN_OR_RETURN(UniqueFd out, memfd("direct-stdout"));
  SPORE_ASSIGN_OR_RETURN(UniqueFd err, memfd("direct-stderr"));
  // Readable at the deadline: the session's cancel fd.
  UniqueFd timer(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC));
  if (!timer) return errno_error("timerfd_create");
  itimerspec its{};
  its.it_value.tv_sec = o.timeout_s;
  if (::timerfd_settime(timer.get(), 0, &its, nullptr) < 0) return errno_error("timerfd_settime");

  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (a.socket.size() >= sizeof addr.sun_path) return make_error(ErrorKind::kUsage, "socket path too long: " + a.socket);
  std::memcpy(addr.sun_path, a.socket.c_str(), a.socket.size());
  const int64_t t0 = mono_ns();
  const int64_t deadline = t0 + o.timeout_s * 1'000'000'000ll;
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("socket(AF_UNIX)");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) return errno_error("connect " + a.socket);
  SPORE_TRY(write_all(fd.get(), "EXEC\n", 5));
  std::string line;
  for (char c = 0; c != '\n';) {
    pollfd p{fd.get(), POLLIN, 0};
    int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return make_error(ErrorKind::kTimeout, "the monitor did not answer EXEC");
    if (::read(fd.get(), &c, 1) != 1) return make_error(ErrorKind::kProtocol, "the monitor closed the connection");
    if (c != '\n') line.push_back(c);
  }
  if (line != "OK") return make_error(ErrorKind::kGuest, "the monitor answered " + quote(line));
  const int64_t t_ok = mono_ns();
  agent::ExecIo io;
  io.stdout_fd = out.get();
  io.stderr_fd = err.get();
  io.cancel_fd = timer.get();
  auto outcome = agent::run_exec(fd.get(), req, io);
  const int64_t t_end = mono_ns();
  if (!outcome.ok()) return std::move(outcome).error().wrap("direct session");
  if (outcome->refused) return make_error(ErrorKind::kGuest, "agent refused: " + outcome->refused->message);
  const std::string printed = read_back(out.get(), 256);
  if (outcome->exit->status != 0 || printed != (echo ? "x\n" : ""))
    return make_error(ErrorKind::kGuest, strfmt("direct %s exited %u printing %s", joined(cmd).c_str(),
                                                outcome->exit->status, quote(printed).c_str()));
  std::vector<std::pair<std::string, double>> fields = {{"exit_ms", ms_between(t0, t_end)},
                                                        {"ok_ms", ms_between(t0, t_ok)}};
  if (echo) fields.push_back({"first_output_ms", ms_between(t0, outcome->first_output_ns)});
  report.record(a.kind(echo ? "direct_echo" : "direct_true"), round, fields, printed);
  return ok_status();
}

// `./app status --json` and `./app --version`: a stub process that opens the
// bundle and asks the monitor one line / that only starts and exits.
Status stub_only_once(const AppRun& a, const Options& o, bool version, uint32_t round, Report& report) {
  SPORE_ASSIGN_OR_RETURN(Timed t, run_timed(a.stub(version ? std::vector<std::string>{"--version"}
                                                           : std::vector<std::string>{"status", "--json"}),
                                            a.env, o.timeout_s));
  SPORE_TRY(check(t, a.name + (version ? " --version" : " status --json")));
  report.record(a.kind(version ? "version" : "status"), round,
                {{"exit_ms", t.exit_ms()}, {"minflt", static_cast<double>(t.usage.ru_minflt)}, {"cpu_ms", t.cpu_ms()}});
  return ok_status();
}

// What the stub does with the bundle before any exec or status, timed in
// this (warm) process with the same code: open and verify the bundle
// (footer, table digest), read and verify the app config, open the cache.
// Against the stub's own process, it separates the bundle logic from the
// cost of starting a 2 MiB static process at all.
Status open_inproc_once(const AppRun& a, uint32_t round, Report& report) {
  const int64_t t0 = mono_ns();
  SPORE_ASSIGN_OR_RETURN(auto r, bundle::Reader::open(a.bundle));
  const bundle::Section* cfg = r->find(bundle::SectionType::kConfig);
  if (!cfg) return make_error(ErrorKind::kCorrupt, a.bundle + " has no app config");
  SPORE_ASSIGN_OR_RETURN(std::string bytes, r->read(*cfg, 1 << 20));
  SPORE_ASSIGN_OR_RETURN(auto config, bundle::decode_app_config(bytes));
  SPORE_ASSIGN_OR_RETURN(auto cache, vmm::Cache::open_at(a.cache));
  SPORE_TRY(make_dirs(cache.dir() + "/bundles/" + digest_hex(r->digest()), 0700));
  const int64_t t1 = mono_ns();
  report.record(a.kind("open"), round, {{"open_ms", ms_between(t0, t1)}, {"cpus", static_cast<double>(config.cpus)}});
  return ok_status();
}

// KVM's counters for the VMs of process pid (debugfs, when mounted).
std::map<std::string, double> kvm_stats(pid_t pid) {
  std::map<std::string, double> t;
  std::error_code ec;
  const std::string prefix = std::to_string(pid) + "-";
  for (fs::directory_iterator it("/sys/kernel/debug/kvm", ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().filename().string().rfind(prefix, 0) != 0) continue;
    for (const char* name : {"exits", "mmio_exit_user", "mmio_exit_kernel", "wfi_exit_stat"}) {
      auto text = read_file(it->path().string() + "/" + name, 64);
      if (text.ok()) t[name] += std::strtod(text->c_str(), nullptr);
    }
  }
  return t;
}

// CPU time of process pid so far (all its threads, the vCPU's guest time included), ms.
double process_cpu_ms(pid_t pid) {
  auto text = read_file(strfmt("/proc/%d/stat", pid), 4096);
  if (!text.ok()) return NAN;
  size_t close = text->rfind(')');
  if (close == std::string::npos) return NAN;
  auto f = split(text->substr(close + 2), ' ');  // f[0] is field 3 (state)
  if (f.size() < 13) return NAN;
  return (std::strtod(f[11].c_str(), nullptr) + std::strtod(f[12].c_str(), nullptr)) * 1e3 / ::sysconf(_SC_CLK_TCK);
}

struct Sample {
  int64_t t = 0;
  std::map<std::string, double> kvm;
  double cpu_ms = 0;
};
Sample sample(pid_t pid) { return {mono_ns(), kvm_stats(pid), process_cpu_ms(pid)}; }

Status stop_once(AppRun& a, const Options& o, Report& report) {
  SPORE_ASSIGN_OR_RETURN(Timed t, run_timed(a.stub({"stop"}), a.env, o.timeout_s));
  SPORE_TRY(check(t, a.name + " stop"));
  const bool gone = a.monitor <= 0 || ::kill(a.monitor, 0) != 0;
  report.record(a.kind("stop"), 1, {{"exit_ms", t.exit_ms()}, {"monitor_gone", gone ? 1.0 : 0.0}});
  if (t.err.find("forcibly") != std::string::npos) report.note(a.name + " stop: " + last_lines(t.err, 1));
  a.monitor = 0;
  return ok_status();
}

// Daemon mode: start; rounds of exec (stub), direct sessions, status and
// --version in a rotating order; the monitor's KVM exits and CPU time per
// session against its idle rate; stop.
void daemon_phase(AppRun& a, const Options& o, Report& report) {
  if (!step(a.kind("start"), 1, report, [&] { return start_once(a, o, report); })) {
    (void)run_timed(a.stub({"stop"}), a.env, o.timeout_s);
    return;
  }
  // The idle guest's own rate (timer ticks and the like), to subtract;
  // measured once it has settled after the start.
  ::usleep(1'000'000);
  const Sample idle0 = sample(a.monitor);
  ::usleep(3'000'000);
  const Sample idle1 = sample(a.monitor);

  const Sample s0 = sample(a.monitor);
  uint32_t sessions = 0;
  const uint32_t first_round = o.warmup ? 0 : 1;
  for (uint32_t round = first_round; round <= o.runs; round++) {
    for (uint32_t turn = 0; turn < 6; turn++) {
      const uint32_t which = (round + turn) % 6;
      const bool echo = which % 2 == 1;
      switch (which) {
        case 0:
        case 1:
          if (step(a.kind(echo ? "exec_echo" : "exec_true"), round, report,
                   [&] { return exec_once(a, o, echo, round, report); }))
            sessions++;
          break;
        case 2:
        case 3:
          if (step(a.kind(echo ? "direct_echo" : "direct_true"), round, report,
                   [&] { return direct_once(a, o, echo, round, report); }))
            sessions++;
          break;
        default:
          step(a.kind(which == 4 ? "status" : "version"), round, report,
               [&] { return stub_only_once(a, o, which == 5, round, report); });
      }
    }
    step(a.kind("open"), round, report, [&] { return open_inproc_once(a, round, report); });
  }
  const Sample s1 = sample(a.monitor);
  auto j = status_json(a, o);
  if (sessions > 0 && s0.kvm.count("exits") && s1.kvm.count("exits") && idle0.kvm.count("exits")) {
    const double idle_s = ms_between(idle0.t, idle1.t) / 1000, busy_s = ms_between(s0.t, s1.t) / 1000;
    auto per_session = [&](const std::string& key) {
      const double idle_rate = (idle1.kvm.at(key) - idle0.kvm.at(key)) / idle_s;
      return (s1.kvm.at(key) - s0.kvm.at(key) - idle_rate * busy_s) / sessions;
    };
    const double idle_cpu_rate = (idle1.cpu_ms - idle0.cpu_ms) / idle_s;
    report.record(a.kind("daemon"), 1,
                  {{"sessions", static_cast<double>(sessions)},
                   {"idle_exits_per_s", (idle1.kvm.at("exits") - idle0.kvm.at("exits")) / idle_s},
                   {"idle_cpu_ms_per_s", idle_cpu_rate},
                   {"exits_per_session", per_session("exits")},
                   {"mmio_exits_per_session", (s1.kvm.at("mmio_exit_user") + s1.kvm.at("mmio_exit_kernel") -
                                               s0.kvm.at("mmio_exit_user") - s0.kvm.at("mmio_exit_kernel")) /
                                                  sessions},
                   {"cpu_ms_per_session", (s1.cpu_ms - s0.cpu_ms - idle_cpu_rate * busy_s) / sessions},
                   {"rss_mib", j.ok() ? j->value("rss_kib", 0.0) / 1024 : NAN},
                   {"execs_served", j.ok() ? j->value("execs_served", 0.0) : NAN}});
  } else {
    report.note(a.name + ": no KVM counters for the monitor (debugfs not mounted?)");
  }
  if (!step(a.kind("stop"), 1, report, [&] { return stop_once(a, o, report); }) && a.monitor > 0) ::kill(a.monitor, SIGKILL);
}

// -------------------------------------------------------------- the run

}  // namespace

void add_app_options(CLI::App* app, AppOptions& a) {
  app->add_option("--app", a.apps, "NAME=PATH of a packed app (its sidecar: PATH.spore, sealed in place); repeatable")
      ->required();
  app->add_option("--cold-runs", a.cold_runs, "rounds that also cold-boot (the first ones)")
      ->check(CLI::Range(0u, 10000u))
      ->capture_default_str();
  app->add_option("--cold-mem", a.cold_mem_mib, "RAM (MiB) for the app's own cold boot: any size but the sealed one")
      ->check(CLI::Range(64ull, 1ull << 20))
      ->capture_default_str();
  app->add_option("--seal-timeout", a.seal_timeout_s, "seconds allowed for a seal (and a first run)")
      ->check(CLI::Range(1, 36000))
      ->capture_default_str();
  app->add_flag("--no-vm", a.no_vm, "skip the spore-vm resume comparison");
  app->add_flag("--no-daemon", a.no_daemon, "skip daemon mode");
  app->add_option("--work", a.work, "directory for caches, runtime dirs and spores (default: new in $TMPDIR)");
  app->add_flag("--keep-work", a.keep_work, "leave the work directory behind");
}

void app_mode(const Options& o, const AppOptions& ao, Report& report) {
  auto work = make_work_dir(ao.work, "spore-bench-app");
  if (!work.ok()) {
    progress("%s", work.error().message.c_str());
    return report.failure("setup", 0, work.error().message);
  }
  std::vector<AppRun> apps;
  for (const auto& spec : ao.apps) {
    size_t eq = spec.find('=');
    AppRun a;
    a.name = eq == std::string::npos ? spec.substr(spec.rfind('/') + 1) : spec.substr(0, eq);
    a.path = absolute_path(eq == std::string::npos ? spec : spec.substr(eq + 1));
    a.bundle = a.path + ".spore";
    a.dir = *work + "/" + a.name;
    a.cache = a.dir + "/cache";
    a.runtime = a.dir + "/run";
    if (auto s = make_dirs(a.runtime, 0700); !s.ok()) {
      report.failure(a.kind("setup"), 0, s.error().message);
      continue;
    }
    a.env = {"SPORE_CACHE_DIR=" + a.cache, "XDG_RUNTIME_DIR=" + a.runtime};
    apps.push_back(std::move(a));
  }
  report.note(strfmt("app mode: work %s, %zu app(s), %u cold runs, the app's own cold boot with --mem %llu",
                     work->c_str(), apps.size(), ao.cold_runs, static_cast<unsigned long long>(ao.cold_mem_mib)));

  // Sizes, the seal, the first run; spore-vm's spore of the same guest.
  for (auto& a : apps) {
    step(a.kind("stub"), 1, report, [&] { return record_stub(a, report); });
    if (!step(a.kind("bundle_unsealed"), 1, report, [&] { return record_bundle(a, "bundle_unsealed", report); }))
      continue;
    if (!step(a.kind("seal"), 1, report, [&] { return seal_once(a, ao, report); })) continue;
    step(a.kind("bundle_sealed"), 1, report, [&] { return record_bundle(a, "bundle_sealed", report); });
    step(a.kind("first"), 1, report, [&] { return first_once(a, o, ao, report); });
    if (!ao.no_vm) step(a.kind("vm_capture"), 1, report, [&] { return vm_setup(a, o, report); });
  }

  // One-shot rounds: cold boots (the first rounds), then the app and
  // spore-vm, each app in turn, in orders that rotate.
  const uint32_t first_round = o.warmup ? 0 : 1;
  for (uint32_t round = first_round; round <= o.runs; round++) {
    for (size_t k = 0; k < apps.size(); k++) {
      AppRun& a = apps[(round + k) % apps.size()];
      if (!a.sealed) continue;
      if (round <= ao.cold_runs) {
        for (uint32_t turn = 0; turn < 3; turn++) {
          switch ((round + turn) % 3) {
            case 0:
              if (!a.files.empty())
                step(a.kind("cold_true"), round, report, [&] { return cold_once(a, o, false, round, report); });
              break;
            case 1:
              if (!a.files.empty())
                step(a.kind("cold_echo"), round, report, [&] { return cold_once(a, o, true, round, report); });
              break;
            default:
              step(a.kind("cold_app"), round, report, [&] { return cold_app_once(a, o, ao, round, report); });
          }
        }
      }
      for (uint32_t turn = 0; turn < 4; turn++) {
        const uint32_t which = (round + turn) % 4;
        const bool echo = which % 2 == 1;
        if (which < 2)
          step(a.kind(echo ? "app_echo" : "app_true"), round, report, [&] { return app_once(a, o, echo, round, report); });
        else if (a.vm_ready)
          step(a.kind(echo ? "vm_echo" : "vm_true"), round, report, [&] { return vm_once(a, o, echo, round, report); });
      }
    }
  }

  // KVM exits of one resume, by the stub and by spore-vm.
  for (auto& a : apps) {
    if (!a.sealed) continue;
    step(a.kind("hold_app"), 1, report, [&] { return hold_once(a, o, false, report); });
    if (a.vm_ready) step(a.kind("hold_vm"), 1, report, [&] { return hold_once(a, o, true, report); });
  }

  // Daemon mode, one app at a time.
  if (!ao.no_daemon)
    for (auto& a : apps)
      if (a.sealed) daemon_phase(a, o, report);

  std::error_code ec;
  double mib = 0;
  for (fs::recursive_directory_iterator it(*work, ec), end; !ec && it != end; it.increment(ec)) {
    struct stat st;
    if (::lstat(it->path().c_str(), &st) == 0) mib += static_cast<double>(st.st_blocks) * 512 / kMiB;
  }
  report.note(strfmt("work directory: %s (%.0f MiB)%s", work->c_str(), mib, ao.keep_work ? ", kept" : ", removed"));
  if (!ao.keep_work) fs::remove_all(*work, ec);
}

// ------------------------------------------------------------------ summary

void print_app_table(FILE* out, const Report& report, const AppOptions& ao) {
  std::vector<std::string> names;
  for (const auto& spec : ao.apps) {
    size_t eq = spec.find('=');
    names.push_back(eq == std::string::npos ? spec.substr(spec.rfind('/') + 1) : spec.substr(0, eq));
  }
  for (const auto& n : names) {
    auto id = [&n](const char* kind, const char* field) { return n + ":" + kind + "." + field; };
    const std::string cold_mem = std::to_string(ao.cold_mem_mib);
    std::vector<TableRow> rows = {
        {"", n + ": sizes (MiB)"},
        {id("stub", "mib"), "stub (the app itself)", "%.2f"},
        {id("bundle_unsealed", "file_mib"), "sidecar as packed (unsealed)", "%.2f"},
        {id("bundle_sealed", "file_mib"), "sidecar sealed", "%.2f"},
        {id("bundle_sealed", "kernel_mib"), "  kernel, stored", "%.2f"},
        {id("bundle_sealed", "initramfs_mib"), "  initramfs, stored", "%.2f"},
        {id("bundle_sealed", "rootfs_mib"), "  rootfs, stored", "%.2f"},
        {id("bundle_sealed", "rootfs_raw_mib"), "  rootfs, EROFS image", "%.2f"},
        {id("bundle_sealed", "spore_mib"), "  spore: manifest, state, index, chunks", "%.2f"},
        {id("bundle_sealed", "chunks"), "  spore: RAM chunks (count)", "%.0f"},
        {"", n + ": sealing and first runs (once each)"},
        {id("seal", "wall_ms"), "--spore-seal: fork -> exit"},
        {id("first", "exit_ms"), "first `true` after sealing: fork -> exit"},
        {id("vm_capture", "wall_ms"), "spore-vm run --capture (same guest)"},
        {id("vm_capture", "first_resume_ms"), "its first resume: fork -> exit"},
        {"", n + ": cold boot of the same kernel, initramfs, rootfs, vCPUs and RAM"},
        {id("cold_true", "exit_ms"), "spore-vm run -- true: fork -> exit"},
        {id("cold_echo", "first_output_ms"), "spore-vm run -- echo x: fork -> first output"},
        {id("cold_echo", "self_ready_ms"), "  --timings: start -> agent ready"},
        {id("cold_app", "exit_ms"), "./app --mem " + cold_mem + " true (stub cold boot): fork -> exit"},
        {"", n + ": one-shot (resume the sealed spore, run, stop)"},
        {id("app_true", "exit_ms"), "./app true: fork -> exit"},
        {id("app_echo", "first_output_ms"), "./app echo x: fork -> first output"},
        {id("app_echo", "exit_ms"), "./app echo x: fork -> exit"},
        {id("app_true", "minflt"), "./app true: page faults (count)", "%.0f"},
        {id("app_true", "cpu_ms"), "./app true: CPU time (guest included)"},
        {id("vm_true", "exit_ms"), "spore-vm resume -- true: fork -> exit"},
        {id("vm_echo", "first_output_ms"), "spore-vm resume -- echo x: fork -> first output"},
        {id("vm_true", "prepare_ms"), "  --timings: prepare"},
        {id("vm_true", "restore_ms"), "  --timings: restore"},
        {id("vm_true", "started_ms"), "  --timings: start -> vCPU running"},
        {id("vm_true", "self_exit_ms"), "  --timings: start -> command exited"},
        {id("vm_true", "minflt"), "spore-vm resume -- true: page faults (count)", "%.0f"},
        {id("vm_true", "cpu_ms"), "spore-vm resume -- true: CPU time"},
        {id("hold_app", "exits"), "./app: KVM exits, resume -> command sleeping", "%.0f"},
        {id("hold_app", "mmio_exits"), "  of which MMIO", "%.0f"},
        {id("hold_vm", "exits"), "spore-vm resume: KVM exits, the same", "%.0f"},
        {"", n + ": daemon mode (one warm VM)"},
        {id("start", "exit_ms"), "./app start: fork -> exit (ready)"},
        {id("exec_true", "exit_ms"), "./app exec true: fork -> exit"},
        {id("exec_echo", "first_output_ms"), "./app exec echo x: fork -> first output"},
        {id("exec_echo", "exit_ms"), "./app exec echo x: fork -> exit"},
        {id("direct_true", "exit_ms"), "session on the monitor socket, true: -> exit"},
        {id("direct_echo", "first_output_ms"), "session on the monitor socket, echo x: -> output"},
        {id("direct_true", "ok_ms"), "  connect -> monitor's OK (vsock to the agent)"},
        {id("exec_true", "cpu_ms"), "./app exec true: CPU time of the stub"},
        {id("exec_true", "minflt"), "./app exec true: page faults of the stub (count)", "%.0f"},
        {id("status", "exit_ms"), "./app status --json: fork -> exit"},
        {id("version", "exit_ms"), "./app --version: fork -> exit"},
        {id("version", "cpu_ms"), "./app --version: CPU time"},
        {id("version", "minflt"), "./app --version: page faults (count)", "%.0f"},
        {id("open", "open_ms"), "bundle open + config + cache, in a warm process"},
        {id("daemon", "exits_per_session"), "KVM exits per session (idle rate removed)", "%.0f"},
        {id("daemon", "mmio_exits_per_session"), "  of which MMIO", "%.0f"},
        {id("daemon", "cpu_ms_per_session"), "monitor CPU per session (guest included)"},
        {id("daemon", "idle_exits_per_s"), "idle guest: KVM exits per second", "%.0f"},
        {id("daemon", "rss_mib"), "monitor resident after the sessions (MiB)"},
        {id("stop", "exit_ms"), "./app stop: fork -> exit"},
    };
    auto r = [&](const char* label, const char* a, const char* b, bool paired) {
      return TableRatio{label, n + ":" + a, n + ":" + b, paired};
    };
    std::vector<TableRatio> ratios = {
        r("./app true / cold boot (exit)", "app_true.exit_ms", "cold_true.exit_ms", true),
        r("./app echo x / cold boot (first output)", "app_echo.first_output_ms", "cold_echo.first_output_ms", true),
        r("./app exec true / cold boot (exit)", "exec_true.exit_ms", "cold_true.exit_ms", false),
        r("./app exec echo x / cold boot (first output)", "exec_echo.first_output_ms", "cold_echo.first_output_ms", false),
        r("./app true / spore-vm resume -- true", "app_true.exit_ms", "vm_true.exit_ms", true),
        r("./app echo x / spore-vm resume -- echo x", "app_echo.first_output_ms", "vm_echo.first_output_ms", true),
        r("./app exec true / socket session", "exec_true.exit_ms", "direct_true.exit_ms", true),
        r("./app exec echo x / socket session", "exec_echo.first_output_ms", "direct_echo.first_output_ms", true),
        r("stub cold boot / spore-vm cold boot", "cold_app.exit_ms", "cold_true.exit_ms", true),
    };
    std::fprintf(out, "\n== %s ==\n", n.c_str());
    report.print_table(out, "figure (ms unless marked)", rows, ratios, Spread::kP95);
  }

  // The goals of the product issue, on this run's figures. The reference is
  // the cold boot's median; the app's p50 and p95 are both held against it.
  std::fprintf(out, "\ngoals (against the median cold boot of the same guest, this run)\n");
  auto verdict = [](bool met) { return met ? "met" : "NOT MET"; };
  for (const auto& n : names) {
    auto goal = [&](const char* what, const char* fig, const char* cold, double fraction) {
      auto f = report.summary(n + ":" + fig);
      auto c = report.median(n + ":" + cold);
      if (!f || !c || *c <= 0) {
        std::fprintf(out, "  %s %s: not measured\n", n.c_str(), what);
        return;
      }
      std::fprintf(out, "  %s %s under 1/%.0f of a cold boot: p50 %s, p95 %s\n", n.c_str(), what, 1 / fraction,
                   verdict(f->median < *c * fraction), verdict(f->p95 < *c * fraction));
      std::fprintf(out, "      p50 %s ms = 1/%.1f, p95 %s ms = 1/%.1f of %s ms (goal: under %s ms)\n",
                   fmt_ms(f->median).c_str(), *c / f->median, fmt_ms(f->p95).c_str(), *c / f->p95, fmt_ms(*c).c_str(),
                   fmt_ms(*c * fraction).c_str());
    };
    goal("`./app true` (fork -> exit)", "app_true.exit_ms", "cold_true.exit_ms", 1.0 / 30);
    goal("`./app echo x` (fork -> first output)", "app_echo.first_output_ms", "cold_echo.first_output_ms", 1.0 / 30);
    goal("`./app exec true` (fork -> exit)", "exec_true.exit_ms", "cold_true.exit_ms", 1.0 / 100);
    goal("`./app exec echo x` (fork -> first output)", "exec_echo.first_output_ms", "cold_echo.first_output_ms",
         1.0 / 100);
    if (auto s = report.summary(n + ":stub.bytes")) {
      auto st = report.median(n + ":stub.static");
      const bool is_static = st && *st > 0;
      std::fprintf(out, "  %s stub at most 2 MiB, static: %s (%.0f bytes = %.2f MiB, %s)\n", n.c_str(),
                   verdict(s->median <= 2 * kMiB && is_static), s->median, s->median / kMiB,
                   is_static ? "static" : "DYNAMIC");
    }
  }
  // The sidecar goal is the demo image's (the first app); the others are reported.
  for (size_t i = 0; i < names.size(); i++) {
    auto sealed = report.median(names[i] + ":bundle_sealed.file_mib");
    auto unsealed = report.median(names[i] + ":bundle_unsealed.file_mib");
    if (i == 0 && sealed)
      std::fprintf(out, "  %s sealed sidecar at most 8 MiB: %s (%.2f MiB; %.2f MiB as packed)\n", names[i].c_str(),
                   verdict(*sealed <= 8), *sealed, unsealed ? *unsealed : NAN);
    else if (sealed)
      std::fprintf(out, "  %s sealed sidecar: %.2f MiB (%.2f MiB as packed; no goal)\n", names[i].c_str(), *sealed,
                   unsealed ? *unsealed : NAN);
    else
      std::fprintf(out, "  %s sealed sidecar: not measured\n", names[i].c_str());
  }
}

}  // namespace spore::bench
