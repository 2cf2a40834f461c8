// journal: the node's durable event log and snapshot store (one LevelDB).
//
// Every partition appends the records it accepts (opaque bytes; the domain
// codec lives in cqrs/journal_record.hpp) under key ('j', partition, seq);
// snapshots live under ('s', partition, covered_seq) and bookkeeping under
// ('m', ...). The key layout, the sync modes and the recovery algorithm are
// documented in docs/storage-format.md.
//
// Why a dedicated committer thread: an fsync costs ~0.1-10 ms, far more than
// writing a batch. One thread takes *everything* queued since its previous
// write, puts it into ONE leveldb::WriteBatch and ONE db->Write (sync per
// mode), then acknowledges every request of that group in order. Many client
// requests thus share one fsync (group commit), and no actor ever blocks on
// disk: `append` only enqueues.
//
// Threading: `append`, `write_snapshot`, `prune` and `sync` may be called
// from any thread and never block on I/O. Their callbacks run on the
// committer thread, in enqueue order; they must be short and must not call
// `close()` (post a message to an actor instead). `scan`, `read_snapshot`,
// `snapshot_seqs`, `last_seq` and `approximate_size` block on disk reads and
// are meant for recovery and tooling, not for a CAF scheduler thread on the
// hot path; they are thread-safe. Operations enqueued by one thread are
// applied in the order they were enqueued, so an append enqueued before a
// snapshot is on disk no later than the snapshot.
//
// Durability: with sync = always, `done(true, "")` means the record is on
// stable storage (survives a power loss). With interval, the write reached
// the OS before the ack (survives a process crash or SIGKILL) and an fsync
// follows within `sync_interval` (a power loss may lose up to one interval).
// With never, writes survive a process crash but an OS crash may lose
// anything since the last LevelDB compaction or memtable flush.
#pragma once

#include "runtime/ingest_costs.hpp"
#include "runtime/metrics.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace cairn::runtime {

/// Durability of a group commit (`cairn.storage.sync`).
enum class sync_mode : uint8_t {
  /// fsync every group commit before acknowledging it (default).
  always,
  /// Write every group commit to the OS, fsync at most every interval.
  interval,
  /// Never fsync explicitly (benchmarks, throw-away data).
  never,
};

/// Returns "always", "interval" or "never".
std::string_view to_string(sync_mode mode) noexcept;

/// Parses "always", "interval" or "never"; nullopt otherwise.
[[nodiscard]] std::optional<sync_mode> parse_sync_mode(std::string_view text);

/// Configuration of a journal.
struct journal_options {
  sync_mode sync = sync_mode::always;
  /// Maximum time an acknowledged write stays un-fsynced in interval mode.
  std::chrono::milliseconds sync_interval{10};
  /// LevelDB memtable size: larger means fewer, bigger level-0 files, and
  /// up to this many bytes of recent records resident until the next flush
  /// (32 MiB held a filled node ~18 MB above 100 MB, 4 MiB cost ~8 % of
  /// durable ingest; docs/benchmarks.md, "Memory with storage on").
  size_t write_buffer_size = 8u << 20;
  /// LevelDB's open-file budget (table cache + ~10); part of the node's
  /// file-descriptor reserve (runtime/fd_limit.hpp).
  int max_open_files = 128;
  /// Upper bound of one group commit's payload; a larger queue is written
  /// as several consecutive group commits (bounds write latency and memory).
  size_t max_batch_bytes = 16u << 20;
  /// Queued bytes above which `backpressure()` reports true. Appends are
  /// never refused: the caller bounds in-flight work (partition credits).
  size_t max_pending_bytes = 64u << 20;
  /// Snappy block compression (LevelDB stores raw blocks if unavailable).
  bool compression = true;
  /// Observes the duration of every synced (fsynced) write, if set.
  latency_histogram* sync_latency = nullptr;
  /// Counts the CPU time of every group commit as the ingest stage `write`
  /// (runtime/ingest_costs.hpp), if set; the caller counts its events.
  ingest_costs* costs = nullptr;
};

/// Counters for metrics; monotonic since `open`.
struct journal_stats {
  uint64_t appends = 0;        ///< records appended (acknowledged or failed)
  uint64_t appended_bytes = 0; ///< record payload bytes appended
  uint64_t batches = 0;        ///< db->Write calls (group commits)
  uint64_t fsyncs = 0;         ///< db->Write calls with sync = true
  uint64_t snapshots = 0;      ///< snapshots written
  uint64_t snapshot_bytes = 0; ///< snapshot payload bytes written
  uint64_t prunes = 0;         ///< prune requests executed
  uint64_t pruned_keys = 0;    ///< journal and snapshot keys deleted
  uint64_t write_errors = 0;   ///< failed db->Write calls
};

/// Acknowledgement of an enqueued operation: ok, or false with a message.
using journal_callback = std::function<void(bool ok, std::string error)>;

/// Visitor of `scan`: returns false to stop early. `record` is valid only
/// for the duration of the call.
using journal_visitor = std::function<bool(uint64_t seq, std::string_view record)>;

/// Thrown by `open` (and by blocking reads on a storage failure).
class journal_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

class journal {
public:
  /// Kind byte, the first byte of every key (docs/storage-format.md).
  static constexpr char journal_kind = 'j';
  static constexpr char snapshot_kind = 's';
  static constexpr char meta_kind = 'm';

