// window_sketch: the bin counts of a sliding window of DDSketches, kept up
// to date by adding each bucket's sketch when it arrives and subtracting it
// when it leaves the window (docs/alerting.md, "Evaluation cost").
//
// A quantile rule's window is ~60 buckets per instance; merging them all at
// every evaluation was most of the evaluator's time. Sketch counts are
// integers, so subtraction is exact: the sketch built from these counts has
// exactly the bins a merge of the window's buckets has, and the same
// quantiles. Min, max and count are not kept here (a minimum cannot be
// subtracted); the evaluator scans the buckets' scalars for them.
#pragma once

#include "cqrs/ddsketch.hpp"

#include <cstdint>
#include <utility>
#include <vector>

namespace cairn::alerts {

class window_sketch {
public:
  void add(const cqrs::ddsketch& s);

  /// Removes a sketch added before. False (and the counts are no longer
  /// those of the window) if `s` holds a bin this window does not: the
  /// caller rebuilds.
  [[nodiscard]] bool subtract(const cqrs::ddsketch& s);

  void clear() noexcept;

  uint64_t count() const noexcept { return count_; }

  /// Replaces `out` with the window's sketch.
  void build(cqrs::ddsketch& out) const;

  /// Non-empty bins held (both signs).
  size_t bins() const noexcept { return positive_.size() + negative_.size(); }

private:
  using bins_t = std::vector<std::pair<int32_t, uint64_t>>;
  static void add_store(bins_t& into, const cqrs::ddsketch::store& s);
  static bool subtract_store(bins_t& from, const cqrs::ddsketch::store& s);

  bins_t positive_;
  bins_t negative_;
  uint64_t zero_ = 0;
  uint64_t count_ = 0;
};

} // namespace cairn::alerts
