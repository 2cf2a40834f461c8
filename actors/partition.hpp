// partition: the single writer of the series that hash to it.
//
// Hosts one cqrs::series_store (the projection). Ingest batches are applied
// in arrival order and acknowledged with the number of events applied; with
// persistence on, a batch is first appended to the node's journal and only
// applied and acknowledged once durable. Queries read the projection only
// and answer with mergeable partials. A periodic tick evicts buckets past
// their tier's retention. Subscribed actors get the buckets that closed
// (the closed-bucket stream, docs/architecture.md). For a partition move it
// answers the handoff primitives (docs/sagas.md, "Partition handoff"):
// frozen, it holds ingest behind a durable marker and exports its state;
// as a target it imports one; a partition this node does not own answers
// ingest with `moved`.
//
// Threading: a CAF event-based actor; never blocks a scheduler thread.
#pragma once

#include "actors/messages.hpp"
#include "actors/node_settings.hpp"

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <string>

namespace cairn::actors {

/// State of a partition rebuilt from its newest valid snapshot plus the
/// journal after it (built on a recovery thread, then moved into the actor).
struct recovered_partition;
using recovered_partition_ptr = std::shared_ptr<recovered_partition>;

/// Rebuilds partition `id` from `settings->journal` (blocking I/O: call it on
/// a thread of its own, never on a CAF scheduler thread). Throws
/// std::runtime_error naming the partition and sequence when a journal
/// record is corrupt and skip-corrupt is off.
recovered_partition_ptr recover_partition(uint32_t id,
                                          const settings_ptr& settings);

/// Number of journal events replayed into `r`.
uint64_t replayed_events(const recovered_partition& r) noexcept;

} // namespace cairn::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::recovered_partition_ptr)

namespace cairn::actors {

using partition_actor = caf::typed_actor<
  // Applies `batch`; the reply is the number of events applied (0 when the
  // idempotency key, if not empty, was seen before).
  caf::replies_to<ingest_atom, cqrs::event_batch, std::string>::with<uint64_t>,
  caf::replies_to<query_atom, query_spec_ptr>::with<cqrs::query_partial>,
  caf::replies_to<topk_atom, topk_spec_ptr>::with<cqrs::topk_partial>,
  caf::replies_to<series_atom, series_spec_ptr>::with<cqrs::series_partial>,
  caf::replies_to<metrics_atom>::with<cqrs::metrics_partial>,
  caf::replies_to<stats_atom>::with<partition_stats>,
  // Takes a snapshot now (persistence on); replies with the covered seq.
  caf::replies_to<snapshot_atom>::with<uint64_t>,
  caf::reacts_to<tick_atom>,
  // Closed-bucket stream (docs/architecture.md): `subscriber` gets
  // (closed_atom, closed_batch_ptr) after every pass that published
  // buckets, until it unsubscribes or terminates (monitored). While there
  // are subscribers the partition runs a close pass at every window end of
  // the finest tier plus `cairn.live.grace`.
  caf::reacts_to<subscribe_atom, caf::actor>,
  caf::reacts_to<unsubscribe_atom, caf::actor>,
  caf::reacts_to<close_atom>,
  // From the journal's committer thread: the write of record `seq` is done.
  caf::reacts_to<journaled_atom, uint64_t, bool, std::string>,
  // From the journal: the snapshot covering `seq` is written.
  caf::reacts_to<snapshot_atom, uint64_t, bool, std::string>,
  // From the node's recovery thread: the recovered state to serve.
  caf::reacts_to<recovered_atom, recovered_partition_ptr>,
  // Partition handoff (docs/sagas.md, "Partition handoff"): freeze, export,
  // import, release, drop, status; and the journal's word that a handoff
  // write (`ticket`) is durable.
  caf::replies_to<handoff_atom, handoff_request>::with<handoff_reply>,
  caf::reacts_to<handoff_atom, uint64_t, bool, std::string>>;

/// Spawns partition `id` of a node. With a journal in `settings`, the
/// partition starts empty and refuses ingest until it receives its recovered
/// state (see recover_partition); without one it serves at once.
partition_actor spawn_partition(caf::actor_system& sys, uint32_t id,
                                settings_ptr settings);

} // namespace cairn::actors
