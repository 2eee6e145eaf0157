// String helpers shared by the CLIs and parsers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace spore {

std::string strfmt(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// Decimal unsigned integer, no sign, no trailing garbage, no overflow.
std::optional<uint64_t> parse_u64(std::string_view s);

// "512", "512M", "2G", "64k" (binary units) -> bytes. Bare numbers use
// default_unit (1 for bytes, 1<<20 for MiB).
std::optional<uint64_t> parse_size(std::string_view s, uint64_t default_unit);

// "30", "30s", "500ms", "2m", "1h" -> milliseconds.
std::optional<uint64_t> parse_duration_ms(std::string_view s);

std::vector<std::string> split(std::string_view s, char sep);
bool starts_with(std::string_view s, std::string_view prefix);
// KEY=VALUE lists: entries of overrides replace base entries with the same
// key (keeping their position); new keys are appended.
std::vector<std::string> merge_env(std::vector<std::string> base, const std::vector<std::string>& overrides);
std::string to_hex(const uint8_t* data, size_t len);

}  // namespace spore
