#include "packer/layers.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <set>
#include <unordered_map>

#include "base/fd.h"
#include "base/log.h"
#include "base/sha256.h"
#include "base/strings.h"

namespace spore::pack {
namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";
constexpr size_t kMaxExamples = 20;
// Ids that do not fit 32 bits become the kernel's overflow id.
constexpr uint32_t kOverflowId = 65534;

const char* const kSkipDotDot = "path climbs out of the root (..)";
const char* const kSkipDevice = "device node";
const char* const kSkipSocket = "socket";
const char* const kSkipParent = "a parent is not a directory";
const char* const kSkipLinkMissing = "hard link target missing";
const char* const kSkipLinkDir = "hard link to a directory";
const char* const kSkipLinkDotDot = "hard link target climbs out of the root (..)";
const char* const kSkipBadWhiteout = "invalid whiteout";
const char* const kSkipRootNotDir = "root entry is not a directory";
const char* const kSkipUnknown = "unknown entry type";
const char* const kSkipNoName = "entry without a name";

uint32_t clamp_id(int64_t id) { return id < 0 || id > UINT32_MAX ? kOverflowId : static_cast<uint32_t>(id); }

// The shared rules of layers and directory imports: where an entry goes and
// what it replaces.
class Applier {
 public:
  Applier(Tree& tree, uint32_t layer, LayerStats* stats) : tree_(tree), layer_(layer), stats_(*stats) {}

  uint32_t layer() const { return layer_; }
  Tree& tree() { return tree_; }

  void skip(std::string_view path, const char* reason) {
    stats_.skipped[reason]++;
    if (stats_.skipped_examples.size() < kMaxExamples)
      stats_.skipped_examples.push_back(std::string(path) + ": " + reason);
    LOG_INFO("layer %u: skipping %.*s: %s", layer_, static_cast<int>(path.size()), path.data(), reason);
  }

  // The directory that will hold path (created where missing): nullptr
  // after counting a skip, an error past the depth limit.
  Result<std::shared_ptr<Node>> parent(const std::string& path, std::string* name) {
    size_t depth = 0;
    auto dir = tree_.parent_of(path, name, layer_, &depth);
    if (!dir) {
      skip(path, kSkipParent);
      return std::shared_ptr<Node>();
    }
    SPORE_TRY(tree_.check_depth(depth + 1, path));
    return dir;
  }

  // Puts node at parent/name. A directory over a directory only takes the
  // new metadata (the lower children stay); anything else replaces what was
  // there, whole subtrees included.
  void place(const std::shared_ptr<Node>& parent, const std::string& name, std::shared_ptr<Node> node) {
    auto it = parent->children.find(name);
    if (it != parent->children.end() && it->second->kind == Node::Kind::kDir && node->kind == Node::Kind::kDir) {
      Node& d = *it->second;
      d.mode = node->mode;
      d.uid = node->uid;
      d.gid = node->gid;
      d.mtime = node->mtime;
      d.mtime_nsec = node->mtime_nsec;
      d.xattrs = std::move(node->xattrs);
      // Now this layer's directory: an opaque marker keeps it (and prunes
      // what lower layers put in it).
      d.layer = layer_;
      return;
    }
    // A hard link to a lower layer's file is a name this layer added,
    // though the node (shared with the target) is older.
    if (node->layer != layer_) linked_[parent].insert(name);
    parent->children[name] = std::move(node);
  }

  // ".wh.NAME" / ".wh..wh..opq" in dir. Returns false if base is not a whiteout.
  Result<bool> whiteout(const std::string& path, const std::string& base) {
    if (!starts_with(base, kWhiteoutPrefix)) return false;
    std::string name;
    SPORE_ASSIGN_OR_RETURN(std::shared_ptr<Node> dir, parent(path, &name));
    if (!dir) return true;
    if (base == kOpaqueMarker) {
      prune_lower(dir);
      stats_.whiteouts++;
      return true;
    }
    std::string victim = base.substr(kWhiteoutPrefix.size());
    if (starts_with(victim, kWhiteoutPrefix)) return true;  // aufs bookkeeping (.wh..wh.plnk and the like)
    if (victim.empty() || victim == "." || victim == "..") {
      skip(path, kSkipBadWhiteout);
      return true;
    }
    // Whiteouts hide lower layers only (OCI): what this layer put at
    // victim, or below it, stays, whichever order the entries came in.
    auto it = dir->children.find(victim);
    if (it != dir->children.end()) {
      std::shared_ptr<Node> c = it->second;
      if (c->kind == Node::Kind::kDir) prune_lower(c);
      if (!added_here(dir, victim, *c) && c->children.empty()) dir->children.erase(victim);
    }
    stats_.whiteouts++;
    return true;
  }

