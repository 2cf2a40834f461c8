// principal: who a client connection or HTTP request acts as.
//
// Built once per connection (NDJSON: by the `auth` op; HTTP: per request
// from `Authorization: Bearer`; WebSocket: from the first message or the
// `Sec-WebSocket-Protocol` header) and then only read: scope checks are a
// bit test, the rate limiter's key a string already there. Pure values; no
// threads, no actors (docs/protocol.md, "Authentication").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cairn::runtime::auth {

/// What a token allows (the JWT claim `scope`, docs/protocol.md).
enum class scope : uint8_t {
  /// Write events: NDJSON events, `ingest`, `flush`, POST /write,
  /// remote_write.
  ingest = 1,
  /// Read: `query`, `topk`, `series`, `metrics`, `subscribe`, `stats`,
  /// the Prometheus query API, /metrics.
  query = 2,
  /// Operations: `cluster`, the console, snapshots and cluster ops.
  admin = 4,
};

/// A set of scopes (bit mask of `scope` values).
using scope_set = uint8_t;

inline constexpr scope_set all_scopes = 7;

/// "ingest", "query", "admin".
std::string_view to_string(scope s) noexcept;

/// The scope named `name` (exact), or nullopt.
[[nodiscard]] std::optional<scope> scope_from_string(std::string_view name) noexcept;

/// "ingest query" for the scopes in `set` (protocol order).
std::string scopes_text(scope_set set);

struct principal {
  /// The token's `sub` claim; empty without a token (or a token without
  /// one).
  std::string sub;
  /// What this principal may do. Without authentication on the node:
  /// everything.
  scope_set scopes = all_scopes;
  /// The client's address without its port ("127.0.0.1").
  std::string address;
  /// True if a token was verified for it.
  bool authenticated = false;
  /// The token's `exp` (epoch seconds), 0 = none.
  int64_t expires_at = 0;

  bool has(scope s) const noexcept {
    return (scopes & static_cast<scope_set>(s)) != 0;
  }

  /// What rate limits count by: the token's subject, else the address.
  const std::string& key() const noexcept {
    return sub.empty() ? address : sub;
  }
};

/// The address part of "address:port" / "[v6]:port" (unchanged if there is
/// no port).
std::string address_of(std::string_view peer);

} // namespace cairn::runtime::auth
