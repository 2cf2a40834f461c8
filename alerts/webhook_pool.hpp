// webhook_pool: an HTTP/1.1 client with a connection pool per destination
// host (Boost.Beast), for webhook notifications (docs/alerting.md,
// "Connection pool").
//
// Per host:port at most `max_connections` sockets are open; a request takes
// an idle keep-alive connection if there is one (reused), opens a new one
// while under the limit, or waits in that host's queue. A connection the
// server keeps alive returns to the idle set and is closed after
// `idle_timeout` unused. Connect and request (write + read of the whole
// response) have their own timeouts. A request that fails on a reused
// connection before any response (the server closed it while idle) is
// retried once on a fresh connection.
//
// Threading: one I/O thread of its own runs every handler; `post` may be
// called from any thread, and `done` runs on the pool's thread (it must not
// block: the alert notifier forwards the result to its actor by message).
//
// https:// URLs use TLS (OpenSSL through Boost.Asio): the server's
// certificate must chain to the system's CA store or to `tls_ca_file`, and
// name the URL's host (SNI is sent); `tls_insecure` skips both checks (tests
// only). A TLS connection is kept alive and pooled like a plain one.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace cairn::alerts {

struct pool_options {
  size_t max_connections = 4;
  std::chrono::milliseconds idle_timeout{30000};
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds request_timeout{5000};
  /// PEM CA bundle trusted for https:// receivers besides the system's.
  std::string tls_ca_file;
  bool tls_insecure = false;
};

struct http_result {
  /// HTTP status, 0 when no response arrived.
  int status = 0;
  /// Empty on a response; else what failed ("connect: Connection refused").
  std::string error;
  bool reused = false;
  std::chrono::microseconds elapsed{0};
  bool ok() const noexcept { return status >= 200 && status < 300; }
};

struct pool_counters {
  std::atomic<int64_t> opened{0};  ///< sockets connected
  std::atomic<int64_t> reused{0};  ///< requests on an idle connection
  std::atomic<int64_t> open{0};    ///< sockets open now
  std::atomic<int64_t> requests{0};
  std::atomic<int64_t> failures{0};  ///< requests without a response
};

/// Splits "http://host[:port]/path" (port 80 by default) or
/// "https://host[:port]/path" (443; `tls` set). False if neither.
[[nodiscard]] bool split_url(const std::string& url, std::string& host,
                             std::string& port, std::string& target,
                             bool& tls);

class webhook_pool {
public:
  using headers = std::vector<std::pair<std::string, std::string>>;
  using callback = std::function<void(http_result)>;

  /// Throws std::invalid_argument if `tls_ca_file` cannot be loaded.
  explicit webhook_pool(pool_options opts = {});
  /// Stops the I/O thread; pending callbacks are dropped.
  ~webhook_pool();
  webhook_pool(const webhook_pool&) = delete;
  webhook_pool& operator=(const webhook_pool&) = delete;

  /// POSTs `body` (application/json) to `url` with `hdrs`; `done` runs on
  /// the pool's thread with the outcome. Thread-safe.
  void post(std::string url, headers hdrs, std::string body, callback done);

  const pool_counters& counters() const noexcept { return counters_; }
  const pool_options& options() const noexcept { return opts_; }

  struct impl;

private:
  pool_options opts_;
  pool_counters counters_;
  std::shared_ptr<impl> impl_;
};

} // namespace cairn::alerts