 private:
  bool added_here(const std::shared_ptr<Node>& parent, const std::string& name, const Node& n) const {
    if (n.layer == layer_) return true;
    auto it = linked_.find(parent);
    return it != linked_.end() && it->second.count(name);
  }

  // Removes what lower layers put below top, keeping this layer's entries
  // and the lower directories that lead to them. Iterative: the depth of
  // the tree is the image's choice, not the stack's.
  void prune_lower(const std::shared_ptr<Node>& top) {
    struct Frame {
      std::shared_ptr<Node> dir;
      std::map<std::string, std::shared_ptr<Node>>::iterator it;
    };
    std::vector<Frame> stack;
    stack.push_back({top, top->children.begin()});
    while (!stack.empty()) {
      if (stack.back().it == stack.back().dir->children.end()) {
        stack.pop_back();
        if (stack.empty()) break;
        // The child just finished: a lower directory left empty goes.
        Frame& up = stack.back();
        if (!added_here(up.dir, up.it->first, *up.it->second) && up.it->second->children.empty())
          up.it = up.dir->children.erase(up.it);
        else
          ++up.it;
        continue;
      }
      Frame& f = stack.back();
      std::shared_ptr<Node> c = f.it->second;
      if (c->kind == Node::Kind::kDir) {
        stack.push_back({c, c->children.begin()});
        continue;
      }
      if (added_here(f.dir, f.it->first, *c))
        ++f.it;
      else
        f.it = f.dir->children.erase(f.it);
    }
  }

  Tree& tree_;
  uint32_t layer_;
  LayerStats& stats_;
  // Names this layer added as hard links to older nodes, per directory
  // (held, so a freed directory's address is never mistaken for another's).
  std::map<std::shared_ptr<Node>, std::set<std::string>> linked_;
};

std::string base_name(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

void sort_xattrs(Node& n) {
  std::stable_sort(n.xattrs.begin(), n.xattrs.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  // A name given twice: the last one wins, as a setxattr() sequence would.
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& x : n.xattrs) {
    if (!out.empty() && out.back().first == x.first)
      out.back() = std::move(x);
    else
      out.push_back(std::move(x));
  }
  n.xattrs = std::move(out);
}

void log_summary(uint32_t layer, const LayerStats& s) {
  if (s.skipped.empty()) return;
  std::string reasons;
  for (const auto& [reason, count] : s.skipped)
    reasons +=
        strfmt("%s%s: %llu", reasons.empty() ? "" : ", ", reason.c_str(), static_cast<unsigned long long>(count));
  LOG_INFO("layer %u: skipped %llu entries (%s)", layer, static_cast<unsigned long long>(s.skipped_total()),
           reasons.c_str());
}

// ---- tar layers ----

struct ArchiveCloser {
  void operator()(archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveCloser>;

Error archive_failure(const std::string& blob, uint32_t layer, const std::string& what, archive* a) {
  const char* msg = archive_error_string(a);
  return make_error(ErrorKind::kCorrupt,
                    strfmt("layer %u (%s): %s: %s", layer, blob.c_str(), what.c_str(), msg ? msg : "unknown error"));
}

// The decompressing end of apply_layer's chain: libarchive's raw format
// over the blob, feeding the tar reader through a read callback.
struct Decompressed {
  ArchivePtr a;
  Sha256 sha;
  bool hash = false;
  bool eof = false;
  Tree* tree = nullptr;  // counts what comes out against the limits
  Status limit;          // set when the stream went past them

  static la_ssize_t read(archive* tar, void* self, const void** out) {
    auto* d = static_cast<Decompressed*>(self);
    for (;;) {
      if (d->eof) return 0;
      const void* buf = nullptr;
      size_t len = 0;
      la_int64_t off = 0;
      int r = archive_read_data_block(d->a.get(), &buf, &len, &off);
      if (r == ARCHIVE_EOF) {
        d->eof = true;
        return 0;
      }
      if (r < ARCHIVE_WARN) {
        const char* msg = archive_error_string(d->a.get());
        archive_set_error(tar, EIO, "%s", msg ? msg : "decompression failed");
        return -1;
      }
      if (len == 0) continue;
      if (d->tree) {
        if (auto st = d->tree->count_stream(len); !st.ok()) {
          d->limit = std::move(st);
          archive_set_error(tar, EFBIG, "%s", d->limit.error().message.c_str());
          return -1;
        }
      }
      if (d->hash) d->sha.update(buf, len);
      *out = buf;
      return static_cast<la_ssize_t>(len);
    }
  }
};

// Streams the entry's data into the spool; holes of sparse entries become zeros.
Status copy_data(archive* a, Tree& tree, Node& node, int64_t declared, const std::string& blob, uint32_t layer,
                 const std::string& path, LayerStats& stats, const Status& limit) {
  static const std::vector<uint8_t> kZeros(1 << 16);
  node.data_offset = tree.spool().size();
  // A sparse entry declares its size up front: one that cannot fit is
  // refused before a byte of it is written.
  if (declared > 0) SPORE_TRY(tree.spool().check_room(static_cast<uint64_t>(declared)));
  uint64_t written = 0;
  auto pad_to = [&](uint64_t end) -> Status {
    while (written < end) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(end - written, kZeros.size()));
      SPORE_TRY(tree.spool().append(kZeros.data(), n));
      written += n;
    }
    return ok_status();
  };
  for (;;) {
    const void* buf = nullptr;
    size_t len = 0;
    la_int64_t off = 0;
    int r = archive_read_data_block(a, &buf, &len, &off);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) return limit.ok() ? archive_failure(blob, layer, "reading " + path, a) : limit.error();
    if (off < 0 || static_cast<uint64_t>(off) < written)
      return make_error(ErrorKind::kCorrupt, strfmt("layer %u: %s: data blocks out of order", layer, path.c_str()));
    SPORE_TRY(tree.spool().check_room(static_cast<uint64_t>(off) - written));
    SPORE_TRY(pad_to(static_cast<uint64_t>(off)));
    if (len) SPORE_TRY(tree.spool().append(buf, len));
    written += len;
  }
  if (declared > 0) SPORE_TRY(pad_to(static_cast<uint64_t>(declared)));
  node.size = written;
  stats.bytes += written;
  return ok_status();
}

}  // namespace

