#include "fuzz/support/fuzz.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "base/fd.h"
#include "base/files.h"
#include "base/log.h"

namespace spore::fuzz {
namespace {

std::string g_scratch;

void remove_scratch() {
  if (!g_scratch.empty()) (void)remove_tree(g_scratch);
}

}  // namespace

void Seeds::add(const std::string& name, std::string_view bytes) {
  std::string path = dir_ + "/" + name;
  if (!write_file_atomic(path, std::string(bytes)).ok()) fail("cannot write seed", path);
  count_++;
}

const std::string& scratch_dir() {
  if (!g_scratch.empty()) return g_scratch;
  // scripts/fuzz.sh points SPORE_FUZZ_SCRATCH at a directory it removes
  // afterwards: a crash ends the process before atexit runs.
  std::string base;
  if (const char* s = std::getenv("SPORE_FUZZ_SCRATCH"); s && *s) base = s;
  else if (is_dir("/dev/shm") && ::access("/dev/shm", W_OK) == 0) base = "/dev/shm";
  else if (const char* t = std::getenv("TMPDIR"); t && *t) base = t;
  else base = "/tmp";
  std::string tmpl = base + "/spore-fuzz-XXXXXX";
  if (!::mkdtemp(tmpl.data())) fail("mkdtemp failed", tmpl);
  g_scratch = tmpl;
  std::atexit(remove_scratch);
  return g_scratch;
}

std::string scratch_file(const std::string& name, std::string_view bytes) {
  std::string path = scratch_dir() + "/" + name;
  ::unlink(path.c_str());
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd || !write_all(fd.get(), bytes.data(), bytes.size()).ok()) fail("cannot write scratch file", path);
  return path;
}

std::string fresh_scratch_subdir(const std::string& name) {
  std::string path = scratch_dir() + "/" + name;
  if (!remove_tree(path).ok() || ::mkdir(path.c_str(), 0700) != 0) fail("cannot make scratch directory", path);
  return path;
}

void fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz: %s%s%s\n", what, detail.empty() ? "" : ": ", detail.c_str());
  std::abort();
}

}  // namespace spore::fuzz

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  using namespace spore;
  // Guest- and image-triggerable warnings are the expected case here; keep
  // the fuzzer's output readable (SPORE_LOG=warn brings them back).
  if (!std::getenv("SPORE_LOG")) set_log_level(LogLevel::kError);
  // Harnesses write to socket ends whose peer may be gone.
  ::signal(SIGPIPE, SIG_IGN);
  for (int i = 1; i + 1 < *argc; i++) {
    if (std::string((*argv)[i]) != "--write-seeds") continue;
    std::string dir = (*argv)[i + 1];
    if (!make_dirs(dir, 0755).ok()) fuzz::fail("cannot create seed directory", dir);
    fuzz::Seeds seeds(dir);
    fuzz::write_seeds(seeds);
    std::printf("%d seeds in %s\n", seeds.count(), dir.c_str());
    std::exit(seeds.count() > 0 ? 0 : 1);
  }
  return 0;
}
