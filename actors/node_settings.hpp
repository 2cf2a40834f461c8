// node_settings: the derived settings every actor of a node reads, plus the
// node-wide shared state.
//
// Built once from runtime::node_config by make_node_settings (which parses
// tiers and durations and throws std::invalid_argument on bad values), then
// shared via shared_ptr<const node_settings>: the plain values never change
// after that. What does change is shared state with its own thread-safety:
// the atomics (any thread), the journals and the hint store (their own
// threading contract, runtime/journal.hpp), the metrics registry, and the
// cluster's hint view (a mutex, actors/hint_view.hpp).
#pragma once

#include "actors/hint_view.hpp"
#include "actors/member_table.hpp"
#include "actors/store_access.hpp"
#include "cqrs/ddsketch.hpp"
#include "cqrs/event_parser.hpp"
#include "cqrs/partition_map.hpp"
#include "cqrs/series_index.hpp"
#include "cqrs/series_registry.hpp"
#include "cqrs/tier.hpp"
#include "runtime/auth/access_control.hpp"
#include "runtime/circuit_breaker.hpp"
#include "runtime/ingest_costs.hpp"
#include "runtime/metrics.hpp"
#include "runtime/node_config.hpp"

#include <nlohmann/json_fwd.hpp>

#include <atomic>
#include <functional>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace cairn::runtime {
class journal;
} // namespace cairn::runtime

namespace cairn::actors {

/// Node status as reported by ping.
enum class node_status : uint8_t { recovering, ready, stopping };

const char* to_string(node_status s) noexcept;

/// The cluster's current partition map (docs/cluster.md, "Partition map").
///
/// Starts with the map of the config (version 1) or the one persisted at
/// `path` (a higher version, loaded at start). `adopt` replaces it by a map
/// with a higher version once that map is durable at `path`. Thread-safe:
/// the hot paths (`local`, `owner_index`, `version`, `self_left`) read
/// atomics without a lock; `current` and `adopt` take a mutex. Each
/// partition's owner is read atomically; a reader racing an adopt may see
/// some partitions by the old and some by the new version (each answer is
/// the owner by one of them), never a torn value.
class map_holder {
public:
  /// `path` empty: adopted maps are kept in memory only (persistence off).
  map_holder(cqrs::partition_map initial, uint32_t self, std::string path);

  // -- hot paths (lock-free) --------------------------------------------------

  /// True if this node owns partition `p` (p < partitions).
  bool local(uint32_t p) const noexcept {
    return owners_[p].load(std::memory_order_acquire) == self_;
  }
  uint32_t owner_index(uint32_t p) const noexcept {
    return owners_[p].load(std::memory_order_acquire);
  }
  uint64_t version() const noexcept {
    return version_.load(std::memory_order_acquire);
  }
  /// True if the current map says this node left the cluster.
  bool self_left() const noexcept {
    return self_left_.load(std::memory_order_acquire);
  }
  uint32_t partitions() const noexcept { return partitions_; }

  /// Partition p is being handed off (frozen at this node): the ingestor
  /// keeps a copy of the batches it sends it, to re-route those the
  /// partition answers `moved` (docs/cluster.md, "Partition map"). Set and
  /// cleared by the node actor as handoff commands pass.
  bool retained(uint32_t p) const noexcept {
    return retain_[p].load(std::memory_order_acquire);
  }
  void retain(uint32_t p, bool on) noexcept {
    if (p < partitions_)
      retain_[p].store(on, std::memory_order_release);
  }

  // -- the map itself ---------------------------------------------------------

  std::shared_ptr<const cqrs::partition_map> current() const;

  struct adopt_result {
    bool ok = false;
    /// The map was swapped in (false: its version was not higher).
    bool changed = false;
    /// The current version after the call.
    uint64_t version = 0;
    /// When !ok: a stable code ("incompatible", "storage") and a text.
    std::string code;
    std::string error;
  };

  /// Persists `m` (write-temp, fsync, rename, fsync of the directory) and
  /// swaps it in if its version is higher than the current one; a map that
  /// is not higher changes nothing and is ok. Refused (`incompatible`) if
  /// its partition count differs or the current members are not its first
  /// members (cqrs::partition_map::compatible).
  /// Returns after `m` is durable. Blocks on the file system: callable from
  /// any thread, adopts are serialized.
  adopt_result adopt(const cqrs::partition_map& m);

  /// Adds `f`, called (under the adopt lock, after the swap) with every
  /// new map; listeners run in the order they were added. Add them before
  /// any thread adopts.
  void on_change(std::function<void(const cqrs::partition_map&)> f) {
    on_change_.push_back(std::move(f));
  }

