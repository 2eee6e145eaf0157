#include "vmm/spore/spore.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>


#include "base/fd.h"
#include "base/files.h"
#include "base/strings.h"

namespace spore::vmm {
namespace {

constexpr size_t kMaxManifest = 1 << 20;
constexpr size_t kMaxPinned = 256u << 20;

// durable: fsync before the directory is renamed into place (fork
// manifests skip it: a lost fork is cheap to make again).
Status write_new_file(const std::string& path, const std::string& data, bool durable = true) {
  SPORE_ASSIGN_OR_RETURN(UniqueFd fd, open_file(path, O_WRONLY | O_CREAT | O_EXCL, 0644));
  auto s = write_all(fd.get(), data.data(), data.size());
  if (!s.ok()) return std::move(s).error().wrap(path);
  if (durable && ::fsync(fd.get()) < 0) return errno_error("fsync " + path);
  return ok_status();
}

FileRef ref_for(const std::string& name, const std::string& data) {
  return FileRef{name, digest_hex(sha256(data)), data.size()};
}

Status link_or_copy(const std::string& from, const std::string& to) {
  if (::link(from.c_str(), to.c_str()) == 0) return ok_status();
  return copy_file(from, to);
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
  std::string target = absolute_path(dir);
  if (path_exists(target) && !(is_dir(target) && is_empty_dir(target)))
    return make_error(ErrorKind::kUsage, dir + " already exists; choose a new directory for the spore");
  w->dir_ = target;
  // A new private directory beside the target (mkdtemp: a name nobody can
  // predict or plant a link at), renamed into place by commit().
  std::string tmpl = w->dir_ + ".tmp-XXXXXX";
  if (!::mkdtemp(tmpl.data())) return errno_error("creating a directory beside " + w->dir_);
  w->tmp_ = tmpl;
  std::string store_path;
  if (store_dir.empty()) {
    store_path = w->tmp_ + "/chunks";
    w->store_ref_ = "chunks";
  } else {
    store_path = absolute_path(store_dir);
    w->store_ref_ = store_path;
  }
  SPORE_ASSIGN_OR_RETURN(ChunkStore store, ChunkStore::open(store_path, true));
  w->store_ = std::make_unique<ChunkStore>(std::move(store));
  return w;
}

SporeWriter::~SporeWriter() {
  if (!committed_ && !tmp_.empty()) (void)remove_tree(tmp_);
}

Result<Spore> SporeWriter::commit(SporeManifest m, const std::string& state, const std::string& memory_index) {
  m.state = ref_for("state.bin", state);
  m.memory_index = ref_for("memory.idx", memory_index);
  m.memory.chunk_store = store_ref_;
  SPORE_TRY(write_new_file(tmp_ + "/state.bin", state));
  SPORE_TRY(write_new_file(tmp_ + "/memory.idx", memory_index));
  std::string manifest = manifest_to_json(m);
  SPORE_TRY(write_new_file(tmp_ + "/manifest.json", manifest));
  ::rmdir(dir_.c_str());  // an empty directory the caller made for us
  if (::rename(tmp_.c_str(), dir_.c_str()) < 0) return errno_error("rename " + tmp_ + " to " + dir_);
  committed_ = true;
  return open_spore(dir_);
}

Result<std::vector<Spore>> fork_spore(const Spore& parent, const std::string& out_dir, uint32_t count) {
  if (parent.store_dir.empty()) return make_error(ErrorKind::kUsage, "only a spore directory can be forked");
  SPORE_TRY(make_dirs(out_dir));
  std::string store_abs = absolute_path(parent.store_dir);
  std::vector<Spore> children;
  for (uint32_t i = 0; i < count; i++) {
    std::string child = absolute_path(out_dir + "/" + std::to_string(i));
    if (path_exists(child)) return make_error(ErrorKind::kUsage, child + " already exists");
    std::string tmp = child + ".tmp-" + std::to_string(::getpid());
    SPORE_TRY(remove_tree(tmp));
    SPORE_TRY(make_dirs(tmp));
    auto fail = [&](Error e) {
      (void)remove_tree(tmp);
      return e;
    };
    SporeManifest m = parent.manifest;
    auto id = new_spore_id();
    if (!id.ok()) return fail(id.error());
    m.id = *id;
    m.parent = digest_hex(parent.digest);
    m.created = utc_now_rfc3339();
    m.memory.chunk_store = relative_path(store_abs, child);
    for (const FileRef* ref : {&parent.manifest.state, &parent.manifest.memory_index}) {
      if (auto s = link_or_copy(parent.dir + "/" + ref->file, tmp + "/" + ref->file); !s.ok()) return fail(s.error());
    }
    if (auto s = write_new_file(tmp + "/manifest.json", manifest_to_json(m), false); !s.ok()) return fail(s.error());
    if (::rename(tmp.c_str(), child.c_str()) < 0) return fail(errno_error("rename " + tmp));
    SPORE_ASSIGN_OR_RETURN(Spore c, open_spore(child));
    children.push_back(std::move(c));
  }
  return children;
}

}  // namespace spore::vmm
