// journal_record: the domain event a partition appends to its journal.
//
// One record = the events of one accepted partition sub-batch, the time the
// partition accepted it and, if the client sent one, its idempotency key.
// Replaying records in sequence order through `series_store::apply` and
// `idempotency_window::insert(key, accepted_at)` rebuilds the partition's
// state exactly (the projection is deterministic).
//
// The binary encoding is compact, versioned and checksummed (CRC-32C); it
// is specified in docs/storage-format.md. Encoding is on the ingest hot
// path: one call per partition sub-batch, amortized O(1) allocations (the
// output string is reserved once; series keys are deduplicated through a
// reused thread-local table). Pure functions, safe from any thread.
#pragma once

#include "cqrs/event_batch.hpp"
#include "cqrs/time.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace cairn::cqrs {

struct journal_record {
  /// Wall-clock time at which the partition accepted the batch; replay
  /// inserts the idempotency key with this time, so expiry is deterministic.
  millis accepted_at = 0;
  /// Idempotency key of the client request; empty = none.
  std::string idempotency_key;
  /// The accepted events (validated).
  event_batch events;
};

/// Outcome of `decode_record`.
enum class decode_result : uint8_t {
  /// The record was decoded.
  ok,
  /// The checksum does not match: the bytes were corrupted.
  bad_checksum,
  /// The format version is not one this build reads.
  bad_version,
  /// The input ends before the record does.
  truncated,
  /// The checksum matches but the body is inconsistent (a bug, or bytes
  /// after the record).
  malformed,
};

/// Returns "ok", "bad_checksum", "bad_version", "truncated" or "malformed".
std::string_view to_string(decode_result r) noexcept;

/// Version byte written by `encode_record`.
inline constexpr uint8_t journal_record_version = 1;

/// Appends the encoding of `rec` to `out`.
void encode_record(const journal_record& rec, std::string& out);

/// Convenience overload encoding the parts without building a record.
void encode_record(millis accepted_at, std::string_view idempotency_key,
                   const event_batch& events, std::string& out);

/// Decodes exactly one record spanning all of `in` into `out` (previous
/// contents replaced; `out.events` holds each distinct series key once and
/// recomputes `event_entry::hash`). On any result other than ok, `out` is
/// unspecified.
[[nodiscard]] decode_result decode_record(std::string_view in,
                                          journal_record& out);

/// CRC-32C (Castagnoli) of `data`, continuing from `crc` (0 to start).
/// Uses the SSE4.2 instruction when the CPU has it, boost::crc otherwise.
uint32_t crc32c(std::string_view data, uint32_t crc = 0) noexcept;

} // namespace cairn::cqrs
