// ingestor: routes event batches to their partitions with credit-based flow
// control and acknowledges a request once every partition has.
//
// Request: (ingest_atom, vector<event_batch> by_partition, string key) where
// by_partition[p] holds partition p's events (may be empty). Reply: the
// number of events applied (uint64_t), after all partitions acknowledged;
// an error if any partition failed or timed out.
//
// Each partition has at most `partition_credits` batches in flight; further
// sub-batches wait in a per-partition queue. The queue is bounded by the
// gateway's windows (connections x window x chunk), so nothing grows without
// bound. Later the cluster issue routes remote partitions through here.
#pragma once

#include "actors/node_settings.hpp"
#include "actors/partition.hpp"

#include <caf/actor.hpp>

#include <vector>

namespace cairn::actors {

caf::actor spawn_ingestor(caf::actor_system& sys, settings_ptr settings,
                          std::vector<partition_actor> partitions);

} // namespace cairn::actors
