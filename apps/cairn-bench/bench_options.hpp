// Command-line options of cairn-bench (see `--help` and docs/clients.md).
#pragma once

#include "event_pool.hpp"

#include <cstdint>
#include <optional>
#include <string>

#include "../common/tls_client.hpp"

namespace cairn::bench {

/// What the bench sends.
enum class bench_mode : uint8_t {
  /// Fire-and-forget event lines, flushed at the end (and every
  /// `flush_every` events when set, to measure flush latency).
  ff,
  /// {"op":"ingest"} requests of `batch` events, `inflight` in flight per
  /// connection, each acknowledged.
  ack,
  /// One query line, repeated; measures query latency.
  query,
};

const char* to_string(bench_mode m) noexcept;

struct bench_options {
  std::string host = "127.0.0.1";
  uint16_t port = 7411;
  uint32_t connections = 4;
  /// Total events/s over all connections (queries/s in query mode); 0 = max.
  double rate = 0;
  double duration_s = 10;
  /// Total events (or queries in query mode); 0 = run for `duration_s`.
  uint64_t events = 0;
  uint64_t series = 1000;
  uint64_t batch = 1000;
  bench_mode mode = bench_mode::ff;
  uint32_t inflight = 4;
  /// ff mode: send a flush every this many events per connection (0 = only
  /// at the end).
  uint64_t flush_every = 0;
  /// Query mode: the request line.
  std::string query;
  /// JWT presented first on every connection (docs/protocol.md,
  /// "Authentication"); empty = none.
  std::string token;
  /// Events per connection in the pre-generated pool.
  uint64_t pool = 65536;
  uint64_t seed = 42;
  /// Event-time and value spread (--ts-spread, --value-spread).
  pool_shape shape;
  bool json = false;
  /// Seconds without any reply progress before giving up.
  double timeout_s = 30;
  /// TLS to the client port (--tls, --tls-*).
  apps::tls_client_options tls;
};

/// Parses argv. Returns the options, or nullopt after printing help (then
/// `exit_status` is 0) or a usage error (then it is 64).
[[nodiscard]] std::optional<bench_options>
parse_bench_options(int argc, char** argv, int& exit_status);

} // namespace cairn::bench
