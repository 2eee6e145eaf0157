// Filesystem helpers over POSIX calls (std::filesystem costs the static
// stub a few hundred KiB).
#pragma once

#include <string>

#include "base/fd.h"
#include "base/result.h"

namespace spore {

bool path_exists(const std::string& path);
bool is_dir(const std::string& path);
// True for a directory with no entries (false if it cannot be read).
bool is_empty_dir(const std::string& path);
// mkdir -p with mode for the directories it creates.
Status make_dirs(const std::string& path, mode_t mode = 0755);
// mkdir -p path (new directories 0700), then checks that path is private to
// this user: a directory (symlinks to one are followed) owned by the
// effective uid, writable by nobody else. Other local users must not be able
// to plant or swap files in caches and runtime directories we trust.
Status make_private_dir(const std::string& path);
// rm -rf: no error if it does not exist; symlinks are removed, not followed.
Status remove_tree(const std::string& path);
// Absolute, lexically normalised (no ".", "..", "//"); symlinks untouched.
std::string absolute_path(const std::string& path);
// A relative path from directory `from` to `to` (both made absolute first).
std::string relative_path(const std::string& to, const std::string& from);
// Creates `to` (O_EXCL: fails if anything, a symlink included, is there).
Status copy_file(const std::string& from, const std::string& to, mode_t mode = 0644);
// path + ".tmp-" + 16 random hex digits: a temporary name beside path that
// another user cannot predict, so cannot plant a link at.
std::string temp_name_for(const std::string& path);
// Opens a new file for writing: O_CREAT|O_EXCL|O_NOFOLLOW, never an
// existing file or a link's target.
Result<UniqueFd> create_new_file(const std::string& path, mode_t mode);
// Writes data to path through a temporary name and rename.
Status write_file_atomic(const std::string& path, const std::string& data, mode_t mode = 0644);

}  // namespace spore
