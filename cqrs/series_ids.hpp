// series_ids: a store's series ids by key hash, the lookup every event pays
// on the ingest path (docs/architecture.md, "Compact store").
//
// Open addressing with linear probing over 16-byte (hash, id) slots, at most
// half full: a lookup reads one slot line and compares the key of the one
// series whose full 64-bit hash matches, instead of walking a node-based
// map (bucket array, node, key: three dependent loads). The keys stay with
// the caller; find() asks for the key of a candidate id. prefetch() starts
// the load of a hash's slot, so that a batch can look its events up a few
// places ahead (series_store::apply_batch). Ids are never erased one by one:
// a store that renumbers its series rebuilds the index. Not thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace cairn::cqrs {

class series_ids {
public:
  series_ids() : slots_(16) {}

  /// The id whose hash is `hash` and whose key (key_of(id)) is `key`.
  template <class KeyOf>
  std::optional<uint32_t> find(uint64_t hash, std::string_view key,
                               KeyOf&& key_of) const {
    auto mask = slots_.size() - 1;
    for (auto i = hash & mask;; i = (i + 1) & mask) {
      auto& s = slots_[i];
      if (s.id == empty)
        return std::nullopt;
      if (s.hash == hash && key_of(s.id) == key)
        return s.id;
    }
  }

  /// Adds `id` under `hash` (the caller knows its key is not present).
  void insert(uint64_t hash, uint32_t id);

  void prefetch(uint64_t hash) const noexcept {
    __builtin_prefetch(&slots_[hash & (slots_.size() - 1)]);
  }

  void clear() noexcept;
  size_t size() const noexcept { return size_; }
  size_t memory_bytes() const noexcept { return slots_.capacity() * sizeof(slot); }

private:
  static constexpr uint32_t empty = UINT32_MAX;
  struct slot {
    uint64_t hash = 0;
    uint32_t id = empty;
  };

  void grow();

  std::vector<slot> slots_;
  size_t size_ = 0;
};

} // namespace cairn::cqrs
