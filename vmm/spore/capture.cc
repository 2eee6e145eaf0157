#include "vmm/spore/capture.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "base/fd.h"
#include "base/files.h"
#include "base/strings.h"
#include "vmm/spore/working_set.h"

namespace spore::vmm {
namespace {

double now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// Chunks of anonymous memory whose pages were never touched (neither
// present nor swapped, per /proc/self/pagemap) are zero without reading.
std::vector<bool> untouched_chunks(const uint8_t* ram, uint64_t size, uint32_t chunk_size) {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t chunks = size / chunk_size, pages_per_chunk = chunk_size / page;
  std::vector<bool> out(chunks, false);
  UniqueFd fd(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  if (!fd || pages_per_chunk == 0) return out;
  std::vector<uint64_t> entries(pages_per_chunk);
  uint64_t first = reinterpret_cast<uint64_t>(ram) / page;
  for (uint64_t c = 0; c < chunks; c++) {
    uint64_t off = (first + c * pages_per_chunk) * 8;
    if (!pread_exact(fd.get(), entries.data(), entries.size() * 8, off).ok()) return std::vector<bool>(chunks, false);
    bool touched = false;
    for (uint64_t e : entries) touched |= (e >> 62) & 3;  // bit 63 present, bit 62 swapped
    out[c] = !touched;
  }
  return out;
}

std::array<uint8_t, 16> id_bytes(const std::string& hex) {
  std::array<uint8_t, 16> out{};
  for (size_t i = 0; i < 16 && 2 * i + 1 < hex.size(); i++)
    out[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  return out;
}

}  // namespace

Result<CaptureReport> capture_spore(Machine& m, const CaptureOptions& o, Cache& cache) {
  SPORE_TRY(Machine::spores_supported());
  CaptureReport rep;
  double t0 = now_ms();
  SPORE_ASSIGN_OR_RETURN(auto writer, SporeWriter::begin(o.dir, o.store_dir));

  // A quiescent point: no host connection half-way through a conversation.
  for (int waited = 0; waited < o.settle_ms && m.vsock_connections() > 0; waited += 10)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));

  double t1 = now_ms();
  SPORE_TRY(m.pause());
  double t2 = now_ms();
  SPORE_ASSIGN_OR_RETURN(MachineState state, m.save_state());
  double t3 = now_ms();

  const MemoryRegion& ram = m.memory().regions()[0];
  std::vector<bool> zero;
  if (!m.memory_is_file_backed()) zero = untouched_chunks(ram.host, ram.size, o.chunk_size);
  auto known_zero = [&zero](uint64_t c) { return c < zero.size() && zero[c]; };
  SPORE_ASSIGN_OR_RETURN(MemoryIndex idx, capture_memory(ram.host, ram.size, o.chunk_size, writer->store(),
                                                         known_zero, &rep.stats));
  double t4 = now_ms();

