#include "base/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>

#include <vector>

#include "base/fd.h"
#include "base/strings.h"

namespace spore {

bool path_exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

bool is_dir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_empty_dir(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (!d) return false;
  bool empty = true;
  while (dirent* e = ::readdir(d)) {
    if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") {
      empty = false;
      break;
    }
  }
  ::closedir(d);
  return empty;
}

Status make_dirs(const std::string& path, mode_t mode) {
  std::string cur;
  for (const auto& part : split(path, '/')) {
    cur += part;
    if (!cur.empty() && ::mkdir(cur.c_str(), mode) < 0 && errno != EEXIST) return errno_error("mkdir " + cur);
    cur += '/';
  }
  return ok_status();
}

Status make_private_dir(const std::string& path) {
  SPORE_TRY(make_dirs(path, 0700));
  struct stat st;
  if (::stat(path.c_str(), &st) < 0) return errno_error(path);
  if (!S_ISDIR(st.st_mode)) return make_error(ErrorKind::kUnavailable, path + " is not a directory");
  if (st.st_uid != ::geteuid())
    return make_error(ErrorKind::kUnavailable,
                      strfmt("%s is owned by uid %u, not by you (uid %u); refusing to use it", path.c_str(),
                             static_cast<unsigned>(st.st_uid), static_cast<unsigned>(::geteuid())));
  if (st.st_mode & 022)
    return make_error(ErrorKind::kUnavailable,
                      strfmt("%s is writable by other users (mode %03o); refusing to use it (chmod go-w)",
                             path.c_str(), static_cast<unsigned>(st.st_mode & 0777)));
  return ok_status();
}

Status remove_tree(const std::string& path) {
  if (!path_exists(path)) return ok_status();
  int r = ::nftw(
      path.c_str(),
      [](const char* p, const struct stat*, int type, FTW*) {
        int rc = type == FTW_DP ? ::rmdir(p) : ::unlink(p);
        return rc < 0 && errno != ENOENT ? -1 : 0;
      },
      64, FTW_DEPTH | FTW_PHYS);
  if (r < 0) return errno_error("removing " + path);
  return ok_status();
}

std::string absolute_path(const std::string& path) {
  std::string base;
  if (path.empty() || path[0] != '/') {
    char cwd[PATH_MAX];
    if (::getcwd(cwd, sizeof cwd)) base = cwd;
  }
  std::vector<std::string> parts;
  for (const auto& p : split(base + "/" + path, '/')) {
    if (p.empty() || p == ".") continue;
    if (p == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.push_back(p);
  }
  std::string out;
  for (const auto& p : parts) out += "/" + p;
  return out.empty() ? "/" : out;
}

std::string relative_path(const std::string& to, const std::string& from) {
  auto a = split(absolute_path(to), '/'), b = split(absolute_path(from), '/');
  auto clean = [](std::vector<std::string>& v) {
    std::vector<std::string> out;
    for (auto& s : v)
      if (!s.empty()) out.push_back(s);
    v = out;
  };
  clean(a);
  clean(b);
  size_t common = 0;
  while (common < a.size() && common < b.size() && a[common] == b[common]) common++;
  std::string out;
  for (size_t i = common; i < b.size(); i++) out += out.empty() ? ".." : "/..";
  for (size_t i = common; i < a.size(); i++) out += (out.empty() ? "" : "/") + a[i];
  return out.empty() ? "." : out;
}

Status copy_file(const std::string& from, const std::string& to, mode_t mode) {
  SPORE_ASSIGN_OR_RETURN(UniqueFd in, open_file(from, O_RDONLY));
  SPORE_ASSIGN_OR_RETURN(UniqueFd out, create_new_file(to, mode));
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(in.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(from);
    if (n == 0) return ok_status();
    SPORE_TRY(write_all(out.get(), buf, static_cast<size_t>(n)));
  }
}

std::string temp_name_for(const std::string& path) {
  uint8_t r[8];
  if (::getrandom(r, sizeof r, 0) != static_cast<ssize_t>(sizeof r)) {
    // No entropy source: still unique (O_EXCL catches the rest), if guessable.
    uint64_t v = static_cast<uint64_t>(::getpid()) << 32 ^ static_cast<uint64_t>(std::time(nullptr)) ^
                 reinterpret_cast<uintptr_t>(&r);
    std::memcpy(r, &v, sizeof r);
  }
  return path + ".tmp-" + to_hex(r, sizeof r);
}

Result<UniqueFd> create_new_file(const std::string& path, mode_t mode) {
  return open_file(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
}

Status write_file_atomic(const std::string& path, const std::string& data, mode_t mode) {
  std::string tmp = temp_name_for(path);
  {
    SPORE_ASSIGN_OR_RETURN(UniqueFd fd, create_new_file(tmp, mode));
    auto s = write_all(fd.get(), data.data(), data.size());
    if (!s.ok()) {
      ::unlink(tmp.c_str());
      return s;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) < 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return errno_error("rename " + tmp, e);
  }
  return ok_status();
}

}  // namespace spore