  const std::string& path() const noexcept { return path_; }

  /// Reads a map persisted by adopt at `path`: nullopt if there is no file;
  /// throws std::invalid_argument if it does not decode.
  static std::optional<cqrs::partition_map> load(const std::string& path);

private:
  void publish_locked(std::shared_ptr<const cqrs::partition_map> m);

  uint32_t self_;
  uint32_t partitions_;
  std::string path_;
  std::unique_ptr<std::atomic<uint32_t>[]> owners_;
  std::unique_ptr<std::atomic<bool>[]> retain_;
  std::atomic<uint64_t> version_{0};
  std::atomic<bool> self_left_{false};
  mutable std::mutex mtx_;  ///< guards current_
  std::mutex adopt_mtx_;    ///< serializes adopt
  std::shared_ptr<const cqrs::partition_map> current_;
  std::vector<std::function<void(const cqrs::partition_map&)>> on_change_;
};

/// The cluster part of the settings (docs/cluster.md). Disabled (single
/// node) when cairn.cluster.nodes is empty.
struct cluster_settings {
  bool enabled = false;
  std::string self_name;
  uint32_t self_index = 0;
  /// The current partition map (version 1 from the config, or a higher one
  /// persisted by an earlier run). Members are indexed like the map's
  /// nodes() (an index never changes; members that joined are appended).
  std::shared_ptr<map_holder> map;
  /// The members' addresses and this node's links to them (null when
  /// disabled; grows when a node joins, actors/member_table.hpp).
  std::shared_ptr<member_table> members;
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds connection_timeout{4000};
  std::chrono::milliseconds request_timeout{2000};
  std::chrono::milliseconds ingest_timeout{5000};
  std::chrono::milliseconds reconnect_min{200};
  std::chrono::milliseconds reconnect_max{5000};
  runtime::breaker_options breaker;
  size_t credits = 8;
  size_t hints_max_bytes = 256u << 20;
  /// TLS: the links dial this node's outbound tunnels on loopback in plain
  /// BASP (member_table::tunnel; docs/cluster.md, "Cluster gate").
  bool tls = false;
  /// The hinted-handoff store (<storage.path>/hints; null = in memory).
  std::shared_ptr<runtime::journal> hints;
  /// Who holds unapplied hinted writes for which partition, cluster-wide
  /// (null when disabled; docs/cluster.md, "The completeness invariant").
  std::shared_ptr<hint_view> pending;

  /// True if partition `p` is owned by this node (always when disabled).
  bool local(uint32_t p) const noexcept {
    return !enabled || map->local(p);
  }
};

/// Alerting (docs/alerting.md; cairn.alerts.*).
struct alerts_settings {
  bool enabled = true;
  /// LevelDB directory of rules, state journal, outbox and history
  /// (<storage.path>/alerts; empty = in memory).
  std::string path;
  size_t max_connections = 4;
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds request_timeout{5000};
  std::chrono::milliseconds idle_timeout{30000};
  std::string tls_ca_file;
  cqrs::millis retry_initial = 200;
  cqrs::millis retry_cap = 30000;
  uint32_t max_attempts = 10;
  size_t history = 10000;
};

/// What the saga coordinator shows in `stats` (docs/sagas.md, "Client
/// ops"): a JSON object it replaces every tick. Any thread.
class saga_board {
public:
  void set(std::string json) {
    std::lock_guard<std::mutex> guard{mtx_};
    json_ = std::move(json);
  }
  std::string get() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return json_;
  }

private:
  mutable std::mutex mtx_;
  std::string json_;
};

/// Membership sagas (docs/sagas.md; cairn.cluster.rebalance-*).
struct saga_settings {
  /// LevelDB directory of this member's copy of the saga log
  /// (<storage.path>/sagas; empty = in memory).
  std::string path;
  size_t concurrency = 2;
  uint64_t bytes_per_second = 16u << 20;
  size_t chunk_bytes = 1u << 20;
  /// Finished sagas kept in the log.
  size_t history = 200;
  /// Written by the saga coordinator, read by `stats`.
  std::shared_ptr<saga_board> board = std::make_shared<saga_board>();
};

