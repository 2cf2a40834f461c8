#include "alerts/window_sketch.hpp"

#include <algorithm>

namespace cairn::alerts {

namespace {

auto by_index = [](const std::pair<int32_t, uint64_t>& bin, int32_t i) {
  return bin.first < i;
};

} // namespace

void window_sketch::add_store(bins_t& into, const cqrs::ddsketch::store& s) {
  // Both ascending: each bin is searched from where the previous one was.
  size_t from = 0;
  s.for_each([&](int32_t i, uint64_t n) {
    auto it = std::lower_bound(into.begin() + static_cast<ptrdiff_t>(from),
                               into.end(), i, by_index);
    if (it != into.end() && it->first == i)
      it->second += n;
    else
      it = into.insert(it, {i, n});
    from = static_cast<size_t>(it - into.begin()) + 1;
  });
}

bool window_sketch::subtract_store(bins_t& from, const cqrs::ddsketch::store& s) {
  bool ok = true;
  size_t at = 0;
  s.for_each([&](int32_t i, uint64_t n) {
    auto it = std::lower_bound(from.begin() + static_cast<ptrdiff_t>(at),
                               from.end(), i, by_index);
    if (it == from.end() || it->first != i || it->second < n) {
      ok = false;
      return;
    }
    it->second -= n;
    if (it->second == 0)
      it = from.erase(it);
    else
      ++it;
    at = static_cast<size_t>(it - from.begin());
  });
  return ok;
}

void window_sketch::add(const cqrs::ddsketch& s) {
  count_ += s.count();
  zero_ += s.zero_count();
  add_store(positive_, s.positive());
  if (!s.negative().empty())
    add_store(negative_, s.negative());
}

bool window_sketch::subtract(const cqrs::ddsketch& s) {
  if (s.count() > count_ || s.zero_count() > zero_)
    return false;
  count_ -= s.count();
  zero_ -= s.zero_count();
  bool ok = subtract_store(positive_, s.positive());
  if (!s.negative().empty())
    ok = subtract_store(negative_, s.negative()) && ok;
  return ok;
}

void window_sketch::clear() noexcept {
  positive_.clear();
  negative_.clear();
  zero_ = 0;
  count_ = 0;
}

void window_sketch::build(cqrs::ddsketch& out) const {
  out.clear();
  if (!positive_.empty())
    out.add_bins(false, positive_.data(), positive_.size());
  if (!negative_.empty())
    out.add_bins(true, negative_.data(), negative_.size());
  if (zero_ != 0)
    out.add_zero(zero_);
}

} // namespace cairn::alerts
