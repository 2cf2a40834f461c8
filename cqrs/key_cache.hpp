// key_cache: series keys already built, found again by the text they came
// from, so that a repeated series costs a hash and a compare on the ingest
// path instead of unescaping, sorting, encoding and hashing its tags
// (docs/architecture.md, "Ingest cost budget").
//
// An entry maps (metric, source text of its tags) to the canonical key and
// its series_hash. The source text is whatever bytes the parser saw (the raw
// JSON of a "tags" object, the tag section of a line-protocol line): two
// texts that differ only in spacing or tag order are two entries for one
// key. Only keys that passed validation are inserted, so a hit means the
// text is known to be valid. Bounded: when `capacity` entries are held the
// next insert starts over from empty (a cardinality above the capacity
// degrades to the uncached path, never to unbounded memory). One per parser;
// not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cairn::cqrs {

class key_cache {
public:
  /// What a hit gives: the key (valid until the next insert or clear) and
  /// its series_hash.
  struct hit {
    std::string_view key;
    uint64_t hash = 0;
  };

  explicit key_cache(size_t capacity = 16384);

  std::optional<hit> find(std::string_view metric,
                          std::string_view source) const noexcept;

  /// Remembers `key` (with `hash` = series_hash(key)) for the pair. A pair
  /// that is already present keeps its entry.
  void insert(std::string_view metric, std::string_view source,
              std::string_view key, uint64_t hash);

  size_t size() const noexcept { return entries_.size(); }
  size_t capacity() const noexcept { return capacity_; }
  void clear() noexcept;

private:
  /// metric, source and key back to back in one allocation.
  struct entry {
    uint64_t lookup = 0;
    uint64_t hash = 0;
    uint32_t metric_size = 0;
    uint32_t source_size = 0;
    std::string bytes;
  };

  static uint64_t lookup_hash(std::string_view metric,
                              std::string_view source) noexcept;
  bool matches(const entry& e, uint64_t lookup, std::string_view metric,
               std::string_view source) const noexcept;

  size_t capacity_;
  /// Open addressing, linear probing, at most half full: index + 1 into
  /// entries_, 0 for an empty slot.
  std::vector<uint32_t> slots_;
  std::vector<entry> entries_;
};

} // namespace cairn::cqrs
