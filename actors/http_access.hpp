// http_access: authentication and rate limits of the HTTP port
// (docs/protocol.md, "Authentication", "Rate limits").
//
// The guard runs for every request but /healthz and static files, on the
// HTTP server's I/O threads, before the body is handed on: the Bearer token
// (or, for a WebSocket upgrade, a `bearer.<token>` entry of
// Sec-WebSocket-Protocol), the scope the path needs, and one request of the
// principal's rate. It answers 401 / 403 / 429 itself; otherwise the request
// carries its principal. POST /api checks each op's scope in the parser
// like the NDJSON port (actors/parser.cpp); the other paths are decided
// here by path. WebSocket messages are checked one by one (ws_admit): an
// unauthenticated socket must send {"op":"auth","token":..} first.
#pragma once

#include "actors/node_settings.hpp"
#include "runtime/http_server.hpp"
#include "runtime/stream_sink.hpp"

#include <memory>
#include <string>

namespace cairn::actors {

/// The HTTP server's guard for the node's access policy.
runtime::http_server::guard_fn make_http_guard(settings_ptr settings);

/// A WebSocket message of /v1/live: true if it may go to the live hub;
/// false if it was answered here (an `auth` message, or a refusal sent
/// through `sink`).
bool ws_admit(const node_settings& settings,
              const std::shared_ptr<runtime::stream_sink>& sink,
              const std::string& message);

/// The principal of the Prometheus query API's internal requests: the
/// guard checked the HTTP request (scope query, its rate) already.
std::shared_ptr<const runtime::auth::principal> prometheus_principal();


/// Adds the access figures to `stats` (an "auth" object: the policy, the
/// node-wide counters and each principal's) and /metrics (the counters,
/// labelled by principal). Call once, after gateway_stats is set.
void publish_access_stats(node_settings& settings);

} // namespace cairn::actors