uint64_t LayerStats::skipped_total() const {
  uint64_t n = 0;
  for (const auto& [reason, count] : skipped) n += count;
  return n;
}

Status apply_layer(Tree& tree, const std::string& blob_path, uint32_t layer, LayerStats* stats,
                   const std::string& diff_id) {
  LayerStats local;
  LayerStats& st = stats ? *stats : local;
  st = LayerStats{};
  if (layer == 0) return make_error(ErrorKind::kInternal, "layers are numbered from 1");
  Applier ap(tree, layer, &st);

  // Two readers in a chain: the first only decompresses (and hashes what
  // comes out, for the diff_id), the second reads the tar from it. One
  // pass over the blob, one decompression.
  Decompressed d;
  d.a.reset(archive_read_new());
  if (!d.a) return make_error(ErrorKind::kInternal, "archive_read_new failed");
  d.hash = !diff_id.empty();
  d.tree = &tree;
  // A failure of the tar reader may be a limit the stream went past.
  auto failure = [&](const std::string& what, archive* arc) -> Error {
    if (!d.limit.ok()) return d.limit.error();
    return archive_failure(blob_path, layer, what, arc);
  };
  archive_read_support_filter_gzip(d.a.get());
  archive_read_support_filter_zstd(d.a.get());
  archive_read_support_filter_xz(d.a.get());
  archive_read_support_filter_bzip2(d.a.get());
  archive_read_support_format_raw(d.a.get());
  // An empty blob is an empty layer, not an error.
  archive_read_support_format_empty(d.a.get());
  if (archive_read_open_filename(d.a.get(), blob_path.c_str(), 1 << 16) != ARCHIVE_OK) {
    Error e = archive_failure(blob_path, layer, "opening", d.a.get());
    if (archive_errno(d.a.get()) == ENOENT) e.kind = ErrorKind::kNotFound;
    return e;
  }
  archive_entry* raw_entry = nullptr;
  int rr = archive_read_next_header(d.a.get(), &raw_entry);
  if (rr == ARCHIVE_EOF) d.eof = true;
  else if (rr < ARCHIVE_WARN) return archive_failure(blob_path, layer, "decompressing", d.a.get());

  ArchivePtr a(archive_read_new());
  if (!a) return make_error(ErrorKind::kInternal, "archive_read_new failed");
  archive_read_support_format_tar(a.get());
  archive_read_support_format_empty(a.get());
  if (archive_read_open(a.get(), &d, nullptr, &Decompressed::read, nullptr) != ARCHIVE_OK)
    return archive_failure(blob_path, layer, "opening", a.get());

  for (;;) {
    archive_entry* e = nullptr;
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) return failure("reading the next entry", a.get());
    if (r == ARCHIVE_WARN) {
      const char* msg = archive_error_string(a.get());
      LOG_INFO("layer %u: %s", layer, msg ? msg : "warning");
    }
    st.entries++;
    SPORE_TRY(tree.count_entry());

    const char* raw = archive_entry_pathname(e);
    if (!raw) raw = archive_entry_pathname_utf8(e);
    if (!raw) {
      ap.skip("?", kSkipNoName);
      continue;
    }
    SPORE_TRY(tree.check_path_length("the name", raw));
    auto norm = normalize_path(raw);
    if (!norm.ok()) {
      ap.skip(raw, kSkipDotDot);
      continue;
    }
    const std::string& path = *norm;
    std::string base = base_name(path);
    if (!path.empty()) {
      SPORE_ASSIGN_OR_RETURN(bool was_whiteout, ap.whiteout(path, base));
      if (was_whiteout) continue;
    }

    auto node = std::make_shared<Node>();
    node->mode = archive_entry_perm(e) & 07777;
    node->uid = clamp_id(archive_entry_uid(e));
    node->gid = clamp_id(archive_entry_gid(e));
    if (archive_entry_mtime_is_set(e)) {
      node->mtime = archive_entry_mtime(e);
      node->mtime_nsec = static_cast<uint32_t>(archive_entry_mtime_nsec(e));
    }
    node->layer = layer;
    if (archive_entry_xattr_reset(e) > 0) {
      const char* name = nullptr;
      const void* value = nullptr;
      size_t size = 0;
      while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK)
        node->xattrs.emplace_back(name, std::string(static_cast<const char*>(value), size));
      sort_xattrs(*node);
    }

    if (const char* link = archive_entry_hardlink(e)) {
      SPORE_TRY(tree.check_path_length("the hard-link target of " + path, link));
      auto target_path = normalize_path(link);
      if (!target_path.ok()) {
        ap.skip(path, kSkipLinkDotDot);
        continue;
      }
      auto target = tree.lookup(*target_path, false);
      if (!target) {
        ap.skip(path, kSkipLinkMissing);
        continue;
      }
      if (target->kind == Node::Kind::kDir) {
        ap.skip(path, kSkipLinkDir);
        continue;
      }
      std::string name;
      SPORE_ASSIGN_OR_RETURN(auto dir, ap.parent(path, &name));
      if (!dir) continue;
      ap.place(dir, name, target);
      st.hardlinks++;
      continue;
    }

    switch (archive_entry_filetype(e)) {
      case AE_IFREG: node->kind = Node::Kind::kFile; break;
      case AE_IFDIR: node->kind = Node::Kind::kDir; break;
      case AE_IFLNK: node->kind = Node::Kind::kSymlink; break;
      case AE_IFIFO: node->kind = Node::Kind::kFifo; break;
      case AE_IFCHR:
      case AE_IFBLK: ap.skip(path, kSkipDevice); continue;
      case AE_IFSOCK: ap.skip(path, kSkipSocket); continue;
      default: ap.skip(path, kSkipUnknown); continue;
    }

    if (path.empty()) {
      // "./" itself: the root's own metadata.
      if (node->kind != Node::Kind::kDir) {
        ap.skip("/", kSkipRootNotDir);
        continue;
      }
      Node& root = tree.root();
      root.mode = node->mode;
      root.uid = node->uid;
      root.gid = node->gid;
      root.mtime = node->mtime;
      root.mtime_nsec = node->mtime_nsec;
      root.xattrs = std::move(node->xattrs);
      continue;
    }

    std::string name;
    SPORE_ASSIGN_OR_RETURN(auto dir, ap.parent(path, &name));
    if (!dir) continue;
    if (node->kind == Node::Kind::kSymlink) {
      const char* target = archive_entry_symlink(e);
      node->target = target ? target : "";
      SPORE_TRY(tree.check_path_length("the symlink target of " + path, node->target));
    } else if (node->kind == Node::Kind::kFile) {
      SPORE_TRY(copy_data(a.get(), tree, *node, archive_entry_size_is_set(e) ? archive_entry_size(e) : 0, blob_path,
                          layer, path, st, d.limit));
    }
    ap.place(dir, name, std::move(node));
  }
  if (d.hash) {
    // The tar reader stops at the end-of-archive blocks; the diff_id covers
    // the whole stream, padding after them included.
    while (!d.eof) {
      const void* buf = nullptr;
      la_ssize_t n = Decompressed::read(a.get(), &d, &buf);
      if (n < 0) return failure("decompressing", a.get());
    }
    const std::string got = "sha256:" + digest_hex(d.sha.finish());
    if (got != diff_id)
      return make_error(ErrorKind::kCorrupt,
                        strfmt("layer %u (%s): its uncompressed content does not match the config's diff_id %s (got %s)",
                               layer, blob_path.c_str(), diff_id.c_str(), got.c_str()));
  }
  log_summary(layer, st);
  return ok_status();
}

