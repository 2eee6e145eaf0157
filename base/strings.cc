#include "base/strings.h"

#include <cstdarg>
#include <cstdio>

namespace spore {

std::string strfmt(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  int n = std::vsnprintf(nullptr, 0, fmt, ap);
  va_end(ap);
  std::string out;
  if (n > 0) {
    out.resize(static_cast<size_t>(n) + 1);
    std::vsnprintf(out.data(), out.size(), fmt, ap2);
    out.resize(static_cast<size_t>(n));
  }
  va_end(ap2);
  return out;
}

std::optional<uint64_t> parse_u64(std::string_view s) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

namespace {
std::pair<std::string_view, std::string_view> split_number(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') i++;
  return {s.substr(0, i), s.substr(i)};
}
}  // namespace

std::optional<uint64_t> parse_size(std::string_view s, uint64_t default_unit) {
  auto [num, suffix] = split_number(s);
  auto v = parse_u64(num);
  if (!v) return std::nullopt;
  uint64_t unit;
  if (suffix.empty()) unit = default_unit;
  else if (suffix == "k" || suffix == "K" || suffix == "KiB") unit = 1ull << 10;
  else if (suffix == "m" || suffix == "M" || suffix == "MiB") unit = 1ull << 20;
  else if (suffix == "g" || suffix == "G" || suffix == "GiB") unit = 1ull << 30;
  else if (suffix == "b" || suffix == "B") unit = 1;
  else return std::nullopt;
  if (*v > UINT64_MAX / unit) return std::nullopt;
  return *v * unit;
}

std::optional<uint64_t> parse_duration_ms(std::string_view s) {
  auto [num, suffix] = split_number(s);
  auto v = parse_u64(num);
  if (!v) return std::nullopt;
  uint64_t mul;
  if (suffix.empty() || suffix == "s") mul = 1000;
  else if (suffix == "ms") mul = 1;
  else if (suffix == "m") mul = 60'000;
  else if (suffix == "h") mul = 3'600'000;
  else return std::nullopt;
  if (*v > UINT64_MAX / mul) return std::nullopt;
  return *v * mul;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t pos = s.find(sep, start);
    if (pos == std::string_view::npos) {
      out.emplace_back(s.substr(start));
      return out;
    }
    out.emplace_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

std::vector<std::string> merge_env(std::vector<std::string> base, const std::vector<std::string>& overrides) {
  for (const auto& e : overrides) {
    std::string prefix = e.substr(0, e.find('=')) + "=";
    bool replaced = false;
    for (auto& b : base)
      if (b.compare(0, prefix.size(), prefix) == 0) {
        b = e;
        replaced = true;
        break;
      }
    if (!replaced) base.push_back(e);
  }
  return base;
}

std::string to_hex(const uint8_t* data, size_t len) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out(len * 2, '0');
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 15];
  }
  return out;
}

}  // namespace spore
