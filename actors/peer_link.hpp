// peer_link: this node's only way to one remote peer — connection keeper,
// circuit-breaker supervisor, credit window and hinted-handoff queue.
//
// One peer_link per peer (docs/cluster.md). It connects to the peer's node
// actor asynchronously through the middleman actor (never blocking a
// scheduler thread), monitors it, and after a down message (death, or a
// frozen peer cut off by CAF's heartbeat timeout) reconnects with
// exponential backoff and jitter; a restarted peer has a new node id.
//
// Requests:
//   (ingest_atom, remote_ingest)  -> uint64_t   events acknowledged
//   (partial_atom, remote_query)  -> remote_partial
//   (cluster_atom)                -> std::string  JSON object of the state
//
// Ingest: while the peer is up and its breaker closed, at most
// `cluster.credits` forwarded messages are in flight; more wait in a queue
// bounded by the gateways' windows (so a slow owner slows the senders).
// While the peer is unreachable, its breaker is not closed, or hints are
// still pending, writes go to the hinted-handoff queue (durable in
// <storage.path>/hints, bounded by cluster.hints_max_bytes; full = error
// `unavailable`) and are acknowledged once durable there. Hints are
// redelivered in order when the peer is back; the owner applies each one
// exactly once (idempotency key per forwarded message).
//
// Queries fail fast while the peer is down or its breaker is not closed;
// the coordinator then lists the peer's partitions as missing.
#pragma once

#include "actors/node_settings.hpp"
#include "cqrs/hint_record.hpp"

#include <caf/actor.hpp>

#include <deque>

namespace cairn::actors {

/// A hint found in the store at start-up.
struct stored_hint {
  uint64_t seq = 0;
  cqrs::hint_record record;
};

/// Reads the pending hints of peer `index` from `settings->cluster.hints`
/// (blocking: call before the actors run, from main's thread).
std::deque<stored_hint> load_hints(const settings_ptr& settings,
                                   uint32_t index);

/// Spawns the link to member `index` of the partition map.
caf::actor spawn_peer_link(caf::actor_system& sys, settings_ptr settings,
                           uint32_t index, std::deque<stored_hint> hints);

} // namespace cairn::actors
