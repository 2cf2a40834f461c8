#include "runtime/auth/principal.hpp"

namespace cairn::runtime::auth {

std::string_view to_string(scope s) noexcept {
  switch (s) {
    case scope::ingest:
      return "ingest";
    case scope::query:
      return "query";
    case scope::admin:
      return "admin";
  }
  return "?";
}

std::optional<scope> scope_from_string(std::string_view name) noexcept {
  for (auto s : {scope::ingest, scope::query, scope::admin})
    if (name == to_string(s))
      return s;
  return std::nullopt;
}

std::string scopes_text(scope_set set) {
  std::string out;
  for (auto s : {scope::ingest, scope::query, scope::admin}) {
    if ((set & static_cast<scope_set>(s)) == 0)
      continue;
    if (!out.empty())
      out += ' ';
    out += to_string(s);
  }
  return out;
}

std::string address_of(std::string_view peer) {
  if (!peer.empty() && peer.front() == '[') {
    auto close = peer.find(']');
    if (close != std::string_view::npos)
      return std::string{peer.substr(1, close - 1)};
  }
  auto colon = peer.rfind(':');
  // More than one colon without brackets: a bare IPv6 address.
  if (colon == std::string_view::npos || peer.find(':') != colon)
    return std::string{peer};
  return std::string{peer.substr(0, colon)};
}

} // namespace cairn::runtime::auth
