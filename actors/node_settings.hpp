// node_settings: the immutable, derived settings every actor of a node reads,
// plus the node-wide shared counters.
//
// Built once from runtime::node_config by make_node_settings (which parses
// tiers and durations and throws std::invalid_argument on bad values), then
// shared read-only via shared_ptr<const node_settings>. The atomics are the
// only mutable members and are safe from any thread.
#pragma once

#include "cqrs/ddsketch.hpp"
#include "cqrs/event_parser.hpp"
#include "cqrs/tier.hpp"
#include "runtime/metrics.hpp"
#include "runtime/node_config.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

namespace cairn::runtime {
class journal;
} // namespace cairn::runtime

namespace cairn::actors {

/// Node status as reported by ping.
enum class node_status : uint8_t { recovering, ready, stopping };

const char* to_string(node_status s) noexcept;

struct node_settings {
  std::string node_name;
  std::string version = "0.1.0";
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
  std::chrono::milliseconds evict_interval{5000};

  // -- persistence (valid when journal != nullptr) ----------------------------
  std::shared_ptr<runtime::journal> journal;
  uint64_t snapshot_every_events = 1000000;
  std::chrono::milliseconds snapshot_interval{60000};
  size_t snapshot_keep = 2;
  cqrs::millis raw_retention = 0;
  bool skip_corrupt = false;
  size_t idempotency_keys = 100000;
  cqrs::millis idempotency_window = 24LL * 3600 * 1000;

  // -- shared state -----------------------------------------------------------
  std::shared_ptr<runtime::metrics_registry> metrics;
  mutable std::atomic<node_status> status{node_status::recovering};
  mutable std::atomic<uint32_t> partitions_recovering{0};
  cqrs::millis started_at = 0;
};

using settings_ptr = std::shared_ptr<const node_settings>;

/// Derives node settings from the parsed config. Throws
/// std::invalid_argument with a readable message on a bad option.
std::shared_ptr<node_settings> make_node_settings(
  const runtime::node_config& cfg);

} // namespace cairn::actors
