// partial_codec: compact binary encodings of the mergeable partial results
// (query, topk, series, metrics) for node-to-node scatter/gather.
//
// A remote owner answers a partial request with one encoded partial; the
// asking node decodes and merges it exactly like a local one. Buckets carry
// every field and their DDSketch (ddsketch::encode), so merges across nodes
// are exact. The format is documented in docs/cluster.md ("Wire format").
// Query partials are encoded in sketch form only: a partial for another node
// is computed with query_spec::finals off, and the groups of one in final
// form (query_group::final) would encode without their points.
// Pure functions, safe from any thread.
#pragma once

#include "cqrs/query.hpp"

#include <string>
#include <string_view>

namespace cairn::cqrs {

/// Format version, the first byte of every encoding.
inline constexpr uint8_t partial_codec_version = 1;

void encode_partial(const query_partial& p, std::string& out);
void encode_partial(const topk_partial& p, std::string& out);
void encode_partial(const series_partial& p, std::string& out);
void encode_partial(const metrics_partial& p, std::string& out);

/// Decodes an encoding spanning all of `in` into `out` (replaced). Returns
/// false on malformed input (out is then unspecified).
[[nodiscard]] bool decode_partial(std::string_view in, query_partial& out);
[[nodiscard]] bool decode_partial(std::string_view in, topk_partial& out);
[[nodiscard]] bool decode_partial(std::string_view in, series_partial& out);
[[nodiscard]] bool decode_partial(std::string_view in, metrics_partial& out);

/// Encodes / decodes one bucket (appending / advancing `in`).
void encode_bucket(const bucket& b, std::string& out);
[[nodiscard]] bool decode_bucket(std::string_view& in, bucket& out);

} // namespace cairn::cqrs
