// webhook_payload: the JSON body of a webhook notification, in the shape of
// Alertmanager's webhook receiver payload (version "4") plus Cairn's
// idempotency key, and its HMAC signature (docs/alerting.md, "Webhooks").
// Pure functions; no threads, no actors.
#pragma once

#include "alerts/evaluator.hpp"

#include <string>

namespace cairn::alerts {

/// RFC 3339 UTC with milliseconds, e.g. "2026-12-01T23:50:00.000Z";
/// Alertmanager's zero time "0001-01-01T00:00:00Z" for t == 0.
std::string rfc3339(millis t);

/// The body for notice `n` sent to receiver `receiver_name` (its URL).
std::string webhook_body(const notice& n, const std::string& receiver_name,
                         const std::string& external_url);

/// "sha256=<hex of HMAC-SHA256(secret, body)>".
std::string hmac_signature(const std::string& secret, const std::string& body);

/// Retry schedule: exponential backoff with full jitter (docs/alerting.md,
/// "Retries"): attempt n (0-based) waits a uniform random time in
/// [0, min(cap, initial * factor^n)].
struct backoff_policy {
  millis initial = 200;
  double factor = 2;
  millis cap = 30000;
  /// Attempts before the notification is parked as a dead letter.
  uint32_t max_attempts = 10;
};

/// The upper bound of attempt `n`'s delay.
millis backoff_ceiling(const backoff_policy& p, uint32_t n);

/// The delay before retry `n` given `u` uniform in [0, 1).
millis backoff_delay(const backoff_policy& p, uint32_t n, double u);

} // namespace cairn::alerts