// ---- directories ----

namespace {

class DirImporter {
 public:
  DirImporter(Tree& tree, LayerStats* stats, std::string root)
      : ap_(tree, 1, stats), stats_(*stats), root_(std::move(root)) {}

  Status run() {
    int fd = ::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno_error("opening " + root_);
    UniqueFd dir(fd);
    struct stat st;
    if (::fstat(dir.get(), &st) < 0) return errno_error("stat " + root_);
    Node& root = ap_.tree().root();
    set_meta(root, st);
    SPORE_TRY(read_xattrs(root, dir.get(), ""));
    return walk(dir.get(), root, "", 0);
  }

 private:
  static void set_meta(Node& n, const struct stat& st) {
    n.mode = st.st_mode & 07777;
    n.uid = st.st_uid;
    n.gid = st.st_gid;
    n.mtime = st.st_mtim.tv_sec;
    n.mtime_nsec = static_cast<uint32_t>(st.st_mtim.tv_nsec);
    n.layer = 1;
  }

  // Attributes through the open fd, or by path for symlinks (which cannot
  // be opened). Unreadable namespaces (trusted.* without privilege) and
  // filesystems without xattrs are fine: there is nothing to keep.
  Status read_xattrs(Node& n, int fd, const std::string& rel) {
    std::string path = rel.empty() ? root_ : root_ + "/" + rel;
    auto list_fn = [&](char* buf, size_t len) -> ssize_t {
      return fd >= 0 ? ::flistxattr(fd, buf, len) : ::llistxattr(path.c_str(), buf, len);
    };
    auto get_fn = [&](const char* name, void* buf, size_t len) -> ssize_t {
      return fd >= 0 ? ::fgetxattr(fd, name, buf, len) : ::lgetxattr(path.c_str(), name, buf, len);
    };
    ssize_t len = list_fn(nullptr, 0);
    if (len <= 0) return ok_status();
    std::string names(static_cast<size_t>(len), '\0');
    len = list_fn(names.data(), names.size());
    if (len <= 0) return ok_status();
    names.resize(static_cast<size_t>(len));
    for (size_t at = 0; at < names.size();) {
      std::string name = names.c_str() + at;
      at += name.size() + 1;
      if (name.empty() || name == "security.selinux") continue;
      ssize_t vlen = get_fn(name.c_str(), nullptr, 0);
      if (vlen < 0) continue;
      std::string value(static_cast<size_t>(vlen), '\0');
      vlen = get_fn(name.c_str(), value.data(), value.size());
      if (vlen < 0) continue;
      value.resize(static_cast<size_t>(vlen));
      n.xattrs.emplace_back(std::move(name), std::move(value));
    }
    sort_xattrs(n);
    return ok_status();
  }

