// Order statistics for benchmark figures. Benchmarks on these machines are
// noisy (an emulated host, shared cores), so they report medians and spread,
// and compare against baselines measured in the same run, never means
// against numbers from another day.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace spore::bench {

struct Summary {
  size_t n = 0;
  double median = 0, p90 = 0, p95 = 0, min = 0, max = 0;
};

// Median (mean of the middle two for an even count), p90 and p95 by nearest
// rank, min and max. Nothing for an empty input.
std::optional<Summary> summarize(std::vector<double> values);

// One figure's samples, each tagged with the round it was measured in, so
// that two figures can be compared round by round (paired).
class Series {
 public:
  void add(uint32_t round, double value) { samples_.emplace(round, value); }
  std::vector<double> values() const;
  std::optional<Summary> summary() const { return summarize(values()); }
  // Median over the rounds both series have of this[round] / other[round].
  // Pairing cancels slow drift of the machine better than a ratio of medians.
  std::optional<double> paired_ratio(const Series& other) const;

 private:
  std::multimap<uint32_t, double> samples_;
};

}  // namespace spore::bench
