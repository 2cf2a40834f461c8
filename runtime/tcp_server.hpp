// tcp_server: the NDJSON-over-TCP gateway's network side (Boost.Asio).
//
// Accepts connections, reads bytes, cuts them into chunks of complete lines
// (never more than `max_chunk` bytes unless a single line is longer), hands
// each chunk to `on_chunk` and writes the replies in chunk order. At most
// `window` chunks of a connection are in flight; a full window stops reading
// the socket. A line longer than `max_line` is skipped up to its newline and
// answered with {"ok":false,"line":N,"error":{"code":"too_large",...}} in
// order; the connection keeps working. Connections beyond `max_connections`
// get one `unavailable` error line and are closed.
//
// Timeouts (docs/configuration.md, docs/protocol.md): a connection with no
// traffic in either direction for `idle_timeout`, and nothing of it being
// processed, is closed; a line that started arriving must be complete
// within `line_timeout`, else the connection gets one `timeout` error line
// for it and is closed once the replies to its earlier lines are written
// (every complete line before it is still processed and answered, so
// closing never loses events already accepted). 0 disables either.
//
// The same server carries Influx line protocol (`format`, `replies`,
// docs/integrations.md): chunks are cut the same way, never barriers, and
// no reply is written.
//
// TLS (`tls`, runtime/tls_options.hpp, docs/operations.md "TLS"): every
// connection starts with a TLS handshake that must complete within
// `line_timeout` (30 s if that is 0), else it is closed and counted in
// `tls_failed`, as is a failed handshake (no or an untrusted client
// certificate when one is required). After it the connection behaves as
// above, byte for byte.
//
// Runs its own I/O threads; `on_chunk` is called on them and must not block
// (it should send an actor message). `stop()` stops accepting, lets chunks in
// flight complete (up to `grace`), then closes every connection.
#pragma once

#include "runtime/connection_context.hpp"
#include "runtime/tls_options.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace cairn::runtime {

struct tcp_server_options {
  std::string host = "127.0.0.1";
  uint16_t port = 7411;  ///< 0 = ephemeral
  size_t max_line = 1 << 20;
  size_t max_connections = 1024;
  size_t window = 4;
  size_t max_chunk = 64 * 1024;
  size_t io_threads = 1;
  std::chrono::milliseconds idle_timeout{std::chrono::minutes{5}};  ///< 0 = off
  std::chrono::milliseconds line_timeout{std::chrono::seconds{30}}; ///< 0 = off
  /// The option the port comes from, named in bind errors.
  std::string option = "cairn.tcp.port";
  /// What the connections send; set on every chunk. Only `ndjson` chunks
  /// can be barriers (hold requests).
  chunk_format format = chunk_format::ndjson;
  /// False: nothing is written back (line protocol has no replies); lines
  /// too large are logged rate-limited instead of answered.
  bool replies = true;
  /// TLS on this port (off unless tls.certificate is set).
  tls_options tls;
};

struct tcp_server_stats {
  uint64_t connections_accepted = 0;
  uint64_t connections_open = 0;
  uint64_t connections_refused = 0;
  uint64_t lines_too_large = 0;
  uint64_t bytes_read = 0;
  uint64_t lines_read = 0;  ///< complete lines cut from the bytes read
  int64_t io_cpu_ns = 0;    ///< CPU time of the I/O threads
  uint64_t connections_timed_out = 0;  ///< closed by idle or line timeout
  uint64_t tls_failed = 0;  ///< TLS handshakes that failed or timed out
};

class tcp_server {
public:
  using chunk_handler = std::function<void(chunk)>;

  /// Throws std::runtime_error naming the option if TLS is configured and
  /// its certificate, key or client CA cannot be loaded.
  tcp_server(tcp_server_options opts, chunk_handler on_chunk);
  ~tcp_server();
  tcp_server(const tcp_server&) = delete;
  tcp_server& operator=(const tcp_server&) = delete;

  /// Binds and listens without accepting yet (so that a node can hold all
  /// its ports before it starts anything). Throws std::runtime_error
  /// ("cannot listen on H:P (<option>): <reason>") if the address cannot be
  /// bound, std::logic_error if called after bind() or start().
  void bind();

  /// Binds (unless bind() did), accepts and starts the I/O threads. Throws
  /// what bind() throws.
  void start();

  /// The bound port (useful with port 0). Valid after bind() / start().
  uint16_t port() const noexcept;

  /// Stops accepting, waits up to `grace` for in-flight chunks, closes all
  /// connections and joins the I/O threads. Idempotent.
  void stop(std::chrono::milliseconds grace = std::chrono::seconds{3});

  tcp_server_stats stats() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace cairn::runtime
