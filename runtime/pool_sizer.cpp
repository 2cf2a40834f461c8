#include "runtime/pool_sizer.hpp"

#include <algorithm>

namespace cairn::runtime {

pool_sizer::pool_sizer(size_t min, size_t max) noexcept
  : min_(std::max<size_t>(1, min)), max_(std::max(min_, max)) {
  // nop
}

size_t pool_sizer::sample(double busy_seconds, double interval_seconds,
                          size_t current) noexcept {
  current = std::clamp(current, min_, max_);
  if (interval_seconds <= 0)
    return current;
  auto share = [&](size_t n) {
    return busy_seconds / (interval_seconds * static_cast<double>(n));
  };
  if (current < max_ && share(current) >= grow_above) {
    low_samples_ = 0;
    return current + 1;
  }
  if (current > min_ && share(current - 1) < shrink_below) {
    if (++low_samples_ >= shrink_after) {
      low_samples_ = 0;
      return current - 1;
    }
    return current;
  }
  low_samples_ = 0;
  return current;
}

} // namespace cairn::runtime
