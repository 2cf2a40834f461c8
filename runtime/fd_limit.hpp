// fd_limit: fitting a node's connection limit into RLIMIT_NOFILE.
//
// A node needs one descriptor per client connection plus a reserve (the
// LevelDB journal and hint queue, HTTP connections, cluster connections,
// the I/O machinery). At start-up `fit_fd_limit` raises the soft limit up to
// the hard limit when the total does not fit, and when even the hard limit
// is too small lowers the connection limit so that the reserve stays free
// (docs/configuration.md). Without this, a node out of descriptors failed in
// accept and in LevelDB alike.
//
// Threading: call once from main, before any thread is started.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cairn::runtime {

struct fd_budget {
  uint64_t soft_before = 0;   ///< soft limit found at start
  uint64_t soft = 0;          ///< soft limit after fitting
  uint64_t hard = 0;          ///< hard limit
  size_t needed = 0;          ///< max_connections + reserve asked for
  size_t max_connections = 0; ///< the connection limit to use
  bool raised = false;        ///< the soft limit was raised
  bool clamped = false;       ///< max_connections was lowered
};

/// Descriptors kept free for everything but client connections.
struct fd_reserve {
  size_t journal = 0;   ///< LevelDB files of the journal (0 = no journal)
  size_t hints = 0;     ///< LevelDB files of the hint queue (0 = none)
  size_t http = 0;      ///< HTTP connections
  size_t cluster = 0;   ///< cluster connections
  size_t base = 64;     ///< stdio, log file, epoll, pipes, timers, CAF
  size_t influx = 0;    ///< line-protocol connections (cairn.influx.port)

  size_t total() const noexcept {
    return journal + hints + http + influx + cluster + base;
  }
};

/// The smallest connection limit a clamped node runs with.
inline constexpr size_t min_clamped_connections = 16;

/// Fits `max_connections` + `reserve` into RLIMIT_NOFILE as the header
/// says: raises the soft limit (never above the hard one) if needed, else
/// lowers the connection limit (never below min_clamped_connections). Never
/// throws; if getrlimit fails the limit is left alone.
fd_budget fit_fd_limit(size_t max_connections, const fd_reserve& reserve);

} // namespace cairn::runtime
