// http_server: the node's HTTP side (Boost.Beast): Prometheus metrics, a
// health check, the JSON API and the dashboard's static files.
//
//   GET  /metrics   text/plain Prometheus exposition of a metrics_registry
//   GET  /healthz   200 "ok" (liveness: the process answers)
//   GET  /readyz    200 "ok" when `readiness` says so, else 503 with its
//                   reason and Retry-After
//   errors          every error has its status: 400 / 401 / 403 / 404 from
//                   the handlers, 405 with an Allow header for a known path
//                   and the wrong method, 413 for a body over `max_body`,
//                   426 for a WebSocket path without the upgrade, 503 for
//                   too many connections (JSON bodies where /api is
//                   concerned: clients read the body on any status)
//   POST /api       body = one JSON request of the TCP protocol; answered
//                   through the api_handler with (status, json)
//   routes          handlers added with route() before start(): exact paths
//                   or prefixes ("/api/v1/"), any method, raw body and
//                   headers in, status + content type + body out
//   websockets      paths added with websocket() before start(): a GET
//                   with a WebSocket upgrade becomes a WebSocket
//                   (Boost.Beast); each text message from the client goes to
//                   the handler with the connection's stream_sink, through
//                   which the server pushes messages (runtime/stream_sink).
//                   They are counted apart from HTTP connections
//                   (`max_websockets`, more get 503), take messages up to
//                   `ws_max_message` bytes (larger: closed with 1009), and
//                   are pinged when idle for `ws_ping_interval` (silent for
//                   two intervals: closed)
//   GET  /, /<file> static files below `web_root` ("/" -> index.html);
//                   paths with "..", backslashes or NUL are refused (404),
//                   as is anything resolving outside the root (symlinks)
//   anything else   404 (405 for a known path with the wrong method)
//
// Keep-alive is supported (one request at a time per connection, in order).
// A connection waiting for its next request longer than `idle_timeout` is
// closed; once the first byte of a request arrived, its header and body must
// be complete within `read_timeout` (a slow sender is cut off). A request
// already handed to the API handler is never affected.
// Runs its own I/O threads; `api_handler` is called on them and must not
// block: it should send an actor message and call `reply` later, from any
// thread, exactly once. A reply for a connection that has closed, or after
// stop(), is dropped. The registry must outlive the server.
#pragma once

#include "runtime/auth/principal.hpp"
#include "runtime/metrics.hpp"
#include "runtime/stream_sink.hpp"
#include "runtime/tls_options.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cairn::runtime {

struct http_server_options {
  std::string host = "127.0.0.1";
  uint16_t port = 7480;  ///< 0 = ephemeral
  std::string web_root;  ///< empty = no static files
  size_t io_threads = 1;
  size_t max_body = 8 << 20;  ///< larger request bodies get 413
  /// More connections get a 503 and are closed.
  size_t max_connections = 64;
  std::chrono::milliseconds idle_timeout{std::chrono::seconds{60}};
  std::chrono::milliseconds read_timeout{std::chrono::seconds{30}};
  /// WebSocket connections (apart from max_connections).
  size_t max_websockets = 1024;
  /// Largest WebSocket message a client may send.
  size_t ws_max_message = 64 * 1024;
  /// Ping an idle WebSocket this often (0 = never; no idle close either).
  std::chrono::milliseconds ws_ping_interval{std::chrono::seconds{30}};
  /// Messages of a WebSocket's stream_sink that may wait (see stream_sink).
  size_t ws_max_backlog = 4096;
  /// The option the port comes from, named in bind errors.
  std::string option = "cairn.http.port";
  /// GET /readyz: empty when the node is ready, else why not (answered
  /// with 503 and that text). Unset: /readyz is /healthz. Called on an I/O
  /// thread; must not block.
  std::function<std::string()> readiness;
  /// TLS (HTTPS and wss://) on this port (off unless tls.certificate is
  /// set); the handshake must complete within read_timeout.
  tls_options tls;
};