  /// Length of every key: kind + big-endian u32 partition + big-endian u64.
  static constexpr size_t key_size = 13;

  /// Version of the on-disk layout, stored under meta key ('m', 0, 0).
  static constexpr uint32_t format_version = 1;

  /// Meta slot ('m', partition, 1): the partition's handoff marker
  /// (cqrs/handoff_marker.hpp, docs/storage-format.md). Slot 0 of partition
  /// 0 is the layout version; other slots are free for later bookkeeping.
  static constexpr uint64_t handoff_slot = 1;

  ~journal();
  journal(const journal&) = delete;
  journal& operator=(const journal&) = delete;

  // -- lifecycle --------------------------------------------------------------

  /// Opens (creating directories and the database if missing) the journal in
  /// `path` and starts its committer thread. Throws journal_error with a
  /// message naming the path on failure (locked by another process, I/O
  /// error, corruption LevelDB cannot repair, unknown layout version).
  [[nodiscard]] static std::unique_ptr<journal> open(const std::string& path,
                                                     journal_options opts = {});

  /// Writes everything already enqueued, acknowledges it, and joins the
  /// committer thread. Later operations fail immediately with "journal
  /// closed". Idempotent; called by the destructor. Must not be called from
  /// a callback.
  void close();

  // -- writing (any thread, non-blocking) -------------------------------------

  /// Enqueues `record` under ('j', partition, seq). `done` runs on the
  /// committer thread once the group commit holding it was written (and
  /// fsynced in `always` mode), or failed. Sequence numbers are the caller's:
  /// appending an existing (partition, seq) overwrites it.
  void append(uint32_t partition, uint64_t seq, std::string record,
              journal_callback done);

  /// Enqueues a snapshot under ('s', partition, covered_seq). Written in the
  /// same order as appends and fsynced unless the mode is `never`.
  void write_snapshot(uint32_t partition, uint64_t covered_seq,
                      std::string bytes, journal_callback done);

  /// Enqueues deletion of all but the newest `keep_snapshots` snapshots of
  /// `partition` and of its journal records with seq <= `delete_journal_upto`
  /// (0 deletes no record). Everything enqueued before is written first.
  void prune(uint32_t partition, size_t keep_snapshots,
             uint64_t delete_journal_upto, journal_callback done);

  /// Enqueues a write of `bytes` under the bookkeeping key ('m', partition,
  /// slot), replacing any value there. Ordered like appends; fsynced unless
  /// the mode is `never`. (partition 0, slot 0) is the layout version and
  /// must not be written.
  void put_meta(uint32_t partition, uint64_t slot, std::string bytes,
                journal_callback done);

  /// Enqueues deletion of ('m', partition, slot) (absent: nothing to do, ok).
  /// Ordered and synced like put_meta.
  void erase_meta(uint32_t partition, uint64_t slot, journal_callback done);

  /// Enqueues a barrier: `done` runs once everything enqueued before is
  /// written and fsynced (in every mode). Used by flush and shutdown.
  void sync(journal_callback done);

  // -- reading (blocking, thread-safe) ----------------------------------------

  /// Calls `fn` for each record of `partition` with seq >= `from_seq` in
  /// ascending seq order until it returns false. Returns the number of
  /// records visited. Sees only written (not queued) records. Throws
  /// journal_error if LevelDB reports corruption or an I/O error.
  uint64_t scan(uint32_t partition, uint64_t from_seq,
                const journal_visitor& fn) const;

  /// Highest written record seq of `partition`, 0 if it has none.
  uint64_t last_seq(uint32_t partition) const;

  /// Covered seqs of the snapshots of `partition`, newest first.
  std::vector<uint64_t> snapshot_seqs(uint32_t partition) const;

  /// The snapshot bytes, nullopt if absent or unreadable (LevelDB checksum
  /// failure; the reason is logged).
  std::optional<std::string> read_snapshot(uint32_t partition,
                                           uint64_t covered_seq) const;

  /// The value under ('m', partition, slot), nullopt if absent or
  /// unreadable (logged).
  std::optional<std::string> read_meta(uint32_t partition, uint64_t slot) const;

  /// Deletes the snapshot ('s', partition, covered_seq), synced. Blocking;
  /// meant for recovery, which drops snapshots it found corrupt so they never
  /// count towards `keep` again. Returns false (logged) on a LevelDB error.
  bool erase_snapshot(uint32_t partition, uint64_t covered_seq);

  // -- properties -------------------------------------------------------------

  /// Bytes of the files in the database directory.
  uint64_t approximate_size() const;

  /// Bytes enqueued but not yet written.
  size_t pending_bytes() const noexcept;

  /// True while pending_bytes() > max_pending_bytes.
  bool backpressure() const noexcept;

  journal_stats stats() const noexcept;

  const journal_options& options() const noexcept;

  const std::string& path() const noexcept;

  // -- key layout -------------------------------------------------------------

  /// Writes the 13-byte key of (kind, partition, seq) to `out`.
  static void make_key(char kind, uint32_t partition, uint64_t seq,
                       char* out) noexcept;

private:
  struct impl;
  explicit journal(std::unique_ptr<impl> ptr);
  std::unique_ptr<impl> impl_;
};

} // namespace cairn::runtime
