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

#include <nlohmann/json.hpp>

#include <functional>
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

/// Reads without the NDJSON pipeline (the Prometheus API's path,
/// docs/prometheus-api.md, "Latency"): `requests` is one protocol request
/// object or an array of them (ops series, query, topk, metrics; others get
/// bad_request); `done` gets the reply object, or the array of replies in
/// order, with the same fields the protocol reply lines carry. The requests
/// of an array are served side by side, except that a `query` right after
/// a `series` with the same metric and `where` waits for it and asks only
/// the partitions holding the series it listed (plus those that did not
/// answer it); the replies show exactly what the two separate requests
/// would, for every series the series reply lists. Answered `unavailable`
/// while the node is not ready (as the pipeline does). `done` is called
/// exactly once, on a CAF worker thread (it must not block), also when the
/// coordinator is gone (every reply then `unavailable`). Any thread.
void direct_read(const caf::actor& coordinator, nlohmann::json requests,
                 std::function<void(nlohmann::json)> done);

} // namespace cairn::actors
