#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "base/strings.h"
#include "packer/image.h"
#include "packer/source/manifest.h"

namespace spore::pack {
namespace {

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

// Lines longer than the terminal wrap, and "\r" then only rewinds the last
// row; so the in-place line is cut to the width.
size_t terminal_width() {
  struct winsize ws {};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10) return ws.ws_col;
  return 80;
}

void put(const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::write(STDERR_FILENO, s.data() + done, s.size() - done);
    if (n <= 0) return;  // progress is best effort
    done += static_cast<size_t>(n);
  }
}

}  // namespace

Progress& Progress::get() {
  static Progress p;
  return p;
}

Progress::Progress() : enabled_(::isatty(STDERR_FILENO) == 1) {}

void Progress::start(const std::string& what, uint64_t total_bytes) {
  what_ = what;
  total_ = total_bytes;
  done_ = 0;
  last_draw_ms_ = 0;
  draw(false);
}

void Progress::advance(uint64_t bytes) {
  done_ += bytes;
  // Ten redraws a second are smooth enough and cost nothing on a fast pull.
  if (now_ms() - last_draw_ms_ >= 100) draw(false);
}

void Progress::finish(const std::string& note) {
  if (what_.empty()) return;
  // The permanent line: "what  note  12.3 MiB".
  if (!note.empty()) what_ += "  " + note;
  draw(true);
  what_.clear();
}

void Progress::note(const std::string& line) {
  if (!enabled_) return;
  put("\r\033[K" + line + "\n");
  if (!what_.empty()) draw(false);
}

void Progress::draw(bool final) {
  last_draw_ms_ = now_ms();
  if (!enabled_ || what_.empty()) return;
  std::string line = what_ + "  " + human_bytes(done_);
  if (final) {
    put("\r\033[K" + line + "\n");
    return;
  }
  if (total_) line += " / " + human_bytes(total_);
  size_t width = terminal_width() - 1;
  if (line.size() > width) line.resize(width);
  put("\r\033[K" + line);
}

}  // namespace spore::pack
