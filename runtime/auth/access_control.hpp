// access_control: the node's authentication and rate-limit policy, one
// object shared by every gateway (docs/protocol.md, "Authentication" and
// "Rate limits"; docs/operations.md, "Securing a node").
//
// Holds the JWT verifier (when a key is configured), whether a token is
// required (always when a client port binds a non-loopback address), the
// rate limiter, and the node-wide auth counters. Built once at start-up;
// then only read, except for the counters (atomics) and the rate limiter
// (its own lock). Any thread.
#pragma once

#include "runtime/auth/jwt_verifier.hpp"
#include "runtime/auth/principal.hpp"
#include "runtime/rate_limiter.hpp"

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace cairn::runtime {
class node_config;
} // namespace cairn::runtime

namespace cairn::runtime::auth {

class access_control {
public:
  /// `verifier` may be empty (no key configured: tokens are not checked,
  /// and `required` must be false).
  access_control(std::optional<jwt_verifier> verifier, bool required,
                 rate_options rates);

  /// True if every client must present a valid token first.
  bool required() const noexcept { return required_; }

  /// True if a key is configured (tokens are verified when presented).
  bool verifies() const noexcept { return verifier_.has_value(); }

  /// The principal of a client that has not authenticated, from `peer`
  /// ("address:port"): every scope when no token is required, none when one
  /// is.
  std::shared_ptr<const principal> anonymous(std::string_view peer) const;

  /// Verifies `token` of the client at `peer` now. Without a key the token
  /// is not looked at and the client is anonymous (with every scope). Counts
  /// successes and failures; the refusal's message holds no token bytes.
  std::variant<std::shared_ptr<const principal>, jwt_refusal>
  authenticate(std::string_view token, std::string_view peer);

  /// False if `who` has a token whose `exp` (plus the leeway) is before
  /// `now_ms` (epoch ms): a long-lived connection outliving its token.
  bool still_valid(const principal& who, int64_t now_ms) const noexcept;

  rate_limiter& rates() noexcept { return rates_; }

  // -- counters (any thread) ---------------------------------------------------
  std::atomic<uint64_t> authenticated{0};  ///< tokens accepted
  std::atomic<uint64_t> unauthorized{0};   ///< refused: none/invalid/expired
  std::atomic<uint64_t> forbidden{0};      ///< refused: scope missing

private:
  std::optional<jwt_verifier> verifier_;
  bool required_;
  rate_limiter rates_;
};

/// Builds the node's policy from its (validated) configuration: reads the
/// secret or public-key file. Throws std::invalid_argument naming the
/// option for a file that cannot be read or a key that is not usable.
std::shared_ptr<access_control> make_access_control(const node_config& cfg);

/// The bearer token of an `Authorization` header value ("Bearer <t>",
/// case-insensitive scheme), or empty.
std::string_view bearer_token(std::string_view authorization) noexcept;

/// The token offered in a `Sec-WebSocket-Protocol` header: the entry
/// "bearer.<token>" of the comma-separated list, or empty.
std::string_view websocket_protocol_token(std::string_view protocols) noexcept;

/// Calls f(item) for each comma-separated item of a Sec-WebSocket-Protocol
/// list, spaces trimmed, until f returns true; returns whether it did.
template <class F>
bool find_websocket_protocol(std::string_view list, F&& f) {
  while (!list.empty()) {
    auto comma = list.find(',');
    auto item = list.substr(0, comma);
    while (!item.empty() && item.front() == ' ')
      item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ')
      item.remove_suffix(1);
    if (f(item))
      return true;
    if (comma == std::string_view::npos)
      break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

} // namespace cairn::runtime::auth
