// access_guard: the client protocol's side of authentication and rate
// limits (docs/protocol.md, "Authentication", "Rate limits"): which scopes
// an op needs, the `auth` op's reply, and the error lines. The policy itself
// (verifier, limiter) is runtime/auth/access_control; this only renders and
// decides per op. No actors.
#pragma once

#include "cqrs/error.hpp"
#include "cqrs/protocol_op.hpp"
#include "runtime/auth/access_control.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace cairn::actors {

/// The scopes of which a principal needs at least one for `op` (0: none,
/// every authenticated client may).
runtime::auth::scope_set required_scopes(cqrs::protocol_op op) noexcept;

/// The `forbidden` message for `op` and the principal's scopes.
std::string forbidden_message(std::string_view what,
                              runtime::auth::scope_set needed,
                              runtime::auth::scope_set held);

/// {"ok":false,["id":..,]["line":N,]"error":{"code":"rate_limited",
/// "message":M,"retry_after_ms":R}}.
std::string rate_limited_reply(const nlohmann::json& id,
                               std::optional<uint64_t> line,
                               int64_t retry_after_ms,
                               const std::string& message);

/// The reply of a successful `auth`: {"ok":true,"sub":..,"scopes":[..],
/// "expires_at":..} (the last only with an `exp`), or {"ok":true,
/// "auth":"off"} when the node checks no tokens.
nlohmann::json auth_reply(const runtime::auth::principal& who, bool verified);

/// The token of an `auth` request line (its "token" string), or nullopt.
std::optional<std::string> auth_token(const nlohmann::json& req);

} // namespace cairn::actors
