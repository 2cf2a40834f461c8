// live_hub: the node's live subscriptions (docs/protocol.md, "Live
// subscriptions"; docs/architecture.md, "Live subscriptions").
//
// One per node. Clients reach it with (request_atom, stream_sink_ptr, line)
// — from a WebSocket of /v1/live (runtime/http_server) or from a parser for
// an NDJSON connection — where line is a subscribe or unsubscribe request.
// The hub validates the request, keeps each client's subscriptions (at most
// cairn.live.max-subscriptions), and keeps one live_subscription actor per
// distinct normalized query, shared by every client that asked it: spawned
// on the first subscribe, stopped when its last client left (unsubscribe,
// or the client's connection closed).
//
// While any subscription exists the hub is subscribed to every partition's
// closed-bucket stream (actors/partition.hpp) and forwards each batch's
// finest-tier buckets, grouped by metric, to the subscriptions of that
// metric. Replies go to the client's stream_sink: acks and errors as
// messages that are never dropped, updates coalescing per subscription id.
//
// Threading: a CAF event-based actor; never blocks.
#pragma once

#include "actors/node_settings.hpp"
#include "actors/partition.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <vector>

namespace cairn::actors {

/// Spawns the hub. Registers the gauges cairn_live_subscriptions and
/// cairn_live_clients and the counters cairn_live_updates_total and
/// cairn_live_coalesced_total in settings->metrics. Stop it with an exit
/// message (its subscriptions are linked to it and stop with it).
/// In a cluster, `links` (by member index, null for this node) carry the
/// hub's follow requests to the other members' hubs.
caf::actor spawn_live_hub(caf::actor_system& sys, settings_ptr settings,
                          std::vector<partition_actor> partitions,
                          caf::actor coordinator,
                          std::vector<caf::actor> links = {});

} // namespace cairn::actors