/// One request as a route handler sees it.
struct http_request {
  std::string method;  ///< "GET", "POST", ...
  std::string path;    ///< target without the query string
  std::string query;   ///< after '?', still percent-encoded; may be empty
  /// Header fields, names lower-case, in arrival order.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string remote;  ///< "address:port" of the client
  /// Who the request acts as, as the guard decided (null without a guard).
  std::shared_ptr<const auth::principal> principal;

  /// The first header named `name` (lower-case), or empty.
  std::string_view header(std::string_view name) const noexcept;
};

/// What a route handler answers.
struct http_response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  ///< extra fields
};

class http_server {
public:
  /// Sends the answer of one API request: an HTTP status and a JSON body.
  using reply_fn = std::function<void(int status, std::string json)>;
  using api_handler = std::function<void(std::string body, reply_fn reply)>;
  /// The same with the request's principal (null without a guard); set with
  /// api_with_principal() before start() to replace the constructor's.
  using principal_api_handler = std::function<void(
    std::string body, std::shared_ptr<const auth::principal> who,
    reply_fn reply)>;
  void api_with_principal(principal_api_handler handler);

  using response_fn = std::function<void(http_response)>;
  /// Called on an I/O thread; must not block; calls `reply` exactly once,
  /// from any thread (later calls and calls after the connection closed are
  /// dropped).
  using route_handler = std::function<void(http_request, response_fn reply)>;

  http_server(http_server_options opts, metrics_registry& metrics,
              api_handler on_api);

  /// Called on an I/O thread for every text message a WebSocket client sent;
  /// must not block. `sink` is the connection's (the same object for every
  /// message of one connection); it reports the close (stream_sink::on_close).
  using websocket_handler = std::function<void(
    const std::shared_ptr<stream_sink>& sink, std::string message)>;

  /// Accepts WebSocket upgrades on `path` (exact). Call before start().
  void websocket(std::string path, websocket_handler handler);

  /// WebSocket connections open now.
  size_t websockets_open() const noexcept;

  /// TLS handshakes that failed or timed out (0 without TLS).
  uint64_t tls_failed() const noexcept;

  /// The access check of every request but /healthz and static files
  /// (docs/protocol.md, "Authentication"): called on an I/O thread with the
  /// request's method, path, query, headers and remote (no body yet).
  /// Returns a response to send instead (401, 403, 429), or nullopt to go on;
  /// it may set `principal`, which the request then carries (POST /api: the
  /// api handler's `principal` argument; WebSockets: the sink's). For a
  /// WebSocket upgrade, `ws_protocol` may be set to the subprotocol to
  /// answer.
  struct guard_decision {
    std::optional<http_response> refuse;
    std::shared_ptr<const auth::principal> principal;
    std::string ws_protocol;
  };
  using guard_fn = std::function<guard_decision(const http_request& head)>;
  void guard(guard_fn fn);

  /// Adds a handler for `path` (exactly, or every path starting with it when
  /// `prefix`). Call before start(); the first matching route wins, and
  /// routes are tried before static files (never before /metrics, /healthz
  /// and /api).
  void route(std::string path, bool prefix, route_handler handler);
  ~http_server();
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  /// Binds and listens without accepting yet. Throws std::runtime_error
  /// ("cannot listen on H:P (<option>): <reason>") if the address cannot be
  /// bound.
  void bind();

  /// Binds (unless bind() did), accepts and starts the I/O threads. Throws
  /// what bind() throws.
  void start();

  /// The bound port (useful with port 0). Valid after bind() / start().
  uint16_t port() const noexcept;

  /// Stops accepting, waits up to `grace` for API requests in flight, closes
  /// every connection and joins the I/O threads. Idempotent; the destructor
  /// calls it.
  void stop(std::chrono::milliseconds grace = std::chrono::seconds{3});

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace cairn::runtime
