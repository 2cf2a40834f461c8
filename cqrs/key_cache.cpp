#include "cqrs/key_cache.hpp"

#include <xxhash.h>

#include <bit>

namespace cairn::cqrs {

key_cache::key_cache(size_t capacity)
  : capacity_(std::max<size_t>(capacity, 1)),
    slots_(std::bit_ceil(capacity_ * 2)) {
  entries_.reserve(std::min<size_t>(capacity_, 1024));
}

uint64_t key_cache::lookup_hash(std::string_view metric,
                                std::string_view source) noexcept {
  auto seed = XXH3_64bits(metric.data(), metric.size());
  return XXH3_64bits_withSeed(source.data(), source.size(), seed);
}

bool key_cache::matches(const entry& e, uint64_t lookup,
                        std::string_view metric,
                        std::string_view source) const noexcept {
  if (e.lookup != lookup || e.metric_size != metric.size()
      || e.source_size != source.size())
    return false;
  std::string_view bytes{e.bytes};
  return bytes.substr(0, metric.size()) == metric
         && bytes.substr(metric.size(), source.size()) == source;
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
      return hit{std::string_view{e.bytes}.substr(e.metric_size
                                                  + e.source_size),
                 e.hash};
  }
}

void key_cache::insert(std::string_view metric, std::string_view source,
                       std::string_view key, uint64_t hash) {
  if (entries_.size() >= capacity_)
    clear();
  auto lookup = lookup_hash(metric, source);
  auto mask = slots_.size() - 1;
  auto i = lookup & mask;
  for (; slots_[i] != 0; i = (i + 1) & mask)
    if (matches(entries_[slots_[i] - 1], lookup, metric, source))
      return;
  entry e;
  e.lookup = lookup;
  e.hash = hash;
  e.metric_size = static_cast<uint32_t>(metric.size());
  e.source_size = static_cast<uint32_t>(source.size());
  e.bytes.reserve(metric.size() + source.size() + key.size());
  e.bytes.append(metric).append(source).append(key);
  entries_.push_back(std::move(e));
  slots_[i] = static_cast<uint32_t>(entries_.size());
}

void key_cache::clear() noexcept {
  std::fill(slots_.begin(), slots_.end(), 0);
  entries_.clear();
}

} // namespace cairn::cqrs
