#include "actors/http_access.hpp"

#include "actors/access_guard.hpp"
#include "actors/reply.hpp"
#include "runtime/log.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace cairn::actors {

namespace {

using nlohmann::json;
using runtime::auth::scope;
using runtime::auth::scope_set;

/// The scopes a path needs (any one of them), or nullopt for paths the
/// guard leaves alone (static files).
std::optional<scope_set> path_scopes(std::string_view path) {
  constexpr auto ingest = static_cast<scope_set>(scope::ingest);
  constexpr auto query = static_cast<scope_set>(scope::query);
  constexpr auto admin = static_cast<scope_set>(scope::admin);
  if (path == "/metrics")
    return query | admin;
  if (path == "/api")
    return scope_set{0};  // per op, in the parser
  if (path == "/write" || path == "/api/v2/write" || path == "/api/v1/write")
    return ingest;
  if (path.substr(0, 8) == "/api/v1/" || path == "/v1/live")
    return query;
  return std::nullopt;
}

runtime::http_response refusal(std::string_view path, int status,
                               cqrs::error_code code, const std::string& message,
                               int64_t retry_after_ms = -1) {
  runtime::http_response r;
  r.status = status;
  json body;
  if (path.substr(0, 8) == "/api/v1/" && path != "/api/v1/write") {
    // The Prometheus API's error shape (docs/prometheus-api.md).
    body = {{"status", "error"},
            {"errorType", std::string{to_string(code)}},
            {"error", message}};
  } else {
    body = {{"ok", false},
            {"error", {{"code", std::string{to_string(code)}}, {"message", message}}}};
    if (retry_after_ms >= 0)
      body["error"]["retry_after_ms"] = retry_after_ms;
  }
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  if (status == 401)
    r.headers.emplace_back("WWW-Authenticate",
                           code == cqrs::error_code::unauthorized
                               && message.find("no token") == std::string::npos
                             ? "Bearer error=\"invalid_token\""
                             : "Bearer");
  if (retry_after_ms >= 0)
    r.headers.emplace_back("Retry-After",
                           std::to_string((retry_after_ms + 999) / 1000));
  return r;
}

/// True if `list` (Sec-WebSocket-Protocol) offers `name`.
bool offers(std::string_view list, std::string_view name) {
  return runtime::auth::find_websocket_protocol(
    list, [name](std::string_view item) { return item == name; });
}

} // namespace

runtime::http_server::guard_fn make_http_guard(settings_ptr settings) {
  return [settings](const runtime::http_request& head) {
    runtime::http_server::guard_decision out;
    auto needed = path_scopes(head.path);
    auto* access = settings->access.get();
    if (!needed || !access)
      return out;
    bool websocket = head.path == "/v1/live";
    auto token = runtime::auth::bearer_token(head.header("authorization"));
    if (websocket) {
      auto protocols = head.header("sec-websocket-protocol");
      if (token.empty())
        token = runtime::auth::websocket_protocol_token(protocols);
      if (offers(protocols, "cairn"))
        out.ws_protocol = "cairn";
    }
    std::shared_ptr<const runtime::auth::principal> who;
    if (!token.empty()) {
      auto r = access->authenticate(token, head.remote);
      if (auto* no = std::get_if<runtime::auth::jwt_refusal>(&r)) {
        runtime::log_limited(spdlog::level::warn, "auth:http", std::chrono::seconds{10},
                             fmt::format("auth: {} {} from {} refused: {}", head.method,
                                         head.path, head.remote, no->message));
        out.refuse = refusal(head.path, 401, cqrs::error_code::unauthorized, no->message);
        return out;
      }
      who = std::get<std::shared_ptr<const runtime::auth::principal>>(std::move(r));
    } else {
      who = access->anonymous(head.remote);
    }
    if (access->required() && !who->authenticated) {
      if (websocket)
        return out;  // the first message must be {"op":"auth",...}
      access->unauthorized.fetch_add(1, std::memory_order_relaxed);
      out.refuse = refusal(head.path, 401, cqrs::error_code::unauthorized,
                           "no token: send Authorization: Bearer <JWT>");
      return out;
    }
    if (*needed != 0 && (who->scopes & *needed) == 0) {
      access->forbidden.fetch_add(1, std::memory_order_relaxed);
      out.refuse = refusal(head.path, 403, cqrs::error_code::forbidden,
                           forbidden_message(head.path, *needed, who->scopes));
      return out;
    }
    auto d = access->rates().take(*who, runtime::rate_kind::requests, 1,
                                  runtime::rate_limiter::clock::now(), false);
    if (!d.admitted) {
      out.refuse = refusal(head.path, 429, cqrs::error_code::rate_limited,
                           "requests past the rate limit of " + who->key(),
                           d.retry_after.count());
      return out;
    }
    out.principal = std::move(who);
    return out;
  };
}

