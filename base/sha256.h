// SHA-256 for content addressing and verification.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace spore {

using Digest = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t len);
  // The digest; the object must not be updated afterwards.
  Digest finish();

 private:
  uint32_t state_[8];
  uint8_t buf_[64];
  size_t buffered_ = 0;
  uint64_t total_ = 0;
};

Digest sha256(const void* data, size_t len);
inline Digest sha256(std::string_view s) { return sha256(s.data(), s.size()); }
std::string digest_hex(const Digest& d);
std::optional<Digest> parse_digest_hex(std::string_view hex);
// Streams a whole file through SHA-256.
Result<Digest> sha256_file(const std::string& path);

}  // namespace spore
