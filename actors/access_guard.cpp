#include "actors/access_guard.hpp"

namespace cairn::actors {

using runtime::auth::scope;
using runtime::auth::scope_set;

runtime::auth::scope_set required_scopes(cqrs::protocol_op op) noexcept {
  constexpr auto ingest = static_cast<scope_set>(scope::ingest);
  constexpr auto query = static_cast<scope_set>(scope::query);
  constexpr auto admin = static_cast<scope_set>(scope::admin);
  switch (op) {
    case cqrs::protocol_op::ping:
    case cqrs::protocol_op::auth:
      return 0;
    case cqrs::protocol_op::flush:
    case cqrs::protocol_op::ingest:
      return ingest;
    case cqrs::protocol_op::query:
    case cqrs::protocol_op::topk:
    case cqrs::protocol_op::series:
    case cqrs::protocol_op::metrics:
    case cqrs::protocol_op::subscribe:
    case cqrs::protocol_op::unsubscribe:
      return query;
    case cqrs::protocol_op::stats:
      return query | admin;
    case cqrs::protocol_op::cluster:
      return admin;
    // Reading alert rules and history is a query; changing rules is admin
    // (docs/alerting.md).
    case cqrs::protocol_op::alert_list:
    case cqrs::protocol_op::alert_get:
    case cqrs::protocol_op::alert_history:
      return query | admin;
    // Membership changes are admin only; watching them is admin too, like
    // the cluster view (docs/sagas.md).
    case cqrs::protocol_op::saga_list:
    case cqrs::protocol_op::saga_get:
    case cqrs::protocol_op::saga_move:
    case cqrs::protocol_op::saga_decommission:
    case cqrs::protocol_op::saga_rebalance:
    case cqrs::protocol_op::saga_join:
    case cqrs::protocol_op::saga_evict:
    case cqrs::protocol_op::saga_abort:
      return admin;
    case cqrs::protocol_op::alert_create:
    case cqrs::protocol_op::alert_update:
    case cqrs::protocol_op::alert_delete:
      return admin;
  }
  return admin;
}

std::string forbidden_message(std::string_view what, scope_set needed,
                              scope_set held) {
  auto have = runtime::auth::scopes_text(held);
  return std::string{what} + " needs scope "
         + runtime::auth::scopes_text(needed)
         + (needed & (needed - 1) ? " (any of them)" : "")
         + "; the token has " + (have.empty() ? std::string{"none"} : have);
}

std::string rate_limited_reply(const nlohmann::json& id,
                               std::optional<uint64_t> line,
                               int64_t retry_after_ms,
                               const std::string& message) {
  nlohmann::json out{{"ok", false}};
  if (!id.is_discarded())
    out["id"] = id;
  if (line)
    out["line"] = *line;
  out["error"] = {{"code", "rate_limited"},
                  {"message", message},
                  {"retry_after_ms", retry_after_ms}};
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

nlohmann::json auth_reply(const runtime::auth::principal& who, bool verified) {
  if (!verified)
    return {{"ok", true}, {"auth", "off"}};
  auto scopes = nlohmann::json::array();
  for (auto s : {scope::ingest, scope::query, scope::admin})
    if (who.has(s))
      scopes.push_back(std::string{to_string(s)});
  nlohmann::json out{{"ok", true}, {"sub", who.sub}, {"scopes", scopes}};
  if (who.expires_at != 0)
    out["expires_at"] = who.expires_at;
  return out;
}

std::optional<std::string> auth_token(const nlohmann::json& req) {
  if (!req.is_object())
    return std::nullopt;
  auto t = req.find("token");
  if (t == req.end() || !t->is_string())
    return std::nullopt;
  return t->get<std::string>();
}

} // namespace cairn::actors
