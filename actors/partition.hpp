// partition: the single writer of the series that hash to it.
//
// Hosts one cqrs::series_store (the projection). Ingest batches are applied
// in arrival order and acknowledged with the number of events applied; with
// persistence on, a batch is first appended to the node's journal and only
// applied and acknowledged once durable. Queries read the projection only
// and answer with mergeable partials. A periodic tick evicts buckets past
// their tier's retention.
//
// Threading: a CAF event-based actor; never blocks a scheduler thread.
#pragma once

#include "actors/messages.hpp"
#include "actors/node_settings.hpp"

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <string>

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
  caf::reacts_to<tick_atom>>;

/// Spawns partition `id` of a node. With a journal in `settings`, the
/// partition recovers its state (snapshot + replay) before it serves.
partition_actor spawn_partition(caf::actor_system& sys, uint32_t id,
                                settings_ptr settings);

} // namespace cairn::actors
