#include "vmm/spore/spore.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include "base/fd.h"
#include "base/strings.h"

namespace spore::vmm {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxManifest = 1 << 20;
constexpr size_t kMaxPinned = 256u << 20;

Status write_new_file(const std::string& path, const std::string& data) {
  SPORE_ASSIGN_OR_RETURN(UniqueFd fd, open_file(path, O_WRONLY | O_CREAT | O_EXCL, 0644));
  auto s = write_all(fd.get(), data.data(), data.size());
  if (!s.ok()) return std::move(s).error().wrap(path);
  if (::fsync(fd.get()) < 0) return errno_error("fsync " + path);
  return ok_status();
}

FileRef ref_for(const std::string& name, const std::string& data) {
  return FileRef{name, digest_hex(sha256(data)), data.size()};
}

Status link_or_copy(const std::string& from, const std::string& to) {
  if (::link(from.c_str(), to.c_str()) == 0) return ok_status();
  std::error_code ec;
  fs::copy_file(from, to, ec);
  if (ec) return make_error(ErrorKind::kInternal, "copy " + from + ": " + ec.message());
  return ok_status();
}

class DirFiles final : public SporeFiles {
 public:
  explicit DirFiles(std::string dir) : dir_(std::move(dir)) {}
  Result<std::string> read(const std::string& name, uint64_t max) const override {
    return read_file(dir_ + "/" + name, max);
  }
  Result<std::shared_ptr<const ChunkSource>> chunks(const SporeManifest& m) const override {
    const std::string& store = m.memory.chunk_store;
    auto s = ChunkStore::open(store[0] == '/' ? store : dir_ + "/" + store, false);
    if (!s.ok()) return std::move(s).error().wrap(dir_);
    return std::shared_ptr<const ChunkSource>(std::make_shared<ChunkStore>(std::move(*s)));
  }

 private:
  std::string dir_;
};

}  // namespace

Result<Spore> open_spore_files(std::shared_ptr<const SporeFiles> files, const std::string& label) {
  Spore s;
  s.dir = label;
  s.files = std::move(files);
  auto text = s.files->read("manifest.json", kMaxManifest);
  if (!text.ok()) {
    if (text.error().kind == ErrorKind::kNotFound)
      return make_error(ErrorKind::kNotFound, label + " is not a spore (no manifest.json)");
    return std::move(text).error();
  }
  s.digest = sha256(*text);
  auto m = parse_manifest(*text);
  if (!m.ok()) return std::move(m).error().wrap(label);
  s.manifest = std::move(*m);
  return s;
}

Result<Spore> open_spore(const std::string& dir) {
  SPORE_ASSIGN_OR_RETURN(Spore s, open_spore_files(std::make_shared<DirFiles>(dir), dir));
  const std::string& store = s.manifest.memory.chunk_store;
  s.store_dir = store[0] == '/' ? store : dir + "/" + store;
  return s;
}

Result<std::string> read_pinned(const Spore& spore, const FileRef& ref) {
  std::string path = spore.dir + "/" + ref.file;
  if (ref.size > kMaxPinned) return make_error(ErrorKind::kCorrupt, path + ": implausibly large");
  auto data = spore.files->read(ref.file, kMaxPinned);
  if (!data.ok()) return std::move(data).error();
  if (data->size() != ref.size || digest_hex(sha256(*data)) != ref.sha256)
    return make_error(ErrorKind::kCorrupt, path + " is corrupt: its digest does not match the manifest");
  return data;
}

Result<MemoryIndex> load_memory_index(const Spore& spore, Digest* digest) {
  SPORE_ASSIGN_OR_RETURN(std::string data, read_pinned(spore, spore.manifest.memory_index));
  auto idx = decode_memory_index(data);
  if (!idx.ok()) return std::move(idx).error().wrap(spore.dir);
  if (idx->ram_size != spore.manifest.memory.ram_size || idx->chunk_size != spore.manifest.memory.chunk_size ||
      idx->entries.size() != spore.manifest.memory.chunks)
    return make_error(ErrorKind::kCorrupt, spore.dir + ": memory index disagrees with the manifest");
  if (digest) *digest = sha256(data);
  return idx;
}

