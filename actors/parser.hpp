// parser workers: turn chunks of NDJSON lines into event batches and requests.
//
// The gateway hands each chunk (runtime::chunk) to a pool of parser actors
// (CAF actor_pool, round robin). A worker walks the chunk's lines in order:
// events are validated (simdjson, cqrs::event_parser) into a batch that is
// dispatched to the ingestor when it is full or when a request needs it;
// requests are answered in line order. Barrier requests (flush, query, topk,
// series, metrics, stats) wait until every event before them on the
// connection is acknowledged, so they see everything sent before them. The
// chunk is completed (replies handed back to the gateway) once all its
// events are acknowledged and all its requests answered.
//
// Never blocks: waiting is done with request(...).then(...).
#pragma once

#include "actors/node_settings.hpp"

#include <caf/actor.hpp>

namespace cairn::actors {

/// Spawns `settings->parsers` parser workers behind one actor_pool handle.
caf::actor spawn_parser_pool(caf::actor_system& sys, settings_ptr settings,
                             caf::actor ingestor, caf::actor coordinator);

} // namespace cairn::actors
