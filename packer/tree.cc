#include "packer/tree.h"

#include <fcntl.h>
#include <unistd.h>

#include <deque>
#include <functional>

#include "base/strings.h"

namespace spore::pack {

Result<Spool> Spool::create(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    // Filesystems without O_TMPFILE: a named file, unlinked at once.
    std::string tmpl = dir + "/spore-spool-XXXXXX";
    fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
    if (fd < 0) return errno_error("creating a spool file in " + dir);
    ::unlink(tmpl.c_str());
  }
  Spool s;
  s.fd_.reset(fd);
  return s;
}

Result<uint64_t> Spool::append(const void* data, size_t len) {
  uint64_t at = size_;
  const auto* p = static_cast<const uint8_t*>(data);
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pwrite(fd_.get(), p + done, len - done, static_cast<off_t>(size_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return errno_error("writing the spool file");
    done += static_cast<size_t>(n);
  }
  size_ += len;
  return at;
}

Status Spool::read(uint64_t offset, void* out, size_t len) const {
  if (offset > size_ || len > size_ - offset) return make_error(ErrorKind::kInternal, "spool read out of range");
  return pread_exact(fd_.get(), out, len, offset);
}

Tree::Tree(Spool spool) : spool_(std::move(spool)), root_(std::make_shared<Node>()) {
  root_->kind = Node::Kind::kDir;
  root_->mode = 0755;
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

std::shared_ptr<Node> Tree::walk(std::vector<std::string> parts, bool follow_last, uint32_t create_layer) const {
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
  return stack.back();
}

std::shared_ptr<Node> Tree::lookup(std::string_view path, bool follow_last) const {
  return walk(components(path), follow_last, 0);
}

std::shared_ptr<Node> Tree::parent_of(std::string_view path, std::string* name, uint32_t layer) {
  auto parts = components(path);
  if (parts.empty()) return nullptr;
  *name = parts.back();
  parts.pop_back();
  auto dir = walk(parts, true, layer == 0 ? 1 : layer);
  if (!dir || dir->kind != Node::Kind::kDir) return nullptr;
  return dir;
}

Tree::Stats Tree::stats() const {
  Stats s;
  std::function<void(const Node&)> walk = [&](const Node& n) {
    for (const auto& [name, c] : n.children) {
      switch (c->kind) {
        case Node::Kind::kFile:
          s.files++;
          s.bytes += c->size;
          break;
        case Node::Kind::kDir:
          s.dirs++;
          walk(*c);
          break;
        case Node::Kind::kSymlink: s.symlinks++; break;
        default: s.other++; break;
      }
    }
  };
  walk(*root_);
  return s;
}

}  // namespace spore::pack