Result<std::unique_ptr<SporeWriter>> SporeWriter::begin(const std::string& dir, const std::string& store_dir) {
  std::unique_ptr<SporeWriter> w(new SporeWriter());
  std::error_code ec;
  fs::path target = fs::absolute(dir, ec);
  if (ec) return make_error(ErrorKind::kUsage, "bad spore path " + dir);
  if (fs::exists(target, ec) && !(fs::is_directory(target, ec) && fs::is_empty(target, ec)))
    return make_error(ErrorKind::kUsage, dir + " already exists; choose a new directory for the spore");
  w->dir_ = target.lexically_normal().string();
  w->tmp_ = w->dir_ + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(w->tmp_, ec);
  if (!fs::create_directories(w->tmp_, ec) || ec)
    return make_error(ErrorKind::kUnavailable, "cannot create " + w->tmp_ + ": " + ec.message());
  std::string store_path;
  if (store_dir.empty()) {
    store_path = w->tmp_ + "/chunks";
    w->store_ref_ = "chunks";
  } else {
    store_path = fs::absolute(store_dir, ec).lexically_normal().string();
    w->store_ref_ = store_path;
  }
  SPORE_ASSIGN_OR_RETURN(ChunkStore store, ChunkStore::open(store_path, true));
  w->store_ = std::make_unique<ChunkStore>(std::move(store));
  return w;
}

SporeWriter::~SporeWriter() {
  if (!committed_ && !tmp_.empty()) {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
}

Result<Spore> SporeWriter::commit(SporeManifest m, const std::string& state, const std::string& memory_index) {
  m.state = ref_for("state.bin", state);
  m.memory_index = ref_for("memory.idx", memory_index);
  m.memory.chunk_store = store_ref_;
  SPORE_TRY(write_new_file(tmp_ + "/state.bin", state));
  SPORE_TRY(write_new_file(tmp_ + "/memory.idx", memory_index));
  std::string manifest = manifest_to_json(m);
  SPORE_TRY(write_new_file(tmp_ + "/manifest.json", manifest));
  std::error_code ec;
  fs::remove(dir_, ec);  // an empty directory the caller made for us
  if (::rename(tmp_.c_str(), dir_.c_str()) < 0) return errno_error("rename " + tmp_ + " to " + dir_);
  committed_ = true;
  return open_spore(dir_);
}

Result<std::vector<Spore>> fork_spore(const Spore& parent, const std::string& out_dir, uint32_t count) {
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return make_error(ErrorKind::kUnavailable, "cannot create " + out_dir + ": " + ec.message());
  fs::path store_abs = fs::absolute(parent.store_dir, ec).lexically_normal();
  std::vector<Spore> children;
  for (uint32_t i = 0; i < count; i++) {
    fs::path child = fs::absolute(fs::path(out_dir) / std::to_string(i), ec).lexically_normal();
    if (fs::exists(child, ec)) return make_error(ErrorKind::kUsage, child.string() + " already exists");
    std::string tmp = child.string() + ".tmp-" + std::to_string(::getpid());
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp, ec);
    if (ec) return make_error(ErrorKind::kUnavailable, "cannot create " + tmp + ": " + ec.message());
    auto cleanup = [&] { fs::remove_all(tmp, ec); };
    SporeManifest m = parent.manifest;
    auto id = new_spore_id();
    if (!id.ok()) {
      cleanup();
      return std::move(id).error();
    }
    m.id = *id;
    m.parent = digest_hex(parent.digest);
    m.created = utc_now_rfc3339();
    m.memory.chunk_store = fs::relative(store_abs, child).string();
    for (const FileRef* ref : {&parent.manifest.state, &parent.manifest.memory_index}) {
      if (auto s = link_or_copy(parent.dir + "/" + ref->file, tmp + "/" + ref->file); !s.ok()) {
        cleanup();
        return std::move(s).error();
      }
    }
    if (auto s = write_new_file(tmp + "/manifest.json", manifest_to_json(m)); !s.ok()) {
      cleanup();
      return std::move(s).error();
    }
    if (::rename(tmp.c_str(), child.c_str()) < 0) {
      cleanup();
      return errno_error("rename " + tmp);
    }
    SPORE_ASSIGN_OR_RETURN(Spore c, open_spore(child.string()));
    children.push_back(std::move(c));
  }
  return children;
}

}  // namespace spore::vmm
