// node_actor: the actor a node publishes on its cluster port.
//
// Everything outside the node that speaks CAF (peer nodes, cairn-console)
// reaches the node through this actor. Its generic entry point is
//   (request_atom, string request_json) -> string reply_json
// where the request is an object with a "cmd" field; commands are routed to
// the handler registered for them (console commands, cluster commands). The
// reply is an object with "ok" and either the result fields or "error".
//
// Peers also use typed messages added by the cluster layer.
#pragma once

#include "actors/node.hpp"
#include "actors/node_settings.hpp"

#include <caf/actor.hpp>

namespace cairn::actors {

/// Spawns the node actor for `n` (which must outlive the actor) and
/// introduces it to the peer links, which then dial their peers.
caf::actor spawn_node_actor(caf::actor_system& sys, node& n);

} // namespace cairn::actors
