// spore-vm resume | fork | fanout | inspect.
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/exit_codes.h"
#include "base/strings.h"
#include "vmm/cli/commands.h"
#include "vmm/seccomp_policy.h"
#include "vmm/spore/capture.h"

namespace spore::cli {

int cmd_resume(const ResumeCmdOptions& o) {
  if (auto s = vmm::Machine::spores_supported(); !s.ok()) return fail(s.error());
  if (o.exec.command.empty()) return fail(make_error(ErrorKind::kUsage, "no command given (spore-vm resume DIR -- CMD)"));
  auto req = make_request(o.exec);
  if (!req.ok()) return fail(req.error());
  UniqueFd sigfd = forwarded_signals();
  auto spore = vmm::open_spore(o.dir);
  if (!spore.ok()) return fail(spore.error());
  auto cache = vmm::Cache::open();
  if (!cache.ok()) return fail(cache.error());

  vmm::ConsoleLog console(o.exec.console);
  vmm::ResumeOptions ro;
  ro.rootfs_override = o.rootfs;
  ro.console = [&console](const char* d, size_t n) { console.write(d, n); };
  vmm::ResumeReport rep;
  auto machine = vmm::resume_spore(*spore, ro, *cache, &rep);
  if (!machine.ok()) return fail(machine.error());
  vmm::Machine& m = **machine;
  if (auto s = m.start(); !s.ok()) return fail(s.error());
  vmm::WorkingSetRecorder ws = vmm::WorkingSetRecorder::prepare(*cache, rep);
  // Nothing left to open by path: this thread only streams stdio now.
  if (auto s = vmm::confine_this_thread(vmm::ThreadRole::kSession); !s.ok()) {
    m.stop();
    return fail(s.error());
  }
  int64_t t_started = mono_ns();
  int64_t first_output = 0;
  int status = run_command(m, *req, o.exec, sigfd.get(), console, &first_output);
  int64_t t_exit = mono_ns();
  m.stop();
  ws.record(m);
  if (o.exec.timings)
    std::fprintf(stderr,
                 "spore-vm: timings: prepare_ms=%.1f%s%s restore_ms=%.1f started_ms=%.1f first_output_ms=%.1f exit_ms=%.1f\n",
                 rep.prepare_ms, rep.materialized ? " (materialised RAM)" : "", rep.prefetched ? " (prefetching)" : "",
                 rep.restore_ms,
                 ms_since_start(t_started), ms_since_start(first_output), ms_since_start(t_exit));
  return status;
}

int cmd_fork(const ForkOptions& o) {
  if (o.count == 0) return fail(make_error(ErrorKind::kUsage, "--count must be at least 1"));
  auto parent = vmm::open_spore(o.dir);
  if (!parent.ok()) return fail(parent.error());
  auto children = vmm::fork_spore(*parent, o.out, o.count);
  if (!children.ok()) return fail(children.error());
  for (const auto& c : *children) std::printf("%s\n", c.dir.c_str());
  return 0;
}

namespace {

struct Child {
  std::string name;
  pid_t pid = -1;
  int out = -1, err = -1;
  std::string out_buf, err_buf;
  int status = -1;
};

// Writes complete lines of buf to fd, each prefixed; keeps the rest.
void emit_lines(int fd, const std::string& prefix, std::string& buf, bool flush_all) {
  size_t start = 0;
  for (;;) {
    size_t nl = buf.find('\n', start);
    if (nl == std::string::npos) break;
    std::string line = prefix + buf.substr(start, nl - start + 1);
    (void)write_all(fd, line.data(), line.size());
    start = nl + 1;
  }
  buf.erase(0, start);
  if (flush_all && !buf.empty()) {
    std::string line = prefix + buf + "\n";
    (void)write_all(fd, line.data(), line.size());
    buf.clear();
  }
}

std::string self_exe() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "spore-vm";
}

}  // namespace

