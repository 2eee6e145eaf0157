// Little-endian binary encoding shared by every spore format (the agent
// protocol, spore state, bundles). The decoder bounds-checks every read and
// latches failure, so parsers of hostile input check once at the end.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace spore {

inline constexpr uint32_t kMaxCodecListEntries = 65536;

// Appends little-endian encodings.
class Encoder {
 public:
  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u16(uint16_t v);
  void u32(uint32_t v);
  void u64(uint64_t v);
  void str(std::string_view s);
  void strs(const std::vector<std::string>& v);
  void bytes(const void* data, size_t len) { out_.append(static_cast<const char*>(data), len); }
  size_t size() const { return out_.size(); }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

// Reads them back with bounds checks; any overrun latches failure.
class Decoder {
 public:
  explicit Decoder(std::string_view in) : in_(in) {}
  uint8_t u8();
  uint16_t u16();
  uint32_t u32();
  uint64_t u64();
  std::string str();
  std::vector<std::string> strs();
  // Copies exactly len raw bytes (fails if fewer remain).
  bool bytes(void* out, size_t len);
  // A view of the next len bytes, advancing past them (empty on failure).
  std::string_view view(size_t len);
  size_t remaining() const { return ok_ ? in_.size() - pos_ : 0; }
  // True when every read fit and all input was consumed.
  bool done() const { return ok_ && pos_ == in_.size(); }
  bool ok() const { return ok_; }

 private:
  bool take(size_t n);
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace spore
