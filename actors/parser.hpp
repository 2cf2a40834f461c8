// parser workers: turn chunks of NDJSON lines into event batches and requests.
//
// The gateway hands each chunk (runtime::chunk) to a pool of parser actors
// (CAF actor_pool, round robin). A worker walks the chunk's lines in order:
// events are validated (simdjson, cqrs::event_parser) into a batch that is
// dispatched to the ingestor when it is full or when a request needs it;
// requests are answered in line order. Barrier requests (flush, query, topk,
// series, metrics, stats) wait until every event before them on the
// connection is acknowledged, so they see everything sent before them. The
// chunk is completed (replies handed back to the gateway) once all its
// events are acknowledged and all its requests answered.
//
// Never blocks: waiting is done with request(...).then(...).
#pragma once

#include "actors/node_settings.hpp"

#include <caf/actor.hpp>

#include <cstdint>
#include <string_view>

namespace cairn::actors {

/// What a parser worker does with a request line.
enum class request_route : uint8_t {
  /// Validate the events and answer once the ingestor acknowledged them.
  ingest,
  /// Answered by the parser itself.
  ping,
  /// Answered by the parser itself (the connection's counters).
  flush,
  /// Forwarded to the query coordinator.
  coordinator,
  /// subscribe / unsubscribe: handed to the live hub with the connection's
  /// stream (actors/live/live_hub.hpp).
  live,
  /// alert.*: forwarded to the alert manager (actors/alerts/alert_manager).
  alerts,
  /// saga.*: forwarded to the saga coordinator
  /// (actors/sagas/saga_coordinator.hpp).
  sagas,
  /// `unavailable`: the node is recovering or stopping.
  unavailable,
  /// `bad_request`: "op" is empty or not a string.
  bad_request,
  /// `unknown_op`: not one of cqrs::all_protocol_ops.
  unknown_op,
};

/// The route of a request with op `op` (empty if "op" is not a string)
/// while the node is in `status`. A pure function of one status value: the
/// caller reads the status once and uses the same value for the reply.
request_route route_request(std::string_view op, node_status status) noexcept;

/// Spawns `settings->parsers` parser workers behind one actor_pool handle.
/// `live` is the live hub (null: subscribe is answered `unavailable`),
/// `alerts` the alert manager (null: alert.* ops are `unavailable`).
caf::actor spawn_parser_pool(caf::actor_system& sys, settings_ptr settings,
                             caf::actor ingestor, caf::actor coordinator,
                             caf::actor live = {}, caf::actor alerts = {},
                             caf::actor sagas = {});

} // namespace cairn::actors
