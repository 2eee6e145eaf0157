#include "vmm/spore/manifest.h"

#include <sys/random.h>
#include <time.h>

#include <nlohmann/json.hpp>

#include "base/sha256.h"
#include "base/strings.h"

namespace spore::vmm {
namespace {

using nlohmann::json;

json file_ref(const FileRef& f) { return json{{"file", f.file}, {"sha256", f.sha256}, {"size", f.size}}; }

bool is_hex(const std::string& s, size_t len) {
  if (s.size() != len) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

// A file name inside the spore directory: no separators, no dot names.
bool plain_name(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos && s.find('\0') == std::string::npos;
}

FileRef parse_file_ref(const json& j, const char* what) {
  FileRef f;
  f.file = j.at("file").get<std::string>();
  f.sha256 = j.at("sha256").get<std::string>();
  f.size = json_unsigned(j.at("size"), UINT64_MAX);
  if (!plain_name(f.file)) throw std::invalid_argument(std::string(what) + ".file must be a plain file name");
  if (!is_hex(f.sha256, 64)) throw std::invalid_argument(std::string(what) + ".sha256 must be 64 hex digits");
  return f;
}

}  // namespace

std::string manifest_to_json(const SporeManifest& m) {
  json j;
  j["format"] = kManifestFormat;
  j["id"] = m.id;
  j["parent"] = m.parent.empty() ? json(nullptr) : json(m.parent);
  j["created"] = m.created;
  j["generation"] = m.generation;
  j["platform"] = m.platform;
  j["machine"] = json{{"vcpus", m.machine.vcpus}, {"mem_mib", m.machine.mem_mib}, {"cmdline", m.machine.cmdline}};
  if (m.rootfs)
    j["rootfs"] = json{{"path", m.rootfs->path}, {"size", m.rootfs->size}, {"sha256", m.rootfs->sha256}};
  else
    j["rootfs"] = nullptr;
  j["state"] = file_ref(m.state);
  j["memory_index"] = file_ref(m.memory_index);
  j["memory"] = json{{"chunk_size", m.memory.chunk_size},
                     {"ram_size", m.memory.ram_size},
                     {"chunks", m.memory.chunks},
                     {"stored_bytes", m.memory.stored_bytes},
                     {"chunk_store", m.memory.chunk_store}};
  return j.dump(2) + "\n";
}

Result<SporeManifest> parse_manifest(std::string_view text) {
  SporeManifest m;
  try {
    json j = json::parse(text);
    std::string format = j.at("format").get<std::string>();
    if (format != kManifestFormat)
      return make_error(ErrorKind::kCorrupt, strfmt("spore format '%s' is not supported (this build reads '%s')",
                                                    format.c_str(), kManifestFormat));
    m.id = j.at("id").get<std::string>();
    if (!is_hex(m.id, 32)) return make_error(ErrorKind::kCorrupt, "manifest: id must be 32 hex digits");
    if (!j.at("parent").is_null()) {
      m.parent = j.at("parent").get<std::string>();
      if (!is_hex(m.parent, 64)) return make_error(ErrorKind::kCorrupt, "manifest: parent must be a sha256 digest");
    }
    m.created = j.at("created").get<std::string>();
    m.generation = json_unsigned(j.at("generation"), UINT64_MAX);
    m.platform = j.at("platform").get<PlatformFacts>();
    const json& mach = j.at("machine");
    m.machine.vcpus = static_cast<uint32_t>(json_unsigned(mach.at("vcpus"), UINT32_MAX));
    m.machine.mem_mib = json_unsigned(mach.at("mem_mib"), UINT64_MAX);
    m.machine.cmdline = mach.at("cmdline").get<std::string>();
    if (!j.at("rootfs").is_null()) {
      const json& r = j.at("rootfs");
      SporeManifest::Rootfs rf;
      rf.path = r.at("path").get<std::string>();
      rf.size = json_unsigned(r.at("size"), UINT64_MAX);
      rf.sha256 = r.at("sha256").get<std::string>();
      if (rf.path.empty() || rf.path[0] != '/' || !is_hex(rf.sha256, 64))
        return make_error(ErrorKind::kCorrupt, "manifest: rootfs needs an absolute path and a sha256 digest");
      m.rootfs = rf;
    }
    m.state = parse_file_ref(j.at("state"), "state");
    m.memory_index = parse_file_ref(j.at("memory_index"), "memory_index");
    const json& mem = j.at("memory");
    m.memory.chunk_size = static_cast<uint32_t>(json_unsigned(mem.at("chunk_size"), UINT32_MAX));
    m.memory.ram_size = json_unsigned(mem.at("ram_size"), UINT64_MAX);
    m.memory.chunks = json_unsigned(mem.at("chunks"), UINT64_MAX);
    m.memory.stored_bytes = json_unsigned(mem.at("stored_bytes"), UINT64_MAX);
    m.memory.chunk_store = mem.at("chunk_store").get<std::string>();
  } catch (const std::exception& e) {
    return make_error(ErrorKind::kCorrupt, std::string("manifest: ") + e.what());
  }
  const uint32_t cs = m.memory.chunk_size;
  if (cs < 4096 || cs > (64u << 20) || (cs & (cs - 1)))
    return make_error(ErrorKind::kCorrupt, "manifest: chunk_size must be a power of two from 4 KiB to 64 MiB");
  if (m.machine.mem_mib == 0 || m.machine.mem_mib > (1u << 20) || m.memory.ram_size != (m.machine.mem_mib << 20) ||
      m.memory.ram_size % cs)
    return make_error(ErrorKind::kCorrupt, "manifest: memory size is inconsistent");
  if (m.memory.chunks > m.memory.ram_size / cs)
    return make_error(ErrorKind::kCorrupt, "manifest: more chunks than RAM holds");
  if (m.memory.chunk_store.empty() || m.memory.chunk_store.find('\0') != std::string::npos)
    return make_error(ErrorKind::kCorrupt, "manifest: chunk_store is empty");
  if (m.machine.vcpus == 0 || m.machine.vcpus > 1024) return make_error(ErrorKind::kCorrupt, "manifest: bad vcpus");
  return m;
}

Result<std::string> new_spore_id() {
  uint8_t b[16];
  if (::getrandom(b, sizeof b, 0) != sizeof b) return errno_error("getrandom");
  return to_hex(b, sizeof b);
}

std::string utc_now_rfc3339() {
  time_t t = ::time(nullptr);
  tm tmv;
  gmtime_r(&t, &tmv);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tmv);
  return buf;
}

}  // namespace spore::vmm