bool ws_admit(const node_settings& settings,
              const std::shared_ptr<runtime::stream_sink>& sink,
              const std::string& message) {
  auto* access = settings.access.get();
  if (!access)
    return true;
  auto who = sink->principal();
  // Only a message that may be an auth op is parsed here.
  if (message.find("\"auth\"") != std::string::npos) {
    auto req = json::parse(message, nullptr, false);
    if (req.is_object() && req.value("op", std::string{}) == "auth") {
      auto id = req.contains("id") ? req["id"] : no_id();
      auto token = auth_token(req);
      if (!access->verifies()) {
        auto out = auth_reply(runtime::auth::principal{}, false);
        sink->send(finish_reply(out, id));
        return false;
      }
      auto r = access->authenticate(token ? *token : std::string{}, "ws");
      if (auto* no = std::get_if<runtime::auth::jwt_refusal>(&r)) {
        sink->send(error_reply(id, cqrs::error_code::unauthorized,
                               token ? no->message : "auth needs \"token\": a JWT string"));
        // As on the NDJSON port: where tokens are required, the error is
        // the last message (then a 1008 close).
        if (access->required())
          sink->close_after_queued();
        return false;
      }
      auto p = std::get<std::shared_ptr<const runtime::auth::principal>>(std::move(r));
      auto out = auth_reply(*p, true);
      sink->set_principal(std::move(p));
      sink->send(finish_reply(out, id));
      return false;
    }
  }
  auto id_of = [&message] {
    auto req = json::parse(message, nullptr, false);
    return req.is_object() && req.contains("id") ? req["id"] : no_id();
  };
  if (!who) {
    if (access->required()) {
      access->unauthorized.fetch_add(1, std::memory_order_relaxed);
      sink->send(error_reply(id_of(), cqrs::error_code::unauthorized,
                             "authenticate first: {\"op\":\"auth\",\"token\":...}"));
      sink->close_after_queued();
      return false;
    }
    who = access->anonymous("ws");
    sink->set_principal(who);
  }
  constexpr auto query = static_cast<scope_set>(scope::query);
  if ((who->scopes & query) == 0) {
    access->forbidden.fetch_add(1, std::memory_order_relaxed);
    sink->send(error_reply(id_of(), cqrs::error_code::forbidden,
                           forbidden_message("live subscriptions", query, who->scopes)));
    return false;
  }
  auto d = access->rates().take(*who, runtime::rate_kind::requests, 1,
                                runtime::rate_limiter::clock::now(), false);
  if (!d.admitted) {
    sink->send(rate_limited_reply(id_of(), std::nullopt, d.retry_after.count(),
                                  "requests past the rate limit of " + who->key()));
    return false;
  }
  return true;
}

std::shared_ptr<const runtime::auth::principal> prometheus_principal() {
  static const auto who = [] {
    auto p = std::make_shared<runtime::auth::principal>();
    p->sub = "prometheus-api";
    p->scopes = static_cast<scope_set>(scope::query);
    p->authenticated = true;
    p->address = "http";
    return p;
  }();
  return who;
}

void publish_access_stats(node_settings& settings) {
  auto access = settings.access;
  if (!access)
    return;
  auto prev = std::move(settings.gateway_stats);
  settings.gateway_stats = [prev = std::move(prev), access](json& out) {
    if (prev)
      prev(out);
    auto principals = json::array();
    for (auto& c : access->rates().counters())
      principals.push_back({{"principal", c.key},
                            {"events", c.events},
                            {"events_limited", c.events_limited},
                            {"requests", c.requests},
                            {"requests_limited", c.requests_limited},
                            {"delayed", c.delayed}});
    out["auth"] = {{"required", access->required()},
                   {"verifies", access->verifies()},
                   {"authenticated", access->authenticated.load()},
                   {"unauthorized", access->unauthorized.load()},
                   {"forbidden", access->forbidden.load()},
                   {"principals", std::move(principals)}};
  };
  settings.metrics->add_renderer([access] {
    std::string out;
    auto counter = [&out](const char* name, const char* help, uint64_t v) {
      out += fmt::format("# HELP {0} {1}\n# TYPE {0} counter\n{0} {2}\n", name, help, v);
    };
    counter("cairn_auth_authenticated_total", "Tokens accepted",
            access->authenticated.load());
    counter("cairn_auth_unauthorized_total",
            "Clients refused with unauthorized (no, invalid or expired token)",
            access->unauthorized.load());
    counter("cairn_auth_forbidden_total", "Requests refused with forbidden (scope)",
            access->forbidden.load());
    out += access->rates().render_prometheus();
    return out;
  });
}

} // namespace cairn::actors
