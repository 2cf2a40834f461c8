// jwt_verifier: checks a client's JSON Web Token (RFC 7519) and turns it
// into a principal (docs/protocol.md, "Authentication").
//
// One algorithm per node, from the configuration: HS256 with a shared
// secret, or RS256 / ES256 with a PEM public key. The signature is checked
// by libjwt; everything libjwt does not check is checked here: the header's
// `alg` must be the configured one (so `alg: none` and the HS256-with-the-
// public-key confusion are refused), `exp` and `nbf` with a leeway, and
// `iss` / `aud` when configured. Scopes come from the `scope` claim (a
// space-separated string, RFC 8693) or a `scopes` array; unknown names are
// ignored.
//
// Messages never contain the token or any part of it, so callers may log
// them. Thread-safe: `verify` is const and keeps no state (call it from any
// I/O thread).
#pragma once

#include "runtime/auth/principal.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace cairn::runtime::auth {

struct jwt_options {
  /// "HS256", "RS256" or "ES256".
  std::string algorithm = "HS256";
  /// HS256: the shared secret (raw bytes).
  std::string secret;
  /// RS256 / ES256: the public key, PEM text.
  std::string public_key;
  /// Allowed clock skew for `exp` and `nbf`.
  std::chrono::seconds leeway{30};
  /// When not empty: the `iss` claim must equal it.
  std::string issuer;
  /// When not empty: the `aud` claim (string or array) must contain it.
  std::string audience;
};

/// Why a token was refused (all map to `unauthorized` on the wire).
enum class jwt_failure : uint8_t {
  /// Not three base64url parts, or not JSON.
  malformed,
  /// The header's `alg` is not the node's algorithm (includes `none`).
  wrong_algorithm,
  /// The signature does not verify with the node's key.
  bad_signature,
  /// `exp` is past (beyond the leeway).
  expired,
  /// `nbf` is in the future (beyond the leeway).
  not_yet_valid,
  /// `iss` or `aud` does not match the configuration.
  wrong_claims,
};

std::string_view to_string(jwt_failure f) noexcept;

struct jwt_refusal {
  jwt_failure failure = jwt_failure::malformed;
  /// For the client and the log; never contains token bytes.
  std::string message;
};

class jwt_verifier {
public:
  /// Throws std::invalid_argument for an unknown algorithm, an empty secret
  /// or a public key OpenSSL cannot read.
  explicit jwt_verifier(jwt_options opts);

  /// Verifies `token` at wall time `now` (epoch seconds). On success the
  /// principal has `sub`, the scopes, `expires_at` and authenticated set
  /// (the caller adds the address).
  [[nodiscard]] std::variant<principal, jwt_refusal>
  verify(std::string_view token, int64_t now) const;

  const jwt_options& options() const noexcept { return opts_; }

private:
  jwt_options opts_;
  int alg_;  ///< the libjwt jwt_alg_t
};

} // namespace cairn::runtime::auth