  Status copy_file(int fd, Node& n, const std::string& rel, uint64_t declared) {
    Tree& tree = ap_.tree();
    // As for sparse tar entries: a file that cannot fit (a sparse terabyte)
    // is refused before any of it is copied.
    SPORE_TRY(tree.spool().check_room(declared));
    n.data_offset = tree.spool().size();
    std::vector<uint8_t> buf(1 << 16);
    uint64_t total = 0;
    for (;;) {
      ssize_t r = ::read(fd, buf.data(), buf.size());
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return errno_error("reading " + root_ + "/" + rel);
      if (r == 0) break;
      SPORE_TRY(tree.spool().append(buf.data(), static_cast<size_t>(r)));
      total += static_cast<uint64_t>(r);
    }
    n.size = total;
    stats_.bytes += total;
    return ok_status();
  }

  // Recursive, one open directory per level: bounded by --max-path-depth.
  Status walk(int dirfd, Node& dir, const std::string& rel, size_t depth) {
    int dup = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) return errno_error("dup");
    std::unique_ptr<DIR, int (*)(DIR*)> d(::fdopendir(dup), ::closedir);
    if (!d) {
      ::close(dup);
      return errno_error("reading " + root_ + "/" + rel);
    }
    for (;;) {
      errno = 0;
      struct dirent* de = ::readdir(d.get());
      if (!de) {
        if (errno) return errno_error("reading " + root_ + "/" + rel);
        break;
      }
      std::string name = de->d_name;
      if (name == "." || name == "..") continue;
      std::string child_rel = rel.empty() ? name : rel + "/" + name;
      stats_.entries++;
      Tree& tree = ap_.tree();
      SPORE_TRY(tree.count_entry());
      SPORE_TRY(tree.check_path_length("the name", child_rel));
      SPORE_TRY(tree.check_depth(depth + 1, child_rel));
      struct stat st;
      if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno_error("stat " + root_ + "/" + child_rel);

      if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
        auto it = links_.find({st.st_dev, st.st_ino});
        if (it != links_.end()) {
          dir.children[name] = it->second;
          stats_.hardlinks++;
          continue;
        }
      }
      auto node = std::make_shared<Node>();
      set_meta(*node, st);
      if (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode)) {
        int fd =
            ::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0));
        if (fd < 0) return errno_error("opening " + root_ + "/" + child_rel);
        UniqueFd f(fd);
        SPORE_TRY(read_xattrs(*node, f.get(), child_rel));
        if (S_ISDIR(st.st_mode)) {
          node->kind = Node::Kind::kDir;
          SPORE_TRY(walk(f.get(), *node, child_rel, depth + 1));
        } else {
          node->kind = Node::Kind::kFile;
          SPORE_TRY(copy_file(f.get(), *node, child_rel, static_cast<uint64_t>(st.st_size)));
          if (st.st_nlink > 1) links_[{st.st_dev, st.st_ino}] = node;
        }
      } else if (S_ISLNK(st.st_mode)) {
        node->kind = Node::Kind::kSymlink;
        std::string target(static_cast<size_t>(st.st_size > 0 ? st.st_size : 4096) + 1, '\0');
        ssize_t n = ::readlinkat(dirfd, name.c_str(), target.data(), target.size());
        if (n < 0) return errno_error("reading the link " + root_ + "/" + child_rel);
        target.resize(static_cast<size_t>(n));
        SPORE_TRY(tree.check_path_length("the symlink target of " + child_rel, target));
        node->target = std::move(target);
        SPORE_TRY(read_xattrs(*node, -1, child_rel));
      } else if (S_ISFIFO(st.st_mode)) {
        node->kind = Node::Kind::kFifo;
      } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
        ap_.skip(child_rel, kSkipDevice);
        continue;
      } else if (S_ISSOCK(st.st_mode)) {
        ap_.skip(child_rel, kSkipSocket);
        continue;
      } else {
        ap_.skip(child_rel, kSkipUnknown);
        continue;
      }
      dir.children[name] = std::move(node);
    }
    return ok_status();
  }

  struct DevIno {
    dev_t dev;
    ino_t ino;
    bool operator==(const DevIno& o) const { return dev == o.dev && ino == o.ino; }
  };
  struct DevInoHash {
    size_t operator()(const DevIno& k) const { return std::hash<uint64_t>()(k.ino * 31 + k.dev); }
  };

  Applier ap_;
  LayerStats& stats_;
  std::string root_;
  std::unordered_map<DevIno, std::shared_ptr<Node>, DevInoHash> links_;
};

}  // namespace

Status import_dir(Tree& tree, const std::string& root_dir, LayerStats* stats) {
  LayerStats local;
  LayerStats& st = stats ? *stats : local;
  st = LayerStats{};
  DirImporter imp(tree, &st, root_dir);
  SPORE_TRY(imp.run());
  log_summary(1, st);
  return ok_status();
}

}  // namespace spore::pack
