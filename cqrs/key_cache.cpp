#include "cqrs/key_cache.hpp"

#include "cqrs/series_key.hpp"

#include <xxhash.h>

#include <algorithm>

namespace cairn::cqrs {

namespace {

constexpr size_t max_source = 4096;

} // namespace

key_cache::key_cache(size_t capacity, size_t max_bytes)
  : capacity_(std::max<size_t>(capacity, 1)),
    max_bytes_(max_bytes),
    slots_(64) {}

uint64_t key_cache::lookup_hash(std::string_view metric,
                                std::string_view source) noexcept {
  auto seed = XXH3_64bits(metric.data(), metric.size());
  return XXH3_64bits_withSeed(source.data(), source.size(), seed);
}

bool key_cache::matches(const entry& e, uint64_t lookup,
                        std::string_view metric,
                        std::string_view source) const noexcept {
  if (e.lookup != lookup || e.source_size != source.size())
    return false;
  return std::string_view{bytes_}.substr(e.offset, e.source_size) == source
         && series_metric(key_of(e)) == metric;
}

std::optional<key_cache::hit>
key_cache::find(std::string_view metric,
                std::string_view source) const noexcept {
  auto lookup = lookup_hash(metric, source);
  auto mask = slots_.size() - 1;
  for (auto i = lookup & mask;; i = (i + 1) & mask) {
    auto slot = slots_[i];
    if (slot == 0)
      return std::nullopt;
    auto& e = entries_[slot - 1];
    if (matches(e, lookup, metric, source))
      return hit{key_of(e), e.hash};
  }
}

void key_cache::insert(std::string_view metric, std::string_view source,
                       std::string_view key, uint64_t hash) {
  if (source.size() > max_source)
    return;
  if (entries_.size() >= capacity_
      || bytes_.size() + source.size() + key.size() > max_bytes_)
    clear();
  if ((entries_.size() + 1) * 2 > slots_.size())
    grow_slots();
  auto lookup = lookup_hash(metric, source);
  auto mask = slots_.size() - 1;
  auto i = lookup & mask;
  for (; slots_[i] != 0; i = (i + 1) & mask)
    if (matches(entries_[slots_[i] - 1], lookup, metric, source))
      return;
  entries_.push_back(entry{lookup, hash, static_cast<uint32_t>(bytes_.size()),
                           static_cast<uint32_t>(source.size()),
                           static_cast<uint32_t>(key.size())});
  bytes_.append(source).append(key);
  slots_[i] = static_cast<uint32_t>(entries_.size());
}

void key_cache::grow_slots() {
  std::vector<uint32_t> slots(slots_.size() * 2);
  auto mask = slots.size() - 1;
  for (uint32_t id = 0; id < entries_.size(); ++id) {
    auto i = entries_[id].lookup & mask;
    while (slots[i] != 0)
      i = (i + 1) & mask;
    slots[i] = id + 1;
  }
  slots_.swap(slots);
}

size_t key_cache::memory_bytes() const noexcept {
  return slots_.capacity() * sizeof(uint32_t)
         + entries_.capacity() * sizeof(entry) + bytes_.capacity();
}

void key_cache::clear() noexcept {
  std::fill(slots_.begin(), slots_.end(), 0);
  entries_.clear();
  bytes_.clear();
}

} // namespace cairn::cqrs
