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
// bound.
//
// Cluster (docs/cluster.md): the ingestor is the router. Partitions owned by
// another node are grouped by owner into one remote_ingest per owner and
// handed to that owner's peer link (credits, breaker, hinted handoff); the
// request is acknowledged once the owners acknowledged durably (or the
// hints are durable here). Each forwarded message carries an idempotency
// key (the client's, or a generated unique one) so redelivery is exactly
// once. (forward_atom, remote_ingest) -> uint64_t applies a peer's
// forwarded events to local partitions.
#pragma once

#include "actors/node_settings.hpp"
#include "actors/partition.hpp"

#include <caf/actor.hpp>

#include <vector>

namespace cairn::actors {

/// `links[i]` is the peer link of map member i (null for this node; empty
/// vector for a single node).
caf::actor spawn_ingestor(caf::actor_system& sys, settings_ptr settings,
                          std::vector<partition_actor> partitions,
                          std::vector<caf::actor> links = {});

} // namespace cairn::actors
