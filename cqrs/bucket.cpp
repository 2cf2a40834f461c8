#include "cqrs/bucket.hpp"

#include <algorithm>
#include <cmath>

namespace cairn::cqrs {

void bucket::add(millis ts, double value, int32_t index, bool negative,
                 bool zero) {
  ++count;
  sum += value;
  min = std::min(min, value);
  max = std::max(max, value);
  if (ts >= last_ts) {
    last_ts = ts;
    last = value;
  }
  sketch.add_indexed(index, negative, zero);
}

void bucket::add(millis ts, double value, const ddsketch_mapping& m) {
  auto a = std::fabs(value);
  bool zero = !(a >= ddsketch_mapping::min_indexable());
  add(ts, value, zero ? 0 : m.index(a), value < 0, zero);
}

void bucket::merge(const bucket& other) {
  if (other.empty())
    return;
  merge_without_sketch(other);
  sketch.merge(other.sketch);
}

void bucket::merge_without_sketch(const bucket& other) {
  if (other.empty())
    return;
  count += other.count;
  sum += other.sum;
  min = std::min(min, other.min);
  max = std::max(max, other.max);
  // `other` counts as applied later: it wins ties on the timestamp.
  if (other.last_ts >= last_ts) {
    last_ts = other.last_ts;
    last = other.last;
  }
}

} // namespace cairn::cqrs
