// query_coordinator: answers read requests by scatter/gather over partitions.
//
// Request: (query_atom, string request_json) for the ops query, topk, series,
// metrics and stats. The coordinator parses and validates the request (cqrs
// query model), sends the partial request to every partition in parallel,
// merges the partials as they arrive (exact merges), renders the reply and
// answers with the reply line (string, without newline). A partition that
// does not answer within the query timeout is listed as missing and the reply
// says "partial": true. Client errors come back as error reply lines, not as
// CAF errors.
#pragma once

#include "actors/node_settings.hpp"
#include "actors/partition.hpp"

#include <caf/actor.hpp>

#include <vector>

#include "actors/messages.hpp"

namespace cairn::actors {

/// `links[i]` is the peer link of map member i (null for this node; empty
/// for a single node). Also answers (partial_atom, remote_query) ->
/// remote_partial for peers (a partial over the listed local partitions)
/// and the "cluster" op (membership view and partition map).
caf::actor spawn_query_coordinator(caf::actor_system& sys,
                                   settings_ptr settings,
                                   std::vector<partition_actor> partitions,
                                   std::vector<caf::actor> links = {});

} // namespace cairn::actors
