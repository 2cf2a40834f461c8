// remote_write: one Prometheus remote_write 1.0 request body turned into
// Cairn events (docs/integrations.md, "Prometheus remote_write").
//
// The body is a snappy block (not the framed format) around a protobuf
// `prometheus.WriteRequest` (promwire/remote.proto). Each series' `__name__`
// label is the metric, its other labels are the tags, each sample one event
// (timestamp in ms, value as sent: counters stay raw). Every event passes the
// same validation as an NDJSON event (cqrs/event_parser.hpp: metric
// characters, tag count and sizes, duplicate tag keys, time limits), with the
// same codes; an invalid series or sample is counted and described, the
// others still count. Prometheus' stale markers (the NaN with payload 2 it
// writes when a series disappears) are skipped without being errors; any
// other NaN or infinity is rejected like a non-finite NDJSON value.
//
// Pure function: no threads, no actors, no CAF. Thread-safe (no state).
#pragma once

#include "cqrs/error.hpp"
#include "cqrs/event_batch.hpp"
#include "cqrs/event_parser.hpp"
#include "cqrs/time.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cairn::promwire {

/// Largest uncompressed WriteRequest accepted (Prometheus sends well under
/// 1 MiB; this bounds what a hostile 8 MiB snappy body can expand to).
inline constexpr size_t max_uncompressed = 64u << 20;

/// What one body gave.
struct remote_write_result {
  /// False if the body is not a snappy-compressed WriteRequest (`error`
  /// says why; code bad_request). Nothing was added then.
  bool ok = false;
  std::string error;
  size_t series = 0;
  /// Samples in the request.
  size_t samples = 0;
  /// Events appended to the batch.
  size_t accepted = 0;
  /// Samples not stored because they (or their series) are invalid.
  size_t rejected = 0;
  /// Stale markers skipped.
  size_t stale = 0;
  /// Why samples were rejected: one entry per invalid series or sample, at
  /// most `max_problems` (the rest is only counted in `rejected`).
  std::vector<cqrs::problem> problems;
};

/// True for Prometheus' stale marker (value bits 0x7ff0000000000002).
[[nodiscard]] bool is_stale_marker(double value) noexcept;

/// Decodes `body` (snappy block + protobuf) and appends one event per valid
/// sample to `out`, validated against `limits` with `now` as the reference
/// time. Never throws.
[[nodiscard]] remote_write_result
decode_remote_write(std::string_view body, cqrs::millis now,
                    const cqrs::event_limits& limits, cqrs::event_batch& out,
                    size_t max_problems = 10);

} // namespace cairn::promwire
