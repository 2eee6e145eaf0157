#include "packer/source/docker_archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "base/sha256.h"
#include "base/strings.h"
#include "packer/source/manifest.h"
#include "packer/source/oci_layout.h"
#include "packer/source/reference.h"
#include "packer/tree.h"

namespace spore::pack {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxJsonBytes = 32 << 20;
constexpr const char* kDockerLayerType = "application/vnd.docker.image.rootfs.diff.tar";

bool is_file(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

struct Member {
  std::string digest;  // "sha256:<hex>" of its content
  uint64_t size = 0;
  bool compressed = false;  // gzip, zstd, xz or bzip2 magic at the start
};

bool compressed_magic(const uint8_t* p, size_t n) {
  auto is = [&](std::initializer_list<uint8_t> m) {
    if (n < m.size()) return false;
    size_t i = 0;
    for (uint8_t b : m)
      if (p[i++] != b) return false;
    return true;
  };
  return is({0x1f, 0x8b}) || is({0x28, 0xb5, 0x2f, 0xfd}) || is({0xfd, '7', 'z', 'X', 'Z', 0}) || is({'B', 'Z', 'h'});
}

// "a/b" joined with a link target, lexically; nullopt if it climbs out.
std::optional<std::string> resolve_link(const std::string& member, const std::string& target) {
  if (target.empty() || target[0] == '/') return std::nullopt;
  std::vector<std::string> parts = split(member, '/');
  parts.pop_back();
  for (const auto& p : split(target, '/')) {
    if (p.empty() || p == ".") continue;
    if (p == "..") {
      if (parts.empty()) return std::nullopt;
      parts.pop_back();
    } else {
      parts.push_back(p);
    }
  }
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : "/") + p;
  return out;
}

struct ArchiveCloser {
  void operator()(archive* a) const { archive_read_free(a); }
};

class Extractor {
 public:
  Extractor(std::string file, std::string dest, const Limits& limits)
      : file_(std::move(file)), dest_(std::move(dest)), limits_(limits) {}

  // Writes regular members under dest_ (real directories only: links are
  // resolved afterwards, lexically, so nothing can point outside).
  Status run() {
    std::unique_ptr<archive, ArchiveCloser> a(archive_read_new());
    archive_read_support_filter_gzip(a.get());
    archive_read_support_filter_zstd(a.get());
    archive_read_support_filter_xz(a.get());
    archive_read_support_format_tar(a.get());
    if (archive_read_open_filename(a.get(), file_.c_str(), 1 << 16) != ARCHIVE_OK) return fail(a.get(), "opening");
    std::vector<std::pair<std::string, std::string>> links;  // member -> target member
    for (;;) {
      archive_entry* e = nullptr;
      int r = archive_read_next_header(a.get(), &e);
      if (r == ARCHIVE_EOF) break;
      if (r < ARCHIVE_WARN) return fail(a.get(), "reading");
      // The archive is untrusted: its unpacked size and member count are
      // capped like the layers' (a compressed archive can be a bomb).
      if (++members_read_ > limits_.max_entries)
        return make_error(ErrorKind::kCorrupt, strfmt("%s: more than %llu members (spore-pack --max-entries raises "
                                                      "the limit for an archive you trust)",
                                                      file_.c_str(), static_cast<unsigned long long>(limits_.max_entries)));
      const char* raw = archive_entry_pathname(e);
      auto path = normalize_path(raw ? raw : "");
      if (!path.ok() || path->empty()) {
        if (!path.ok())
          return make_error(ErrorKind::kCorrupt,
                            file_ + ": member \"" + (raw ? raw : "") + "\" climbs out of the archive");
        continue;
      }
      if (const char* hl = archive_entry_hardlink(e)) {
        auto t = normalize_path(hl);
        if (!t.ok())
          return make_error(ErrorKind::kCorrupt, file_ + ": link \"" + *path + "\" climbs out of the archive");
        links.emplace_back(*path, *t);
        continue;
      }
      switch (archive_entry_filetype(e)) {
        case AE_IFDIR: SPORE_TRY(make_dirs(*path, true)); break;
        case AE_IFREG: SPORE_TRY(write_member(a.get(), *path)); break;
        case AE_IFLNK: {
          // Classic `docker save` links a repeated layer to its first copy.
          const char* target = archive_entry_symlink(e);
          auto resolved = resolve_link(*path, target ? target : "");
          if (!resolved)
            return make_error(ErrorKind::kCorrupt, file_ + ": link \"" + *path + "\" points outside the archive");
          links.emplace_back(*path, *resolved);
          break;
        }
        default: break;  // nothing else belongs in a docker archive
      }
    }
    // Links to links resolve over a few rounds; what is left dangles.
    for (int round = 0; round < 8 && !links.empty(); round++) {
      std::vector<std::pair<std::string, std::string>> pending;
      for (auto& [from, to] : links) {
        auto it = members_.find(to);
        if (it == members_.end()) {
          pending.emplace_back(from, to);
          continue;
        }
        SPORE_TRY(make_dirs(from, false));
        std::string src = dest_ + "/" + to, dst = dest_ + "/" + from;
        ::unlink(dst.c_str());
        if (::link(src.c_str(), dst.c_str()) < 0) return errno_error("linking " + dst);
        members_[from] = it->second;
      }
      links = std::move(pending);
    }
    return ok_status();
  }

