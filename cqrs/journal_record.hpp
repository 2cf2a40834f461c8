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
// path: one call per partition sub-batch, amortized O(1) allocations.
//
// Two versions:
// - Version 1 is self-contained: every record lists the series keys it
//   uses (hints, which travel alone, are written this way).
// - Version 2 (the journal) names series by an id of a `series_dictionary`
//   that the partition's records build up in sequence order: a record
//   defines only the keys not defined before, and a record flagged `reset`
//   starts from an empty dictionary. The partition resets it at every
//   snapshot boundary, so replay after any snapshot starts from empty.
//   Series keys are most of a v1 record's bytes (one per ~2 events on a
//   typical sub-batch); version 2 also stores timestamps as deltas and
//   integral values as varints, which cuts journal bytes per event ~3x.
//
// The free functions are pure and safe from any thread; a dictionary
// belongs to one partition (one thread at a time).
#pragma once

#include "cqrs/event_batch.hpp"
#include "cqrs/time.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

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

/// Version byte of self-contained records (`encode_record` without a
/// dictionary).
inline constexpr uint8_t journal_record_version = 1;

/// Version byte of records that name series through a `series_dictionary`.
inline constexpr uint8_t journal_record_version_dict = 2;

/// The series keys defined by a partition's version-2 records since the
/// last reset, by id (0, 1, ...). The encoder interns keys; the decoder
/// appends the keys each record defines.
class series_dictionary {
public:
  /// Id of `key` (`hash` = series_hash(key)); defines a new id if `key` is
  /// not in the dictionary (then `added` is set to true).
  uint32_t intern(uint64_t hash, std::string_view key, bool& added);

  /// Defines the next id as `key` (decoder: no lookup). Returns the id.
  uint32_t add(uint64_t hash, std::string_view key);

  std::string_view key(uint32_t id) const noexcept {
    return std::string_view{arena_}.substr(offsets_[id],
                                           offsets_[id + 1] - offsets_[id]);
  }

  uint64_t hash(uint32_t id) const noexcept { return hashes_[id]; }

  uint32_t size() const noexcept {
    return static_cast<uint32_t>(hashes_.size());
  }

  /// Bytes of all keys (the encoder resets a dictionary that grows large).
  size_t key_bytes() const noexcept { return arena_.size(); }

  void clear() noexcept;

private:
  void rehash(size_t slots);

  std::string arena_;
  std::vector<uint32_t> offsets_{0};  ///< size() + 1 entries
  std::vector<uint64_t> hashes_;
  std::vector<uint32_t> slots_;       ///< open addressing: id + 1
};

/// Appends the encoding of `rec` to `out`.
void encode_record(const journal_record& rec, std::string& out);

/// Convenience overload encoding the parts without building a record.
void encode_record(millis accepted_at, std::string_view idempotency_key,
                   const event_batch& events, std::string& out);

/// Appends a version-2 encoding of the parts to `out`, naming series by
/// their id in `dict` and defining the ones `dict` does not have yet. With
/// `reset`, `dict` is cleared first and the record says so: decoding it
/// needs no earlier record.
void encode_record(millis accepted_at, std::string_view idempotency_key,
                   const event_batch& events, series_dictionary& dict,
                   bool reset, std::string& out);

/// Decodes exactly one version-1 record spanning all of `in` into `out`
/// (previous contents replaced; `out.events` holds each distinct series key
/// once and recomputes `event_entry::hash`). A version-2 record is
/// `bad_version` here. On any result other than ok, `out` is unspecified.
[[nodiscard]] decode_result decode_record(std::string_view in,
                                          journal_record& out);

/// Decodes a version-1 or version-2 record. For version 2, `dict` must hold
/// what the partition's previous records defined since the last reset (the
/// record's own definitions are added; a reset record clears it first); a
/// record that expects a different dictionary size or names an unknown id is
/// `malformed` (a record before it is missing or was skipped). On any result
/// other than ok, `out` and `dict` are unspecified.
[[nodiscard]] decode_result decode_record(std::string_view in,
                                          journal_record& out,
                                          series_dictionary& dict);

/// CRC-32C (Castagnoli) of `data`, continuing from `crc` (0 to start).
/// Uses the SSE4.2 instruction when the CPU has it, boost::crc otherwise.
uint32_t crc32c(std::string_view data, uint32_t crc = 0) noexcept;

} // namespace cairn::cqrs