  SporeManifest man;
  SPORE_ASSIGN_OR_RETURN(man.id, new_spore_id());
  man.created = utc_now_rfc3339();
  man.generation = state.generation.generation;
  man.platform = m.platform();
  man.machine.vcpus = m.config().vcpus;
  man.machine.mem_mib = m.config().mem_mib;
  man.machine.cmdline = m.config().cmdline;
  if (!m.config().rootfs.empty()) {
    char real[PATH_MAX];
    if (!::realpath(m.config().rootfs.c_str(), real)) return errno_error(m.config().rootfs);
    SPORE_ASSIGN_OR_RETURN(Digest d, cache.file_digest(real));
    SPORE_ASSIGN_OR_RETURN(UniqueFd fd, open_file(real, O_RDONLY));
    SPORE_ASSIGN_OR_RETURN(uint64_t size, file_size(fd.get()));
    man.rootfs = SporeManifest::Rootfs{real, size, digest_hex(d)};
  }
  man.memory.chunk_size = o.chunk_size;
  man.memory.ram_size = ram.size;
  man.memory.chunks = idx.entries.size();
  man.memory.stored_bytes = rep.stats.stored_bytes;
  SPORE_ASSIGN_OR_RETURN(rep.spore, writer->commit(man, encode_machine_state(state), encode_memory_index(idx)));
  double t5 = now_ms();
  rep.pause_ms = t2 - t1;
  rep.save_ms = t3 - t2;
  rep.memory_ms = t4 - t3;
  rep.total_ms = t5 - t0;
  return rep;
}

Result<std::unique_ptr<Machine>> resume_spore(const Spore& spore, const ResumeOptions& o, Cache& cache,
                                              ResumeReport* report) {
  SPORE_TRY(Machine::spores_supported());
  double t0 = now_ms();
  const SporeManifest& man = spore.manifest;
  SPORE_ASSIGN_OR_RETURN(std::string state_bytes, read_pinned(spore, man.state));
  auto state = decode_machine_state(state_bytes);
  if (!state.ok()) return std::move(state).error().wrap(spore.dir);
  Digest idx_digest;
  SPORE_ASSIGN_OR_RETURN(MemoryIndex idx, load_memory_index(spore, &idx_digest));

  MachineConfig cfg;
  cfg.vcpus = man.machine.vcpus;
  cfg.mem_mib = man.machine.mem_mib;
  cfg.cmdline = man.machine.cmdline;
  cfg.console = o.console;
  if (man.rootfs) {
    cfg.rootfs = o.rootfs_override.empty() ? man.rootfs->path : o.rootfs_override;
    auto d = cache.file_digest(cfg.rootfs);
    if (!d.ok()) return std::move(d).error().wrap("the spore's rootfs");
    if (digest_hex(*d) != man.rootfs->sha256)
      return make_error(ErrorKind::kCorrupt, "rootfs " + cfg.rootfs + " is not the image the spore was captured with "
                                             "(its digest differs)");
  }

  SPORE_ASSIGN_OR_RETURN(auto chunks, spore.files->chunks(man));
  bool materialized = false;
  SPORE_ASSIGN_OR_RETURN(std::string ram_file, cache.ram_file(idx, idx_digest, *chunks, &materialized));
  double t1 = now_ms();

  RestoreSpec spec;
  spec.ram_file = ram_file;
  if (auto ws = read_file(cache.working_set_path(idx_digest), 16 << 20); ws.ok()) {
    auto states = decode_working_set(*ws, idx.ram_size / static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)));
    if (states.ok()) spec.working_set = std::move(*states);
  }
  const bool prefetch = !spec.working_set.empty();
  spec.state = std::move(*state);
  spec.platform = man.platform;
  spec.spore_id = id_bytes(man.id);
  auto m = Machine::restore(cfg, spec);
  if (report) {
    report->materialized = materialized;
    report->prefetched = prefetch;
    report->index_digest = idx_digest;
    report->prepare_ms = t1 - t0;
    report->restore_ms = now_ms() - t1;
  }
  return m;
}

WorkingSetRecorder WorkingSetRecorder::prepare(Cache& cache, const ResumeReport& report) {
  WorkingSetRecorder r;
  if (report.prefetched) return r;
  // Written in place (one write, no rename: record() may not name paths);
  // resumes check its exact length, so a torn or stale file is never used,
  // and it is replaced here.
  std::string path = cache.working_set_path(report.index_digest);
  ::unlink(path.c_str());
  r.out_.reset(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!r.out_) return WorkingSetRecorder();  // EEXIST: a concurrent run records it
  r.pagemap_.reset(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  if (!r.pagemap_) {
    ::unlink(path.c_str());
    return WorkingSetRecorder();
  }
  return r;
}

void WorkingSetRecorder::record(const Machine& m) {
  if (!out_ || !pagemap_) return;
  const MemoryRegion& r = m.memory().regions()[0];
  auto states = observe_working_set(pagemap_.get(), r.host, r.size);
  if (!states.ok()) return;
  std::string data = encode_working_set(*states);
  (void)write_all(out_.get(), data.data(), data.size());
}

}  // namespace spore::vmm