  const std::map<std::string, Member>& members() const { return members_; }

 private:
  Error fail(archive* a, const char* what) {
    const char* msg = archive_error_string(a);
    return make_error(ErrorKind::kCorrupt, file_ + ": " + what + ": " + (msg ? msg : "not a tar archive"));
  }

  // Creates the directories leading to path (and path itself with self).
  Status make_dirs(const std::string& path, bool self) {
    auto parts = split(path, '/');
    if (!self) parts.pop_back();
    std::string at = dest_;
    for (const auto& p : parts) {
      at += "/" + p;
      if (::mkdir(at.c_str(), 0755) < 0 && errno != EEXIST) return errno_error("creating " + at);
    }
    return ok_status();
  }

  Status write_member(archive* a, const std::string& path) {
    SPORE_TRY(make_dirs(path, false));
    std::string out = dest_ + "/" + path;
    SPORE_ASSIGN_OR_RETURN(UniqueFd fd, open_file(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
    Sha256 h;
    Member m;
    uint8_t head[8] = {};
    size_t head_len = 0;
    for (;;) {
      const void* buf = nullptr;
      size_t len = 0;
      la_int64_t off = 0;
      int r = archive_read_data_block(a, &buf, &len, &off);
      if (r == ARCHIVE_EOF) break;
      if (r < ARCHIVE_WARN) return fail(a, ("reading " + path).c_str());
      if (static_cast<uint64_t>(off) != m.size)
        return make_error(ErrorKind::kCorrupt, file_ + ": " + path + " is sparse; docker archives are not");
      while (head_len < sizeof head && head_len < m.size + len) {
        head[head_len] = static_cast<const uint8_t*>(buf)[head_len - m.size];
        head_len++;
      }
      unpacked_ += len;
      if (unpacked_ > limits_.max_bytes)
        return make_error(ErrorKind::kCorrupt,
                          strfmt("%s: unpacks to more than %llu bytes (spore-pack --max-image-size raises the limit "
                                 "for an archive you trust)",
                                 file_.c_str(), static_cast<unsigned long long>(limits_.max_bytes)));
      SPORE_TRY(write_all(fd.get(), buf, len));
      Progress::get().advance(len);
      h.update(buf, len);
      m.size += len;
    }
    m.digest = "sha256:" + digest_hex(h.finish());
    m.compressed = compressed_magic(head, head_len);
    members_[path] = m;
    return ok_status();
  }

  std::string file_, dest_;
  Limits limits_;
  uint64_t unpacked_ = 0, members_read_ = 0;
  std::map<std::string, Member> members_;
};

// The digest a member's name promises: blobs/sha256/<hex> or <hex>.json.
std::string digest_from_name(const std::string& path) {
  std::string hex;
  if (starts_with(path, "blobs/sha256/"))
    hex = path.substr(13);
  else if (path.size() == 64 + 5 && path.substr(64) == ".json")
    hex = path.substr(0, 64);
  std::string d = "sha256:" + hex;
  return is_sha256_digest(d) ? d : "";
}

struct Entry {
  std::string config;
  std::vector<std::string> tags;
  std::vector<std::string> layers;
};

Result<std::vector<Entry>> parse_archive_manifest(const std::string& text, const std::string& what) {
  json j = json::parse(text, nullptr, false);
  if (!j.is_array()) return make_error(ErrorKind::kCorrupt, what + ": manifest.json is not a list");
  std::vector<Entry> out;
  for (const auto& e : j) {
    if (!e.is_object() || !e.contains("Config") || !e["Config"].is_string() || !e.contains("Layers") ||
        !e["Layers"].is_array())
      return make_error(ErrorKind::kCorrupt, what + ": manifest.json entry without Config and Layers");
    Entry en;
    en.config = e["Config"].get<std::string>();
    if (e.contains("RepoTags") && e["RepoTags"].is_array())
      for (const auto& t : e["RepoTags"])
        if (t.is_string()) en.tags.push_back(t.get<std::string>());
    for (const auto& l : e["Layers"]) {
      if (!l.is_string())
        return make_error(ErrorKind::kCorrupt, what + ": manifest.json lists a layer that is not a path");
      en.layers.push_back(l.get<std::string>());
    }
    out.push_back(std::move(en));
  }
  if (out.empty()) return make_error(ErrorKind::kNotFound, what + ": the archive holds no images");
  return out;
}

bool tag_matches(const std::string& have, const std::string& want) {
  if (have == want) return true;
  auto a = parse_reference(have), b = parse_reference(want);
  return a.ok() && b.ok() && a->str() == b->str();
}

Result<const Entry*> select_entry(const std::vector<Entry>& entries, const std::string& selector,
                                  const std::string& what) {
  std::string all;
  for (size_t i = 0; i < entries.size(); i++) {
    std::string tags;
    for (const auto& t : entries[i].tags) tags += (tags.empty() ? "" : " ") + t;
    all += strfmt("%s@%zu%s%s", all.empty() ? "" : ", ", i, tags.empty() ? "" : " ", tags.c_str());
  }
  if (selector.empty()) {
    if (entries.size() == 1) return &entries[0];
    return make_error(ErrorKind::kUsage, what + ": the archive holds " + std::to_string(entries.size()) +
                                             " images; pick one as docker-archive:FILE:NAME:TAG or FILE:@N (" + all +
                                             ")");
  }
  if (selector[0] == '@') {
    auto n = parse_u64(std::string_view(selector).substr(1));
    if (n && *n < entries.size()) return &entries[*n];
  } else {
    for (const auto& e : entries)
      for (const auto& t : e.tags)
        if (tag_matches(t, selector)) return &e;
  }
  return make_error(ErrorKind::kNotFound, what + ": no image \"" + selector + "\" in the archive (" + all + ")");
}

}  // namespace

void split_archive_arg(const std::string& arg, std::string* file, std::string* selector) {
  *file = arg;
  selector->clear();
  if (is_file(arg)) return;
  for (size_t colon = arg.find(':'); colon != std::string::npos; colon = arg.find(':', colon + 1)) {
    if (is_file(arg.substr(0, colon))) {
      *file = arg.substr(0, colon);
      *selector = arg.substr(colon + 1);
      return;
    }
  }
}

Result<Image> open_docker_archive(const std::string& file, const std::string& selector, const std::string& original,
                                  const SourceOptions& opts) {
  const std::string& what = original;
  SPORE_ASSIGN_OR_RETURN(Platform want, parse_platform(opts.platform));
  if (!is_file(file)) return make_error(ErrorKind::kNotFound, what + ": " + file + " is not a file");
  if (opts.work_dir.empty())
    return make_error(ErrorKind::kInternal, what + ": unpacking a docker archive needs a work directory");
  std::string dest = opts.work_dir + "/docker-archive-XXXXXX";
  if (!::mkdtemp(dest.data())) return errno_error("creating a directory in " + opts.work_dir);

  Progress& progress = Progress::get();
  struct stat st {};
  ::stat(file.c_str(), &st);
  progress.start("unpacking " + file, static_cast<uint64_t>(st.st_size));
  Extractor ex(file, dest, opts.limits);
  Status unpacked = ex.run();
  progress.finish(unpacked.ok() ? "done" : "failed");
  SPORE_TRY(unpacked);
  const auto& members = ex.members();

  if (!members.count("manifest.json")) {
    if (members.count("index.json")) return open_oci_layout(dest, selector, original, opts);
    return make_error(ErrorKind::kCorrupt, what + ": not a docker archive (no manifest.json or index.json)");
  }
  SPORE_ASSIGN_OR_RETURN(std::string manifest_text, read_file(dest + "/manifest.json", kMaxJsonBytes));
  SPORE_ASSIGN_OR_RETURN(std::vector<Entry> entries, parse_archive_manifest(manifest_text, what));
  SPORE_ASSIGN_OR_RETURN(const Entry* entry, select_entry(entries, selector, what));

  auto member = [&](const std::string& raw) -> Result<std::pair<std::string, Member>> {
    auto path = normalize_path(raw);
    if (!path.ok() || !members.count(*path))
      return make_error(ErrorKind::kCorrupt, what + ": manifest.json names \"" + raw + "\", which the archive lacks");
    const Member& m = members.at(*path);
    std::string promised = digest_from_name(*path);
    if (!promised.empty() && promised != m.digest)
      return make_error(ErrorKind::kCorrupt, what + ": " + *path + " does not match its digest (got " + m.digest + ")");
    return std::make_pair(*path, m);
  };

  SPORE_ASSIGN_OR_RETURN(auto config_member, member(entry->config));
  SPORE_ASSIGN_OR_RETURN(std::string config_text, read_file(dest + "/" + config_member.first, kMaxJsonBytes));
  std::vector<std::string> diff_ids;
  auto config = parse_image_config(config_text, &diff_ids);
  if (!config.ok()) return std::move(config).error().wrap(what);
  Image image;
  image.reference = original;
  image.config = std::move(*config);
  SPORE_TRY(check_config_platform(image.config, want, what));
  if (!diff_ids.empty() && diff_ids.size() != entry->layers.size())
    return make_error(ErrorKind::kCorrupt, strfmt("%s: the config lists %zu layers, manifest.json %zu", what.c_str(),
                                                  diff_ids.size(), entry->layers.size()));
  for (size_t i = 0; i < entry->layers.size(); i++) {
    SPORE_ASSIGN_OR_RETURN(auto layer, member(entry->layers[i]));
    const Member& m = layer.second;
    // An uncompressed layer's digest is its diff_id: the config vouches for it.
    if (!m.compressed && i < diff_ids.size() && diff_ids[i] != m.digest)
      return make_error(ErrorKind::kCorrupt,
                        strfmt("%s: layer %zu (%s) does not match the config's diff_id %s (got %s)", what.c_str(),
                               i + 1, layer.first.c_str(), diff_ids[i].c_str(), m.digest.c_str()));
    image.layers.push_back(
        LayerBlob{dest + "/" + layer.first, kDockerLayerType, m.digest, m.size, layer_diff_id(diff_ids, i, m.digest)});
  }
  return image;
}

}  // namespace spore::pack
