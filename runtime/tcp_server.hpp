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
// Runs its own I/O threads; `on_chunk` is called on them and must not block
// (it should send an actor message). `stop()` stops accepting, lets chunks in
// flight complete (up to `grace`), then closes every connection.
#pragma once

#include "runtime/connection_context.hpp"

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
};

struct tcp_server_stats {
  uint64_t connections_accepted = 0;
  uint64_t connections_open = 0;
  uint64_t connections_refused = 0;
  uint64_t lines_too_large = 0;
  uint64_t bytes_read = 0;
};

class tcp_server {
public:
  using chunk_handler = std::function<void(chunk)>;

  tcp_server(tcp_server_options opts, chunk_handler on_chunk);
  ~tcp_server();
  tcp_server(const tcp_server&) = delete;
  tcp_server& operator=(const tcp_server&) = delete;

  /// Binds, listens and starts the I/O threads. Throws std::runtime_error
  /// if the address cannot be bound.
  void start();

  /// The bound port (useful with port 0). Valid after start().
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
