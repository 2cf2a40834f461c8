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
// degrades to the uncached path, never to unbounded memory). Sources and
// keys sit back to back in one buffer (about their size plus 28 bytes an
// entry: a 10,000-series node's two parsers hold ~2 MB). One per parser;
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

  /// At most `capacity` entries and `max_bytes` of sources and keys.
  explicit key_cache(size_t capacity = 16384, size_t max_bytes = 4 << 20);

  /// `metric` must be the metric of the keys inserted (series_metric(key)):
  /// it is compared with the key's own, not stored.
  std::optional<hit> find(std::string_view metric,
                          std::string_view source) const noexcept;

  /// Remembers `key` (with `hash` = series_hash(key), and metric =
  /// series_metric(key)) for the pair. A pair already present keeps its
  /// entry; a source longer than 4 KiB is not kept.
  void insert(std::string_view metric, std::string_view source,
              std::string_view key, uint64_t hash);

  size_t size() const noexcept { return entries_.size(); }
  size_t capacity() const noexcept { return capacity_; }
  /// Heap bytes held (entries, slots, sources and keys).
  size_t memory_bytes() const noexcept;
  void clear() noexcept;

private:
  /// The source and the key back to back in bytes_, at `offset`.
  struct entry {
    uint64_t lookup = 0;
    uint64_t hash = 0;
    uint32_t offset = 0;
    uint32_t source_size = 0;
    uint32_t key_size = 0;
  };

  static uint64_t lookup_hash(std::string_view metric,
                              std::string_view source) noexcept;
  bool matches(const entry& e, uint64_t lookup, std::string_view metric,
               std::string_view source) const noexcept;
  std::string_view key_of(const entry& e) const noexcept {
    return std::string_view{bytes_}.substr(e.offset + e.source_size,
                                           e.key_size);
  }
  void grow_slots();

  size_t capacity_;
  size_t max_bytes_;
  /// Open addressing, linear probing, at most half full (grown with the
  /// entries): index + 1 into entries_, 0 for an empty slot.
  std::vector<uint32_t> slots_;
  std::vector<entry> entries_;
  std::string bytes_;
};

} // namespace cairn::cqrs
