// protocol_op: the request ops of the client protocol (docs/protocol.md).
//
// One enum, one place: a new op is added here, and `unknown_op` errors list
// the known ops from `known_ops()`. Pure values; no threads, no actors.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cairn::cqrs {

enum class protocol_op : uint8_t {
  /// Liveness and status of the node.
  ping,
  /// Counts of the fire-and-forget events since the last flush (barrier).
  flush,
  /// A batch of events, answered once they are acknowledged.
  ingest,
  /// Aggregates over time buckets (barrier).
  query,
  /// The top series by an aggregate (barrier).
  topk,
  /// Series names and tags (barrier).
  series,
  /// Metric names (barrier).
  metrics,
  /// Node statistics (barrier).
  stats,
  /// The cluster view (barrier).
  cluster,
  /// Live subscription: a query's answer, then every closed bucket
  /// (barrier; docs/protocol.md, "Live subscriptions").
  subscribe,
  /// Ends a live subscription by id (barrier).
  unsubscribe,
  /// Presents a JWT for the connection (docs/protocol.md,
  /// "Authentication").
  auth,
  /// Alert rules and history (docs/alerting.md): create, update, delete,
  /// list, get one, history (barriers, answered by the alert manager).
  alert_create,
  alert_update,
  alert_delete,
  alert_list,
  alert_get,
  alert_history,
  /// Membership sagas (docs/sagas.md): list, get one, start a move,
  /// decommission, rebalance or join, abort (barriers, answered by the
  /// saga coordinator's leader).
  saga_list,
  saga_get,
  saga_move,
  saga_decommission,
  saga_rebalance,
  saga_join,
  saga_evict,
  saga_abort,
};

/// Every op, in protocol order.
inline constexpr protocol_op all_protocol_ops[] = {
  protocol_op::ping,   protocol_op::flush,   protocol_op::ingest,
  protocol_op::query,  protocol_op::topk,    protocol_op::series,
  protocol_op::metrics, protocol_op::stats,  protocol_op::cluster,
  protocol_op::subscribe, protocol_op::unsubscribe, protocol_op::auth,
  protocol_op::subscribe, protocol_op::unsubscribe,
  protocol_op::alert_create, protocol_op::alert_update,
  protocol_op::alert_delete, protocol_op::alert_list,
  protocol_op::alert_get, protocol_op::alert_history,
  protocol_op::saga_list, protocol_op::saga_get, protocol_op::saga_move,
  protocol_op::saga_decommission, protocol_op::saga_rebalance,
  protocol_op::saga_join, protocol_op::saga_evict, protocol_op::saga_abort,
};

/// True for the alert.* ops.
constexpr bool is_alert_op(protocol_op op) noexcept {
  return op >= protocol_op::alert_create && op <= protocol_op::alert_history;
}

/// True for the saga.* ops.
constexpr bool is_saga_op(protocol_op op) noexcept {
  return op >= protocol_op::saga_list && op <= protocol_op::saga_abort;
}

/// The wire name of `op`, e.g. "ingest".
std::string_view to_string(protocol_op op) noexcept;

/// The op named `name` (exact, case-sensitive), or nullopt.
[[nodiscard]] std::optional<protocol_op> from_string(std::string_view name) noexcept;

/// True for ops that see every event sent before them on the connection
/// (they wait until those are acknowledged).
bool is_barrier(protocol_op op) noexcept;

/// "ping, flush, ingest, ..." for error messages.
const std::string& known_ops();

} // namespace cairn::cqrs
