#include "runtime/auth/access_control.hpp"

#include "runtime/auth/jwt_signer.hpp"
#include "runtime/node_config.hpp"
#include "runtime/time.hpp"

#include <cctype>
#include <stdexcept>

namespace cairn::runtime::auth {

access_control::access_control(std::optional<jwt_verifier> verifier,
                               bool required, rate_options rates)
  : verifier_(std::move(verifier)), required_(required), rates_(rates) {
  if (required_ && !verifier_)
    throw std::invalid_argument("authentication is required but no key is configured");
}

std::shared_ptr<const principal>
access_control::anonymous(std::string_view peer) const {
  auto who = std::make_shared<principal>();
  who->address = address_of(peer);
  who->scopes = required_ ? 0 : all_scopes;
  return who;
}

std::variant<std::shared_ptr<const principal>, jwt_refusal>
access_control::authenticate(std::string_view token, std::string_view peer) {
  if (!verifier_)
    return anonymous(peer);
  auto now = std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
               .count();
  auto r = verifier_->verify(token, now);
  if (auto* refusal = std::get_if<jwt_refusal>(&r)) {
    unauthorized.fetch_add(1, std::memory_order_relaxed);
    return std::move(*refusal);
  }
  auto who = std::make_shared<principal>(std::get<principal>(std::move(r)));
  who->address = address_of(peer);
  authenticated.fetch_add(1, std::memory_order_relaxed);
  return who;
}

bool access_control::still_valid(const principal& who,
                                 int64_t now_ms) const noexcept {
  if (!who.authenticated || who.expires_at == 0 || !verifier_)
    return true;
  auto leeway = verifier_->options().leeway.count();
  return now_ms / 1000 <= who.expires_at + leeway;
}

std::shared_ptr<access_control> make_access_control(const node_config& cfg) {
  std::optional<jwt_verifier> verifier;
  if (!cfg.auth_secret_file.empty() || !cfg.auth_public_key_file.empty()) {
    jwt_options o;
    o.algorithm = cfg.auth_algorithm;
    o.leeway = std::chrono::duration_cast<std::chrono::seconds>(
      node_config::duration_of(cfg.auth_leeway_text));
    o.issuer = cfg.auth_issuer;
    o.audience = cfg.auth_audience;
    const char* option = "cairn.auth.public-key-file";
    if (!cfg.auth_secret_file.empty()) {
      option = "cairn.auth.secret-file";
      o.secret = read_key_file(option, cfg.auth_secret_file, true);
    } else {
      o.public_key = read_key_file(option, cfg.auth_public_key_file, false);
    }
    try {
      verifier.emplace(std::move(o));
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string{"option "} + option + ": " + e.what());
    }
  }
  rate_options r;
  r.events_per_sec = static_cast<double>(cfg.rate_events_per_sec);
  r.requests_per_sec = static_cast<double>(cfg.rate_requests_per_sec);
  r.scope_events_per_sec[0] = static_cast<double>(cfg.rate_ingest_events_per_sec);
  r.scope_events_per_sec[1] = static_cast<double>(cfg.rate_query_events_per_sec);
  r.scope_events_per_sec[2] = static_cast<double>(cfg.rate_admin_events_per_sec);
  r.scope_requests_per_sec[0] = static_cast<double>(cfg.rate_ingest_requests_per_sec);
  r.scope_requests_per_sec[1] = static_cast<double>(cfg.rate_query_requests_per_sec);
  r.scope_requests_per_sec[2] = static_cast<double>(cfg.rate_admin_requests_per_sec);
  r.burst = node_config::duration_of(cfg.rate_burst_text);
  r.max_delay = node_config::duration_of(cfg.rate_max_delay_text);
  r.max_principals = cfg.rate_max_principals;
  return std::make_shared<access_control>(std::move(verifier),
                                          cfg.auth_enforced(), r);
}

std::string_view bearer_token(std::string_view v) noexcept {
  while (!v.empty() && v.front() == ' ')
    v.remove_prefix(1);
  constexpr std::string_view scheme = "bearer";
  if (v.size() <= scheme.size() || v[scheme.size()] != ' ')
    return {};
  for (size_t i = 0; i < scheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(v[i])) != scheme[i])
      return {};
  v.remove_prefix(scheme.size());
  while (!v.empty() && v.front() == ' ')
    v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ')
    v.remove_suffix(1);
  return v;
}

std::string_view websocket_protocol_token(std::string_view list) noexcept {
  constexpr std::string_view prefix = "bearer.";
  std::string_view token;
  find_websocket_protocol(list, [&](std::string_view item) {
    if (item.substr(0, prefix.size()) != prefix)
      return false;
    token = item.substr(prefix.size());
    return true;
  });
  return token;
}

} // namespace cairn::runtime::auth