struct node_settings {
  std::string node_name;
  std::string version = CAIRN_VERSION;
  uint32_t partitions = 16;
  /// Parser actors: the fixed count, or with `parsers_auto` the pool's
  /// size at start (parsers_max) and bounds [1, parsers_max]
  /// (docs/architecture.md, "Ingest path").
  size_t parsers = 2;
  bool parsers_auto = false;
  size_t parsers_max = 2;
  /// Parser time spent on chunks, summed over the parsers (ns; the pool's
  /// sizer reads it), and the pool's current size and resizes (stats).
  mutable std::atomic<int64_t> parser_busy_ns{0};
  mutable std::atomic<size_t> parser_count{0};
  mutable std::atomic<uint64_t> parser_resizes{0};
  size_t partition_credits = 8;
  cqrs::tier_set tiers;
  cqrs::ddsketch_mapping mapping;
  cqrs::event_limits limits;

  /// Largest number of events a parser groups into one batch before it
  /// dispatches it (batching on every hop, bounded memory).
  size_t max_batch_events = 4096;

  std::chrono::milliseconds ingest_timeout{60000};
  std::chrono::milliseconds query_timeout{10000};
  /// Period of a partition's housekeeping tick: retention eviction and the
  /// time-based snapshot check (so snapshot intervals >= 1 s are honoured).
  std::chrono::milliseconds evict_interval{1000};
  /// Lateness horizon of the compact store (cairn.ingest.seal-after).
  cqrs::millis seal_after = 2000;
  /// Live: a bucket counts as closed this long after its window ended
  /// (cairn.live.grace; at most seal_after).
  cqrs::millis live_grace = 200;
  /// Live: subscriptions per client (cairn.live.max-subscriptions).
  size_t live_max_subscriptions = 64;
  /// Live: the open bucket's running value at most this often
  /// (cairn.live.running-interval) for subscriptions that ask for it.
  cqrs::millis live_running_interval = 1000;
  /// Series per node (cairn.limits.max-series, 0 = none).
  size_t max_series = 0;
  /// The series of this node's partitions, for the cardinality guard:
  /// partitions insert/erase, parsers check (thread-safe).
  std::shared_ptr<cqrs::series_registry> series_registry;
  /// The series of this node's partitions by metric, for direct reads'
  /// `series` requests (cqrs/series_index.hpp; partitions attach once
  /// recovered). Null: every partition is asked.
  std::shared_ptr<cqrs::series_index> series_index;
  /// Reads of the partitions' stores from other threads (the Prometheus
  /// API's inline reads, actors/store_access.hpp; partitions attach once
  /// recovered). Null: none.
  std::shared_ptr<store_access> stores;

  // -- persistence (valid when journal != nullptr) ----------------------------
  std::shared_ptr<runtime::journal> journal;
  uint64_t snapshot_every_events = 1000000;
  std::chrono::milliseconds snapshot_interval{60000};
  size_t snapshot_keep = 2;
  cqrs::millis raw_retention = 0;
  bool skip_corrupt = false;
  size_t idempotency_keys = 100000;
  cqrs::millis idempotency_window = 24LL * 3600 * 1000;

  cluster_settings cluster;
  alerts_settings alerts;
  saga_settings sagas;

  // -- shared state -----------------------------------------------------------
  std::shared_ptr<runtime::metrics_registry> metrics;
  /// The ingest path's cost budget (runtime/ingest_costs.hpp); may be null.
  std::shared_ptr<runtime::ingest_costs> costs;
  mutable std::atomic<node_status> status{node_status::recovering};
  mutable std::atomic<uint32_t> partitions_recovering{0};
  /// Bytes held by the hinted-handoff queues of all peers together.
  mutable std::atomic<size_t> hint_bytes{0};
  cqrs::millis started_at = 0;
  /// Wall time the node took to recover all partitions (ms), once ready.
  mutable std::atomic<int64_t> recovery_ms{0};
  /// Authentication and rate limits of the client ports (docs/protocol.md,
  /// "Authentication"); never null after make_node_settings.
  std::shared_ptr<runtime::auth::access_control> access;
  /// Adds the gateway's connection figures to a stats reply (set by main
  /// before the gateway starts; reads the gateway's thread-safe counters).
  std::function<void(nlohmann::json&)> gateway_stats;
};

using settings_ptr = std::shared_ptr<const node_settings>;

/// Derives node settings from the parsed config. Throws
/// std::invalid_argument with a readable message on a bad option.
/// `joined`: the partition map a seed answered this node's join with
/// (cairn.cluster.seeds, docs/cluster.md "Joining through seeds"); it is
/// persisted and used as the cluster's map.
std::shared_ptr<node_settings> make_node_settings(
  const runtime::node_config& cfg,
  const cqrs::partition_map* joined = nullptr);

} // namespace cairn::actors
