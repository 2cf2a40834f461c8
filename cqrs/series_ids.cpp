#include "cqrs/series_ids.hpp"

#include <algorithm>

namespace cairn::cqrs {

void series_ids::insert(uint64_t hash, uint32_t id) {
  if ((size_ + 1) * 2 > slots_.size())
    grow();
  auto mask = slots_.size() - 1;
  auto i = hash & mask;
  while (slots_[i].id != empty)
    i = (i + 1) & mask;
  slots_[i] = slot{hash, id};
  ++size_;
}

void series_ids::grow() {
  std::vector<slot> old(slots_.size() * 2);
  old.swap(slots_);
  auto mask = slots_.size() - 1;
  for (auto& s : old) {
    if (s.id == empty)
      continue;
    auto i = s.hash & mask;
    while (slots_[i].id != empty)
      i = (i + 1) & mask;
    slots_[i] = s;
  }
}

void series_ids::clear() noexcept {
  std::fill(slots_.begin(), slots_.end(), slot{});
  size_ = 0;
}

} // namespace cairn::cqrs
