// A bucket: the aggregate of all events of one series in one tier window.
//
// Holds count, sum, min, max, last (the value of the event with the greatest
// timestamp; on equal timestamps the later-applied one) and a DDSketch.
// Buckets merge exactly, which is what makes scatter/gather queries correct.
// Not thread-safe; owned by one partition actor.
#pragma once

#include "cqrs/ddsketch.hpp"
#include "cqrs/time.hpp"

#include <cstdint>
#include <limits>

namespace cairn::cqrs {

struct bucket {
  uint64_t count = 0;
  double sum = 0;
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  millis last_ts = std::numeric_limits<millis>::min();
  double last = 0;
  ddsketch sketch;

  /// Adds one event. `index`, `negative`, `zero` describe the sketch bin of
  /// `value` (see ddsketch::add_indexed).
  void add(millis ts, double value, int32_t index, bool negative, bool zero);

  /// Adds one event, computing its bin with `m`.
  void add(millis ts, double value, const ddsketch_mapping& m);

  /// Folds `other` into this bucket (exact for every field).
  void merge(const bucket& other);

  /// Folds every field of `other` but the sketch in (a read whose aggs
  /// need no quantile: the sketch merge is most of a bucket merge's cost).
  void merge_without_sketch(const bucket& other);

  bool empty() const noexcept { return count == 0; }

  friend bool operator==(const bucket&, const bucket&) = default;
};

} // namespace cairn::cqrs
