// pool_sizer: how many parser actors a node should run now, from how busy
// the current ones were (docs/architecture.md, "Ingest path").
//
// A sample is the parser time spent on chunks in an interval (the sum over
// every parser, wall clock from a chunk's start to its end of synchronous
// work) and the number of parsers during it. The pool grows by one when the
// parsers were busy `grow_above` of their time (one parser actor runs on one
// scheduler thread at a time, so a busy pool is what caps parse throughput),
// and shrinks by one when the same work would have kept one parser fewer
// below `shrink_below` on `shrink_after` samples in a row — growth reacts at
// once, shrinking only to a lasting lull, so a bursty load does not flap.
// Always within [min, max].
//
// A pure value; not thread-safe (the pool's sizer actor owns it).
#pragma once

#include <cstddef>

namespace cairn::runtime {

class pool_sizer {
public:
  pool_sizer(size_t min, size_t max) noexcept;

  /// One sample: `busy_seconds` of parser work in `interval_seconds` with
  /// `current` parsers. Returns the number of parsers to have from now on.
  size_t sample(double busy_seconds, double interval_seconds,
                size_t current) noexcept;

  size_t min() const noexcept { return min_; }
  size_t max() const noexcept { return max_; }

  static constexpr double grow_above = 0.7;
  static constexpr double shrink_below = 0.4;
  static constexpr int shrink_after = 20;

private:
  size_t min_;
  size_t max_;
  int low_samples_ = 0;
};

} // namespace cairn::runtime
