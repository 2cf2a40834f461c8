// write_routes: the HTTP ingest endpoints of other ecosystems
// (docs/integrations.md).
//
//   POST /write          Influx line protocol (InfluxDB 1.x and 2.x style;
//   POST /api/v2/write   the same under InfluxDB 2.x's path):
//                        ?precision=ns|us|ms|s (default ns; also n, u);
//                        db, bucket, org, rp, u, p are accepted and ignored.
//                        204 when every line was stored; 400 with a JSON body
//                        listing the line numbers and codes of the lines and
//                        fields not stored (the others still count); 503 if
//                        the node is not ready or events were not
//                        acknowledged.
//   POST /api/v1/write   Prometheus remote_write 1.0 (snappy + protobuf):
//                        204 once the samples are acknowledged, also when
//                        some were invalid (counted and logged); 400 when the
//                        body cannot be decoded or no sample could be stored;
//                        503 when the node is not ready.
//
// Both go through the parser pool as one chunk of their own format, so they
// share NDJSON's validation, batching, backpressure and durability: the
// answer is sent only after the ingestor acknowledged the events (journaled
// when persistence is on). Handlers run on the HTTP I/O threads and only
// send a message; `dispatch` must be thread-safe and never block.
#pragma once

#include "runtime/connection_context.hpp"
#include "runtime/http_server.hpp"

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace cairn::actors {

/// How a route hands a chunk to the processing side (actors::node::dispatch).
using chunk_dispatch = std::function<void(runtime::chunk)>;

/// The value of query parameter `name` in `query` (percent-decoded, '+' as
/// space), or nullopt if absent.
std::optional<std::string> query_param(std::string_view query,
                                       std::string_view name);

/// Adds POST /write, /api/v2/write and /api/v1/write to `http` (before
/// start()).
void add_write_routes(runtime::http_server& http, chunk_dispatch dispatch);

} // namespace cairn::actors
