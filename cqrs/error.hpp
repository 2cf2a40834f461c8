// Stable error codes of the client protocol (docs/protocol.md, "Requests").
//
// Every error a client can cause is reported as one of these codes plus a
// human-readable message. The codes are part of the wire contract: never
// renumber or rename them. Free of CAF so that cqrs/ stays actor-free.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace cairn::cqrs {

enum class error_code : uint8_t {
  /// The request is malformed or has an invalid field.
  bad_request,
  /// An event failed validation (docs/protocol.md, "Events").
  invalid_event,
  /// The request's "op" is not known.
  unknown_op,
  /// A line or batch exceeds a configured limit.
  too_large,
  /// The client exceeded its rate limit; the error carries
  /// `retry_after_ms` (docs/protocol.md, "Rate limits").
  rate_limited,
  /// No token, or a token that is invalid or expired (docs/protocol.md,
  /// "Authentication").
  unauthorized,
  /// A resource needed to serve the request is not available.
  unavailable,
  /// The request did not complete in time.
  timeout,
  /// A bug or an unexpected failure on the server side.
  internal,
  /// The event would create a series past the node's `cairn.limits.max-series`.
  too_many_series,
  /// A client asked for more live subscriptions than
  /// `cairn.live.max-subscriptions`.
  too_many_subscriptions,
  /// An unsubscribe named an id that is not subscribed on this client.
  unknown_subscription,
  /// The client is authenticated, but its token lacks the scope the request
  /// needs (docs/protocol.md, "Authentication").
  forbidden,
  /// An alert op named a rule that does not exist (docs/alerting.md).
  unknown_rule,
  /// alert.create named a rule that already exists.
  rule_exists,
  /// A saga op named a saga that does not exist (docs/sagas.md).
  unknown_saga,
  /// A membership change conflicts with one in progress (the partition is
  /// being moved, another membership saga runs) or can no longer be
  /// aborted (docs/sagas.md).
  saga_conflict,
  /// The node left the cluster (decommissioned) and takes no writes; write
  /// to another member (docs/cluster.md, "Partition map").
  decommissioned,
};

/// The highest code (keep it the last enumerator above).
inline constexpr error_code last_error_code = error_code::decommissioned;

/// Returns the wire name of `code`, e.g. "bad_request".
std::string_view to_string(error_code code) noexcept;

/// The code named `name` ("bad_request"), or false if none is.
[[nodiscard]] bool from_string(std::string_view name, error_code& out) noexcept;

/// The HTTP status an error reply with `code` carries on the HTTP port
/// (docs/protocol.md, "HTTP statuses"): 400 for what the client must fix,
/// 401 unauthorized, 403 forbidden, 404 unknown_subscription, 413 too_large, 429
/// rate_limited, 503 unavailable (retry later), 504 timeout, 500 internal.
int http_status(error_code code) noexcept;

/// An error a client caused, with the message it is shown.
struct problem {
  error_code code = error_code::internal;
  std::string message;
};

} // namespace cairn::cqrs