int cmd_fanout(const FanoutOptions& o, int) {
  if (o.dirs.empty()) return fail(make_error(ErrorKind::kUsage, "no spores given (spore-vm fanout DIR... -- CMD)"));
  if (o.exec.command.empty()) return fail(make_error(ErrorKind::kUsage, "no command given (spore-vm fanout DIR... -- CMD)"));
  if (o.exec.interactive || o.exec.tty) return fail(make_error(ErrorKind::kUsage, "fanout cannot forward stdin or a tty"));
  for (const auto& d : o.dirs) {
    auto s = vmm::open_spore(d);
    if (!s.ok()) return fail(s.error());
  }
  std::string exe = self_exe();
  std::vector<Child> children(o.dirs.size());
  size_t limit = o.parallel ? o.parallel : children.size();
  size_t next = 0, running = 0;
  auto launch = [&](size_t i) {
    Child& c = children[i];
    std::string d = o.dirs[i];
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    c.name = d.substr(d.rfind('/') + 1);
    int po[2], pe[2];
    if (::pipe2(po, O_CLOEXEC) < 0 || ::pipe2(pe, O_CLOEXEC) < 0) return false;
    std::vector<std::string> args = {exe, "resume", o.dirs[i]};
    for (const auto& e : o.exec.env) args.insert(args.end(), {"-e", e});
    if (!o.exec.workdir.empty()) args.insert(args.end(), {"-w", o.exec.workdir});
    if (!o.exec.user.empty()) args.insert(args.end(), {"-u", o.exec.user});
    if (!o.exec.timeout.empty()) args.insert(args.end(), {"--timeout", o.exec.timeout});
    args.push_back("--");
    args.insert(args.end(), o.exec.command.begin(), o.exec.command.end());
    c.pid = ::fork();
    if (c.pid == 0) {
      ::dup2(po[1], 1);
      ::dup2(pe[1], 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(exe.c_str(), argv.data());
      _exit(kExitSoftware);
    }
    ::close(po[1]);
    ::close(pe[1]);
    c.out = po[0];
    c.err = pe[0];
    return c.pid > 0;
  };
  while (next < children.size() && running < limit) {
    if (!launch(next++)) return fail(errno_error("starting a fanout child"));
    running++;
  }
  char buf[65536];
  while (running > 0) {
    std::vector<pollfd> fds;
    std::vector<std::pair<size_t, bool>> who;
    for (size_t i = 0; i < children.size(); i++) {
      if (children[i].out >= 0) {
        fds.push_back({children[i].out, POLLIN, 0});
        who.emplace_back(i, true);
      }
      if (children[i].err >= 0) {
        fds.push_back({children[i].err, POLLIN, 0});
        who.emplace_back(i, false);
      }
    }
    if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) return fail(errno_error("poll"));
    for (size_t k = 0; k < fds.size(); k++) {
      if (!fds[k].revents) continue;
      Child& c = children[who[k].first];
      bool is_out = who[k].second;
      int& fd = is_out ? c.out : c.err;
      std::string& b = is_out ? c.out_buf : c.err_buf;
      std::string prefix = "[" + c.name + "] ";
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n > 0) {
        b.append(buf, static_cast<size_t>(n));
        emit_lines(is_out ? 1 : 2, prefix, b, false);
        continue;
      }
      emit_lines(is_out ? 1 : 2, prefix, b, true);
      ::close(fd);
      fd = -1;
      if (c.out < 0 && c.err < 0) {
        int st;
        while (::waitpid(c.pid, &st, 0) < 0 && errno == EINTR) {
        }
        c.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        running--;
        if (next < children.size()) {
          if (!launch(next++)) return fail(errno_error("starting a fanout child"));
          running++;
        }
      }
    }
  }
  int failed = 0, first_bad = 0;
  for (const auto& c : children)
    if (c.status != 0) {
      failed++;
      if (!first_bad) first_bad = c.status;
    }
  if (failed) std::fprintf(stderr, "spore-vm: %d of %zu children failed\n", failed, children.size());
  return first_bad;
}

int cmd_inspect(const InspectOptions& o) {
  auto spore = vmm::open_spore(o.dir);
  if (!spore.ok()) return fail(spore.error());
  const auto& m = spore->manifest;
  if (o.json) {
    nlohmann::json j = nlohmann::json::parse(vmm::manifest_to_json(m));
    j["digest"] = digest_hex(spore->digest);
    j["dir"] = spore->dir;
    j["chunk_store_resolved"] = spore->store_dir;
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("spore      %s\n", spore->dir.c_str());
  std::printf("digest     %s\n", digest_hex(spore->digest).c_str());
  std::printf("id         %s\n", m.id.c_str());
  std::printf("parent     %s\n", m.parent.empty() ? "(none)" : m.parent.c_str());
  std::printf("created    %s\n", m.created.c_str());
  std::printf("generation %llu\n", static_cast<unsigned long long>(m.generation));
  std::printf("machine    %u vCPU, %llu MiB RAM, board v%u, %s\n", m.machine.vcpus,
              static_cast<unsigned long long>(m.machine.mem_mib), m.platform.board_version, m.platform.arch.c_str());
  std::printf("memory     %llu of %llu chunks stored (%.1f%% of RAM non-zero), %.1f MiB compressed, %u KiB chunks\n",
              static_cast<unsigned long long>(m.memory.chunks),
              static_cast<unsigned long long>(m.memory.ram_size / m.memory.chunk_size),
              100.0 * m.memory.chunks * m.memory.chunk_size / m.memory.ram_size, m.memory.stored_bytes / 1048576.0,
              m.memory.chunk_size / 1024);
  std::printf("store      %s\n", spore->store_dir.c_str());
  std::printf("rootfs     %s\n", m.rootfs ? (m.rootfs->path + " (sha256 " + m.rootfs->sha256.substr(0, 16) + "...)").c_str()
                                          : "(none)");
  std::printf("platform   %s, vCPU target %u, GICD_IIDR 0x%x, %zu ID registers, %zu KVM capabilities\n",
              m.platform.arch.c_str(), m.platform.vcpu_target, m.platform.gic_iidr, m.platform.id_regs.size(),
              m.platform.kvm_caps.size());
  return 0;
}

}  // namespace spore::cli
