#include "bench/stats.h"

#include <algorithm>
#include <cmath>

namespace spore::bench {

std::optional<Summary> summarize(std::vector<double> v) {
  if (v.empty()) return std::nullopt;
  std::sort(v.begin(), v.end());
  Summary s;
  s.n = v.size();
  s.median = s.n % 2 ? v[s.n / 2] : (v[s.n / 2 - 1] + v[s.n / 2]) / 2;
  auto nearest_rank = [&v](double q) {
    size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
    return v[std::max<size_t>(rank, 1) - 1];
  };
  s.p90 = nearest_rank(0.9);
  s.p95 = nearest_rank(0.95);
  s.min = v.front();
  s.max = v.back();
  return s;
}

std::vector<double> Series::values() const {
  std::vector<double> v;
  v.reserve(samples_.size());
  for (const auto& [round, value] : samples_) v.push_back(value);
  return v;
}

std::optional<double> Series::paired_ratio(const Series& other) const {
  std::vector<double> ratios;
  for (const auto& [round, value] : samples_) {
    auto it = other.samples_.find(round);
    if (it != other.samples_.end() && it->second > 0) ratios.push_back(value / it->second);
  }
  auto s = summarize(std::move(ratios));
  if (!s) return std::nullopt;
  return s->median;
}

}  // namespace spore::bench
