// What every fuzz target shares: a reader that turns the fuzzer's bytes into
// a harness's decisions, a private scratch directory for parsers that read
// files, and the seed corpus each target writes for itself.
//
// A target is one file, fuzz/NAME.cc, that defines
//   extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
//   void spore::fuzz::write_seeds(spore::fuzz::Seeds& seeds);
// `fuzz_NAME --write-seeds DIR` writes the seeds into DIR and exits
// (scripts/fuzz.sh does that before every run); anything else goes to
// libFuzzer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace spore::fuzz {

// Consumes the input front to back. Past the end every read returns zeros
// (or empty), so a harness never needs to check; empty() says when to stop.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(data), n_(size) {}
  explicit Input(std::string_view s) : Input(reinterpret_cast<const uint8_t*>(s.data()), s.size()) {}

  bool empty() const { return n_ == 0; }
  size_t remaining() const { return n_; }

  uint8_t u8() { return static_cast<uint8_t>(take_le(1)); }
  uint16_t u16() { return static_cast<uint16_t>(take_le(2)); }
  uint32_t u32() { return static_cast<uint32_t>(take_le(4)); }
  uint64_t u64() { return take_le(8); }
  bool flag() { return u8() & 1; }
  // A value in [0, n) (n > 0), from as few bytes as it needs.
  uint32_t below(uint32_t n) { return n <= 256 ? u8() % n : n <= 65536 ? u16() % n : u32() % n; }
  // Up to n bytes (fewer at the end of the input).
  std::string bytes(size_t n) {
    size_t k = n < n_ ? n : n_;
    std::string s(reinterpret_cast<const char*>(p_), k);
    p_ += k;
    n_ -= k;
    return s;
  }
  // A length-prefixed (u8 or u16) string.
  std::string str8() { return bytes(u8()); }
  std::string str16() { return bytes(u16()); }
  std::string rest() { return bytes(n_); }

 private:
  uint64_t take_le(size_t k) {
    uint64_t v = 0;
    for (size_t i = 0; i < k && n_ > 0; i++, p_++, n_--) v |= static_cast<uint64_t>(*p_) << (8 * i);
    return v;
  }
  const uint8_t* p_;
  size_t n_;
};

// Builds inputs in the same encoding (for seeds).
class Output {
 public:
  Output& u8(uint8_t v) { return le(v, 1); }
  Output& u16(uint16_t v) { return le(v, 2); }
  Output& u32(uint32_t v) { return le(v, 4); }
  Output& u64(uint64_t v) { return le(v, 8); }
  Output& bytes(std::string_view s) {
    out_.append(s);
    return *this;
  }
  Output& str8(std::string_view s) { return u8(static_cast<uint8_t>(s.size())).bytes(s.substr(0, 255)); }
  Output& str16(std::string_view s) { return u16(static_cast<uint16_t>(s.size())).bytes(s.substr(0, 65535)); }
  const std::string& str() const { return out_; }

 private:
  Output& le(uint64_t v, size_t k) {
    for (size_t i = 0; i < k; i++) out_.push_back(static_cast<char>(v >> (8 * i)));
    return *this;
  }
  std::string out_;
};

// The seed files of one target.
class Seeds {
 public:
  explicit Seeds(std::string dir) : dir_(std::move(dir)) {}
  // Writes DIR/name (name: [a-z0-9_-]).
  void add(const std::string& name, std::string_view bytes);
  int count() const { return count_; }

 private:
  std::string dir_;
  int count_ = 0;
};

// Defined by each target.
void write_seeds(Seeds& seeds);

// A directory private to this process (0700, on /dev/shm when it is there,
// else $TMPDIR or /tmp), created on first use and removed at exit. Parsers
// that take paths read their input from files in it.
const std::string& scratch_dir();
// Writes bytes to scratch_dir()/name (replacing it) and returns the path.
std::string scratch_file(const std::string& name, std::string_view bytes);
// Empties a directory below scratch_dir() (creating it) and returns its path.
std::string fresh_scratch_subdir(const std::string& name);

// Aborts (a finding) with a message: for properties a harness checks beyond
// "does not crash", e.g. that what was parsed encodes back to what parses
// the same.
[[noreturn]] void fail(const char* what, const std::string& detail = "");
inline void check(bool ok, const char* what, const std::string& detail = "") {
  if (!ok) fail(what, detail);
}

}  // namespace spore::fuzz
