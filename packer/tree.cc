#include "packer/tree.h"

#include <fcntl.h>
#include <unistd.h>

#include <deque>

#include "base/strings.h"

namespace spore::pack {
namespace {

// A limit for messages, in the largest binary unit that divides it.
std::string limit_text(uint64_t bytes) {
  static const char* const kUnits[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  size_t u = 0;
  while (u + 1 < std::size(kUnits) && bytes >= 1024 && bytes % 1024 == 0) {
    bytes /= 1024;
    u++;
  }
  return std::to_string(bytes) + " " + kUnits[u];
}

Error over_limit(const std::string& what, const char* option) {
  return make_error(ErrorKind::kCorrupt,
                    "the image exceeds a limit: " + what + " (spore-pack " + option + " raises it for an image you trust)");
}

}  // namespace

Result<Spool> Spool::create(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    // Filesystems without O_TMPFILE: a named file (mkostemp: O_EXCL, a
    // fresh random name), unlinked at once.
    std::string tmpl = dir + "/spore-spool-XXXXXX";
    fd = ::mkostemp(tmpl.data(), O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return errno_error("creating a spool file in " + dir);
    ::unlink(tmpl.c_str());
  }
  Spool s;
  s.fd_.reset(fd);
  s.dir_ = dir;
  return s;
}

Status Spool::check_room(uint64_t more) const {
  if (more > limit_ || size_ > limit_ - more)
    return over_limit("file contents of more than " + limit_text(limit_), "--max-image-size");
  return ok_status();
}

Result<uint64_t> Spool::append(const void* data, size_t len) {
  SPORE_TRY(check_room(len));
  uint64_t at = size_;
  const auto* p = static_cast<const uint8_t*>(data);
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pwrite(fd_.get(), p + done, len - done, static_cast<off_t>(size_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return errno_error("writing the image's contents to a spool file in " + dir_, n < 0 ? errno : ENOSPC);
    done += static_cast<size_t>(n);
  }
  size_ += len;
  return at;
}

Status Spool::read(uint64_t offset, void* out, size_t len) const {
  if (offset > size_ || len > size_ - offset) return make_error(ErrorKind::kInternal, "spool read out of range");
  return pread_exact(fd_.get(), out, len, offset);
}

Node::~Node() {
  // Children are moved to a work list and their own children taken out
  // before they go, so no destructor ever runs another one below it. A
  // node still shared (a hard-linked file, a walk in progress) is only
  // released: it has no children or is someone else's to free.
  if (children.empty()) return;
  std::vector<std::shared_ptr<Node>> pending;
  for (auto& [name, c] : children) pending.push_back(std::move(c));
  children.clear();
  while (!pending.empty()) {
    std::shared_ptr<Node> n = std::move(pending.back());
    pending.pop_back();
    if (n && n.use_count() == 1) {
      for (auto& [name, c] : n->children) pending.push_back(std::move(c));
      n->children.clear();
    }
  }
}

Tree::Tree(Spool spool, Limits limits)
    : spool_(std::move(spool)), limits_(limits), root_(std::make_shared<Node>()) {
  spool_.set_limit(limits_.max_bytes);
  root_->kind = Node::Kind::kDir;
  root_->mode = 0755;
}

Status Tree::count_entry() {
  if (++entries_ > limits_.max_entries)
    return over_limit("more than " + std::to_string(limits_.max_entries) + " entries", "--max-entries");
  return ok_status();
}

Status Tree::count_stream(uint64_t bytes) {
  streamed_ += bytes;
  if (streamed_ > limits_.max_bytes)
    return over_limit("layers decompress to more than " + limit_text(limits_.max_bytes), "--max-image-size");
  return ok_status();
}

Status Tree::check_depth(size_t depth, std::string_view path) const {
  if (depth <= limits_.max_depth) return ok_status();
  std::string shown(path.substr(0, 64));
  return over_limit(strfmt("%s... lies more than %u directories deep", shown.c_str(), limits_.max_depth),
                    "--max-path-depth");
}

Status Tree::check_path_length(std::string_view what, std::string_view path) const {
  if (path.size() <= limits_.max_path_length) return ok_status();
  std::string shown(path.substr(0, 64));
  return over_limit(strfmt("%.*s %s... is longer than %u bytes", static_cast<int>(what.size()), what.data(),
                           shown.c_str(), limits_.max_path_length),
                    "--max-path-length");
}

Result<std::string> normalize_path(std::string_view path) {
  std::string out;
  for (const auto& part : split(path, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") return make_error(ErrorKind::kCorrupt, "path climbs out of the root: " + std::string(path));
    if (!out.empty()) out += '/';
    out += part;
  }
  return out;
}

namespace {
std::vector<std::string> components(std::string_view path) {
  std::vector<std::string> out;
  for (auto& p : split(path, '/'))
    if (!p.empty() && p != ".") out.push_back(p);
  return out;
}
}  // namespace

std::shared_ptr<Node> Tree::walk(std::vector<std::string> parts, bool follow_last, uint32_t create_layer,
                                 size_t* depth) const {
  // The directories from the root to where we are: a relative symlink
  // target starts from the top of the stack, ".." pops (never past the
  // root), an absolute target starts again from the root.
  std::vector<std::shared_ptr<Node>> stack = {root_};
  std::deque<std::string> queue(parts.begin(), parts.end());
  int links = 0;
  while (!queue.empty()) {
    std::string p = std::move(queue.front());
    queue.pop_front();
    if (p == "..") {
      if (stack.size() > 1) stack.pop_back();
      continue;
    }
    std::shared_ptr<Node> cur = stack.back();
    if (cur->kind != Node::Kind::kDir) return nullptr;
    auto it = cur->children.find(p);
    if (it == cur->children.end()) {
      if (!create_layer) return nullptr;
      auto n = std::make_shared<Node>();
      n->kind = Node::Kind::kDir;
      n->mode = 0755;
      n->layer = create_layer;
      cur->children[p] = n;
      stack.push_back(n);
      continue;
    }
    std::shared_ptr<Node> next = it->second;
    bool last = queue.empty();
    if (next->kind == Node::Kind::kSymlink && (!last || follow_last)) {
      if (++links > 40) return nullptr;  // a loop
      auto target = components(next->target);
      if (!next->target.empty() && next->target[0] == '/') stack.resize(1);
      queue.insert(queue.begin(), target.begin(), target.end());
      continue;
    }
    stack.push_back(next);
  }
  if (depth) *depth = stack.size() - 1;
  return stack.back();
}

std::shared_ptr<Node> Tree::lookup(std::string_view path, bool follow_last) const {
  return walk(components(path), follow_last, 0, nullptr);
}

std::shared_ptr<Node> Tree::parent_of(std::string_view path, std::string* name, uint32_t layer, size_t* depth) {
  auto parts = components(path);
  if (parts.empty()) return nullptr;
  *name = parts.back();
  parts.pop_back();
  auto dir = walk(parts, true, layer == 0 ? 1 : layer, depth);
  if (!dir || dir->kind != Node::Kind::kDir) return nullptr;
  return dir;
}

Tree::Stats Tree::stats() const {
  Stats s;
  std::vector<const Node*> dirs = {root_.get()};
  while (!dirs.empty()) {
    const Node* n = dirs.back();
    dirs.pop_back();
    for (const auto& [name, c] : n->children) {
      switch (c->kind) {
        case Node::Kind::kFile:
          s.files++;
          s.bytes += c->size;
          break;
        case Node::Kind::kDir:
          s.dirs++;
          dirs.push_back(c.get());
          break;
        case Node::Kind::kSymlink: s.symlinks++; break;
        default: s.other++; break;
      }
    }
  }
  return s;
}

}  // namespace spore::pack
