// SHA-256 (OpenSSL's libcrypto) for content addressing and verification.
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
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t len);
  Digest finish();

 private:
  void* ctx_;
};

Digest sha256(const void* data, size_t len);
inline Digest sha256(std::string_view s) { return sha256(s.data(), s.size()); }
std::string digest_hex(const Digest& d);
std::optional<Digest> parse_digest_hex(std::string_view hex);
// Streams a whole file through SHA-256.
Result<Digest> sha256_file(const std::string& path);

}  // namespace spore
