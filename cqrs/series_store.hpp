// series_store: the read-side projection of one partition.
//
// Maps series keys to their tiers of buckets and answers the partial queries
// of query.hpp. Applying events is the projection's `apply(state, event)`;
// it is deterministic in its content (the buckets), so snapshot + replay
// equals full replay. Eviction by retention is a separate, explicit step
// driven by the owner's clock.
//
// Memory (docs/architecture.md, "Compact store"): per series and tier, only
// recent buckets are mutable structs ("open"); a bucket whose window ended
// more than `seal_after` before the store's clock is sealed into an
// immutable compressed block (cqrs/block.hpp). An event for a sealed window
// reopens that bucket (an exact copy, superseding the sealed one) until the
// next seal pass merges it into its block (re-encoding the block from the
// first changed bucket on, bucket_block::merge): queries stay exact. Every
// sealing is published once to the closed-bucket handler (`on_closed`), a
// re-seal as a correction. The clock is the owner's (`set_clock`); without one nothing
// is sealed.
//
// Single writer: owned by one partition actor; not thread-safe.
#pragma once

#include "cqrs/bucket.hpp"
#include "cqrs/ddsketch.hpp"
#include "cqrs/event_batch.hpp"
#include "cqrs/query.hpp"
#include "cqrs/series_key.hpp"
#include "cqrs/tier.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace cairn::cqrs {

/// One bucket that was sealed: the hook for live subscriptions and alert
/// evaluators (docs/architecture.md, "Closed-bucket notifications").
struct closed_bucket {
  std::string key;      ///< series key
  uint32_t tier = 0;    ///< index into the tier_set
  millis start = 0;     ///< bucket start
  bucket value;         ///< the whole bucket as sealed
  /// True when this bucket was published before and late events changed it:
  /// `value` replaces the earlier one.
  bool correction = false;
};

/// Receives the buckets sealed by one call (apply, seal), in sealing order.
using closed_handler = std::function<void(std::vector<closed_bucket>&&)>;

/// Memory held by a store, by kind (approximate heap bytes).
struct store_memory {
  /// Buckets held as mutable structs (including reopened copies).
  uint64_t open_buckets = 0;
  uint64_t open_bytes = 0;
  /// Per tier: sealed buckets and the bytes of their blocks.
  std::vector<uint64_t> sealed_buckets;
  std::vector<uint64_t> sealed_bytes;
  /// Series keys, the key index, the metric index and per-series records.
  uint64_t dictionary_bytes = 0;
};

class series_store {
public:
  series_store(tier_set tiers, ddsketch_mapping mapping);
  ~series_store();
  series_store(series_store&&) noexcept;
  series_store& operator=(series_store&&) noexcept;

  // -- write side -------------------------------------------------------------

  /// Adds every event of `batch` to every tier of its series (creating the
  /// series on first sight). Events must be validated already.
  void apply(const event_batch& batch);

  /// Adds one validated event.
  void apply(std::string_view key, millis ts, double value);

  /// Drops buckets whose start is older than now - retention of their tier,
  /// and series left without buckets. Open buckets go one by one; sealed
  /// ones are hidden from queries at once and freed with their whole block.
  /// Returns the number of buckets freed.
  size_t evict(millis now);

  /// Sets the clock that decides sealing (wall-clock ms; the owner calls it
  /// before applying a batch). Never moves back.
  void set_clock(millis now) noexcept;

  /// Seal pass: sets the clock and seals every open bucket whose window
  /// ended at least seal_after ago and that no event changed since the
  /// previous pass (a backfill faster than real time keeps the bucket it
  /// writes open), re-encoding blocks for reopened ones. Returns the number
  /// of buckets sealed.
  size_t seal(millis now);

  /// Close pass (live, docs/architecture.md "Closed-bucket notifications"):
  /// publishes every open bucket whose window ended at least `grace` before
  /// `now` and that was not published yet (correction = false, or true for
  /// a reopened bucket), and every published bucket that events changed
  /// since (correction = true). A bucket published here is not published
  /// again when it is sealed unless it changed. Without a handler it does
  /// nothing (buckets are then published when sealed). Sets the clock.
  /// Returns the number of buckets published.
  size_t close(millis now, millis grace);

  /// The lateness horizon (default 2 s, `cairn.ingest.seal-after`).
  void seal_after(millis horizon) noexcept;
  millis seal_after() const noexcept;

  /// Installs the handler for sealed buckets (empty: none). Called at the
  /// end of apply and seal, on the caller's thread.
  void on_closed(closed_handler handler);

  /// Installs a handler told about every series created (added = true) or
  /// removed by eviction (false), by its key and series_hash of it; for the
  /// node's series_registry and series_index. Called synchronously inside
  /// apply and evict (the key is valid during the call only).
  void on_series(
    std::function<void(std::string_view key, uint64_t hash, bool added)> handler);

  /// Calls f(key) for every series.
  void for_each_key(const std::function<void(std::string_view)>& f) const;

  // -- read side --------------------------------------------------------------

  void query(const query_spec& q, query_partial& out) const;

  /// What query_series found.
  enum class series_read : uint8_t {
    /// The series exists; its points were appended (none: no bucket in range).
    found,
    /// No series with that key.
    missing,
    /// Points came out of time order (a plan query() would also refuse to
    /// finalise; callers fall back to query()).
    unordered,
  };

  /// The points of the one series `key` over q's range, step, align and
  /// aggs, exactly as query() finalises a group that is that series alone
  /// (query_group, "Final form"): appends the non-empty points in time
  /// order to `finals` and their agg values (q.aggs order, NaN where
  /// undefined) to `values`. q.metric, q.where, q.group_by and q.finals are
  /// not used. One hash lookup instead of a scan of the metric's series (the
  /// Prometheus API's inline reads, docs/prometheus-api.md "Latency").
  series_read query_series(std::string_view key, const query_spec& q,
                           std::vector<final_point>& finals,
                           std::vector<double>& values) const;
  void topk(const topk_spec& q, topk_partial& out) const;
  void series(const series_spec& q, series_partial& out) const;
  void metrics(metrics_partial& out) const;

  // -- properties -------------------------------------------------------------

  size_t series_count() const noexcept;
  /// Buckets held (open or sealed; sealed ones hidden by eviction count
  /// until their block is freed).
  size_t bucket_count() const noexcept;
  /// True if a series with this key exists.
  bool contains(std::string_view key) const noexcept;
  /// Walks every series and block: call it for stats, not per event.
  store_memory memory() const;
  uint64_t events_applied() const noexcept;
  const tier_set& tiers() const noexcept;
  const ddsketch_mapping& mapping() const noexcept;

  // -- persistence ------------------------------------------------------------

  /// Appends a versioned binary encoding of the whole state to `out`
  /// (version 4: sealed blocks as they are, docs/storage-format.md).
  void encode(std::string& out) const;

  /// Replaces the state with one decoded from `in` (version 4; versions 3
  /// and 2, whose blocks of codecs 2 and 1 are re-encoded with block codec
  /// 3; or version 1 as written
  /// before sealed blocks: then every bucket comes back open and the next
  /// seal pass seals it). Returns false (state unchanged) on a
  /// version mismatch or malformed input.
  [[nodiscard]] bool decode(std::string_view in);

  /// Same series with the same visible buckets, whether open or sealed
  /// (used by snapshot/replay tests).
  friend bool operator==(const series_store& x, const series_store& y);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace cairn::cqrs
