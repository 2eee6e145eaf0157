// spore-testbed-probe: the program tests/testbed/selftest.sh runs inside a
// testbed to see what a command started there gets. It proves that the
// project's binaries for the testbed's architecture are on PATH and run, and
// reports its arguments byte for byte:
//
//   stdout: "spore-testbed-probe MACHINE\n", then every argument followed
//           by a NUL byte
//   stderr: "spore-testbed-probe: N arguments\n"
//   exit status 0 (1 if a write failed)
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace {

bool write_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  struct utsname u {};
  if (::uname(&u) != 0) return 1;
  std::string out = std::string("spore-testbed-probe ") + u.machine + "\n";
  for (int i = 1; i < argc; i++) {
    out.append(argv[i], std::strlen(argv[i]));
    out.push_back('\0');
  }
  std::string err = "spore-testbed-probe: " + std::to_string(argc - 1) + " arguments\n";
  return write_all(STDOUT_FILENO, out) && write_all(STDERR_FILENO, err) ? 0 : 1;
}
