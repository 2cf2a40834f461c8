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
#include "actors/store_access.hpp"
#include "cqrs/ddsketch.hpp"
#include "cqrs/event_parser.hpp"
#include "cqrs/partition_map.hpp"
#include "cqrs/series_index.hpp"
#include "cqrs/series_registry.hpp"
#include "cqrs/tier.hpp"
#include "runtime/auth/access_control.hpp"
#include "runtime/circuit_breaker.hpp"
#include "runtime/metrics.hpp"
#include "runtime/node_config.hpp"

#include <nlohmann/json_fwd.hpp>

#include <atomic>
#include <functional>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace cairn::runtime {
class journal;
} // namespace cairn::runtime

namespace cairn::actors {

/// Node status as reported by ping.
enum class node_status : uint8_t { recovering, ready, stopping };

const char* to_string(node_status s) noexcept;

/// The cluster part of the settings (docs/cluster.md). Disabled (single
/// node) when cairn.cluster.nodes is empty.
struct cluster_settings {
  bool enabled = false;
  std::string self_name;
  uint32_t self_index = 0;
  /// The partition map (version 1 from the config). Members are indexed
  /// like map->nodes() (sorted names).
  std::shared_ptr<const cqrs::partition_map> map;
  std::vector<cqrs::member_address> members;
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds connection_timeout{4000};
  std::chrono::milliseconds request_timeout{2000};
  std::chrono::milliseconds ingest_timeout{5000};
  std::chrono::milliseconds reconnect_min{200};
  std::chrono::milliseconds reconnect_max{5000};
  runtime::breaker_options breaker;
  size_t credits = 8;
  size_t hints_max_bytes = 256u << 20;
  bool tls = false;
  /// TLS: member name -> loopback port of this node's outbound tunnel to it
  /// (docs/cluster.md, "Cluster gate"); the link dials that in plain BASP.
  std::map<std::string, uint16_t> tls_tunnels;
  /// The hinted-handoff store (<storage.path>/hints; null = in memory).
  std::shared_ptr<runtime::journal> hints;
  /// Who holds unapplied hinted writes for which partition, cluster-wide
  /// (null when disabled; docs/cluster.md, "The completeness invariant").
  std::shared_ptr<hint_view> pending;

  /// True if partition `p` is owned by this node (always when disabled).
  bool local(uint32_t p) const noexcept {
    return !enabled || map->owner_index(p) == self_index;
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
  uint64_t bytes_per_second = 64u << 20;
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
  size_t parsers = 2;
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
std::shared_ptr<node_settings> make_node_settings(
  const runtime::node_config& cfg);

} // namespace cairn::actors
