// A log-linear latency histogram in the style of HdrHistogram.
//
// Values (nanoseconds) below 128 are counted exactly; above, each power of
// two is split into 64 linear sub-buckets, so a reported percentile is within
// 1/64 (< 1.6 %) of the true value while the whole 64-bit range fits in
// about 3,800 counters. Recording is O(1) without allocation; histograms of
// several threads merge by adding counters.
//
// Threading: not synchronized. Each thread records into its own histogram;
// merge them after the threads are joined.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <vector>

namespace cairn::bench {

class latency_histogram {
public:
  latency_histogram() : counts_(bucket_count, 0) {
  }

  /// Counts one value.
  void record(uint64_t value) noexcept {
    ++counts_[index_of(value)];
    ++total_;
    max_ = std::max(max_, value);
    min_ = std::min(min_, value);
  }

  /// Adds all values of `other`.
  void merge(const latency_histogram& other) noexcept {
    for (size_t i = 0; i < counts_.size(); ++i)
      counts_[i] += other.counts_[i];
    total_ += other.total_;
    max_ = std::max(max_, other.max_);
    min_ = std::min(min_, other.min_);
  }

  /// Returns the value at quantile `q` in [0, 1] (the smallest recorded
  /// value with at least ceil(q * count) values at or below it), reported as
  /// the midpoint of its bucket and clamped to [min, max]. 0 when empty.
  uint64_t quantile(double q) const noexcept {
    if (total_ == 0)
      return 0;
    auto rank = static_cast<uint64_t>(q * static_cast<double>(total_) + 0.999999);
    rank = std::clamp<uint64_t>(rank, 1, total_);
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank)
        return std::clamp(midpoint_of(i), min_, max_);
    }
    return max_;
  }

  uint64_t count() const noexcept {
    return total_;
  }

  uint64_t max() const noexcept {
    return total_ == 0 ? 0 : max_;
  }

private:
  static constexpr int sub_bits = 7; // 128 exact values, then 64 per octave
  static constexpr size_t bucket_count = (64 - sub_bits + 2) * 64;

  static size_t index_of(uint64_t v) noexcept {
    if (v < (uint64_t{1} << sub_bits))
      return static_cast<size_t>(v);
    int msb = 63 - std::countl_zero(v);
    int shift = msb - (sub_bits - 1);
    return static_cast<size_t>(shift) * 64 + static_cast<size_t>(v >> shift);
  }

  static uint64_t midpoint_of(size_t index) noexcept {
    if (index < (size_t{1} << sub_bits))
      return index;
    auto shift = index / 64 - 1;
    auto lower = static_cast<uint64_t>(index % 64 + 64) << shift;
    return lower + ((uint64_t{1} << shift) >> 1);
  }

  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
  uint64_t max_ = 0;
  uint64_t min_ = UINT64_MAX;
};

} // namespace cairn::bench
