// seed_join: how a node started with cairn.cluster.seeds (and no
// cairn.cluster.nodes) becomes a member of a running cluster
// (docs/cluster.md, "Joining through seeds").
//
// Before the node's own actor system exists, a short-lived one connects to
// a seed's cluster port (TLS when cairn.cluster.tls-* is set) and asks, as
// the console's `sagas` command would, for {"op":"saga.join","node":NAME,
// "address":ADVERTISED}. The saga leader appends the node to the partition
// map and starts a join saga; the reply carries that map, from which the
// node then starts like any member (make_node_settings persists it).
#pragma once

#include "cqrs/partition_map.hpp"
#include "runtime/node_config.hpp"

#include <chrono>
#include <optional>

namespace cairn::actors {

/// True if `cfg` asks to join through seeds now: seeds set, no
/// cairn.cluster.nodes, and no partition map persisted by an earlier run
/// (a node that joined once restarts from its own map).
bool wants_seed_join(const runtime::node_config& cfg);

/// Asks the seeds in turn, until one admits this node or `patience` is
/// over (a seed without a saga leader yet answers "unavailable": asked
/// again). Throws std::runtime_error naming the seeds and the last answer
/// when none did, or at once when the leader refuses the join (a name at
/// another address).
cqrs::partition_map
join_through_seeds(const runtime::node_config& cfg,
                   std::chrono::seconds patience = std::chrono::seconds{60});

} // namespace cairn::actors
