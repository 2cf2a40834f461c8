// Series keys: the canonical binary identity of a series (metric + sorted tags).
//
// Encoding: metric bytes, then for each tag in ascending key order a 0x00
// separator, one length byte, the key, one length byte, the value. Metric
// names cannot contain 0x00 and tag keys/values are at most 128 bytes, so
// the encoding is unambiguous and decodable. The key hash (XXH3-64 of the
// key bytes) is stable across processes and nodes: the partition of a
// series is `hash % partitions`. Pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cairn::cqrs {

using tag = std::pair<std::string, std::string>;
using tag_view = std::pair<std::string_view, std::string_view>;

/// Appends the canonical key of `metric` with `tags` to `out`. `tags` must
/// be sorted by key with unique keys (the caller sorts).
void encode_series_key(std::string& out, std::string_view metric,
                       const tag_view* tags, size_t num_tags);

/// Convenience overload; sorts a copy of `tags`.
std::string make_series_key(std::string_view metric, std::vector<tag> tags);

/// The metric part of a key.
std::string_view series_metric(std::string_view key) noexcept;

/// Decodes the tags of a key (in key order). Returns false if malformed.
[[nodiscard]] bool decode_series_tags(std::string_view key,
                                      std::vector<tag>& out);

/// XXH3-64 of the key bytes.
uint64_t series_hash(std::string_view key) noexcept;

/// The partition owning a series.
inline uint32_t partition_of(uint64_t hash, uint32_t partitions) noexcept {
  return static_cast<uint32_t>(hash % partitions);
}

} // namespace cairn::cqrs
