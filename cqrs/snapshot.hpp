// snapshot: the envelope of a partition snapshot, and partition recovery.
//
// A snapshot is the projection state of one partition (the opaque bytes of
// series_store::encode) plus its idempotency window, tagged with the journal
// sequence it covers: replaying the journal from covered_seq + 1 on top of it
// yields the live state. The envelope ("CSNP", version, partition, covered
// seq, lengths, CRC-32C over everything) is specified in
// docs/storage-format.md; decoding tells bad magic, version, checksum and
// truncation apart so that recovery can log why it fell back to an older
// snapshot.
//
// `restore_partition` is the recovery algorithm of docs/design.md, "Recovery":
// newest valid snapshot, fall back on a corrupt one, replay the journal
// after it, stop on a corrupt record unless told to skip it. It blocks on
// disk reads: run it before the partition accepts traffic (off the CAF
// scheduler threads, or accept that recovery blocks one).
//
// Pure functions except `restore_partition` (reads the journal, logs through
// spdlog). Safe from any thread.
#pragma once

#include "cqrs/time.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace cairn::runtime {
class journal;
} // namespace cairn::runtime

namespace cairn::cqrs {

class series_store;
class idempotency_window;

/// Identity of a snapshot.
struct snapshot_header {
  uint32_t partition = 0;
  /// Highest journal seq whose record is reflected in the state.
  uint64_t covered_seq = 0;
  /// Wall-clock time the snapshot was taken (informational).
  millis taken_at = 0;
};

/// A decoded snapshot; the views point into the decoded input.
struct snapshot_view {
  snapshot_header header;
  std::string_view projection;  ///< for series_store::decode
  std::string_view idempotency; ///< for idempotency_window::decode
};

/// Outcome of `decode_snapshot`.
enum class snapshot_result : uint8_t {
  /// The snapshot was decoded.
  ok,
  /// The input does not start with "CSNP": not a snapshot.
  bad_magic,
  /// The envelope version is not one this build reads.
  bad_version,
  /// The checksum does not match: the bytes were corrupted.
  bad_checksum,
  /// The input ends before the snapshot does.
  truncated,
  /// Bytes follow the snapshot.
  malformed,
};

/// Returns "ok", "bad_magic", "bad_version", ... .
std::string_view to_string(snapshot_result r) noexcept;

/// Version byte written by `encode_snapshot`.
inline constexpr uint8_t snapshot_version = 1;

/// Appends the envelope of (header, projection, idempotency) to `out`.
void encode_snapshot(const snapshot_header& header, std::string_view projection,
                     std::string_view idempotency, std::string& out);

/// Appends the envelope of the state of `store` and `keys` to `out`,
/// encoding both in place (no intermediate copy of the projection).
void encode_snapshot(const snapshot_header& header, const series_store& store,
                     const idempotency_window& keys, std::string& out);

/// Decodes an envelope spanning all of `in`. On ok, `out`'s views point into
/// `in`; otherwise `out` is unspecified.
[[nodiscard]] snapshot_result decode_snapshot(std::string_view in,
                                              snapshot_view& out);

// -- recovery -----------------------------------------------------------------

struct restore_options {
  /// Skip (log and count) corrupt journal records and sequence gaps instead
  /// of failing (`cairn.storage.skip-corrupt`).
  bool skip_corrupt = false;
};

/// What `restore_partition` did.
struct restore_report {
  /// False: the node must not serve this partition; `error` says why,
  /// naming the partition and the journal seq.
  bool ok = true;
  std::string error;
  /// Covered seq of the snapshot restored, 0 if none.
  uint64_t snapshot_seq = 0;
  /// Snapshots that could not be used (each logged with its reason).
  uint64_t snapshots_rejected = 0;
  /// Journal records replayed, and their events.
  uint64_t records_replayed = 0;
  uint64_t events_replayed = 0;
  /// Corrupt records skipped and missing seqs tolerated (skip_corrupt).
  uint64_t records_skipped = 0;
  /// The seq the partition must use for its next append.
  uint64_t next_seq = 1;
};

/// Restores `store` and `keys` (freshly constructed with the partition's
/// configuration) from the newest valid snapshot of `partition` in `j` and
/// replays the journal records after it, in seq order: each record's
/// events through `store.apply` and its idempotency key through
/// `keys.insert(key, accepted_at)`. A snapshot that is unreadable, fails
/// its checksum or does not decode is skipped with a warning naming it and
/// the next older one is tried; without any valid snapshot the whole
/// journal is replayed. Sequence numbers are expected to be dense (1, 2, 3,
/// ...): a corrupt record or a missing seq fails the restore with a message
/// naming partition and seq, unless `opts.skip_corrupt`. The caller should
/// call `keys.expire(now)` afterwards.
[[nodiscard]] restore_report restore_partition(const runtime::journal& j,
                                               uint32_t partition,
                                               series_store& store,
                                               idempotency_window& keys,
                                               restore_options opts = {});

} // namespace cairn::cqrs
