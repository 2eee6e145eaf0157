#include "base/codec.h"

#include <cstring>

namespace spore {

void Encoder::u16(uint16_t v) {
  u8(static_cast<uint8_t>(v));
  u8(static_cast<uint8_t>(v >> 8));
}
void Encoder::u32(uint32_t v) {
  u16(static_cast<uint16_t>(v));
  u16(static_cast<uint16_t>(v >> 16));
}
void Encoder::u64(uint64_t v) {
  u32(static_cast<uint32_t>(v));
  u32(static_cast<uint32_t>(v >> 32));
}
void Encoder::str(std::string_view s) {
  u32(static_cast<uint32_t>(s.size()));
  out_.append(s);
}
void Encoder::strs(const std::vector<std::string>& v) {
  u32(static_cast<uint32_t>(v.size()));
  for (const auto& s : v) str(s);
}

bool Decoder::take(size_t n) {
  if (!ok_ || in_.size() - pos_ < n) {
    ok_ = false;
    return false;
  }
  return true;
}
uint8_t Decoder::u8() {
  if (!take(1)) return 0;
  return static_cast<uint8_t>(in_[pos_++]);
}
uint16_t Decoder::u16() {
  uint16_t lo = u8();
  uint16_t hi = u8();
  return static_cast<uint16_t>(lo | (hi << 8));
}
uint32_t Decoder::u32() {
  uint32_t lo = u16();
  uint32_t hi = u16();
  return lo | (hi << 16);
}
uint64_t Decoder::u64() {
  uint64_t lo = u32();
  uint64_t hi = u32();
  return lo | (hi << 32);
}
std::string Decoder::str() {
  uint32_t n = u32();
  if (!take(n)) return {};
  std::string s(in_.substr(pos_, n));
  pos_ += n;
  return s;
}
std::vector<std::string> Decoder::strs() {
  uint32_t n = u32();
  // Each entry costs at least its 4-byte length: reject counts the input cannot hold
  // before reserving anything.
  if (!ok_ || n > kMaxCodecListEntries || n > (in_.size() - pos_) / 4) {
    ok_ = false;
    return {};
  }
  std::vector<std::string> v;
  v.reserve(n);
  for (uint32_t i = 0; i < n && ok_; i++) v.push_back(str());
  return v;
}

bool Decoder::bytes(void* out, size_t len) {
  if (!take(len)) return false;
  std::memcpy(out, in_.data() + pos_, len);
  pos_ += len;
  return true;
}

std::string_view Decoder::view(size_t len) {
  if (!take(len)) return {};
  std::string_view v = in_.substr(pos_, len);
  pos_ += len;
  return v;
}

}  // namespace spore
