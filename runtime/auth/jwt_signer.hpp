// jwt_signer: mints a JSON Web Token a Cairn node accepts (docs/operations.md,
// "Securing a node"), for `cairn-cli token` and the deployment files' demo
// tokens. The issuer of production tokens is usually elsewhere (any JWT
// library works); this one exists so that a node can be used with nothing
// but the project's binaries.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace cairn::runtime::auth {

struct token_request {
  /// "HS256", "RS256" or "ES256".
  std::string algorithm = "HS256";
  /// HS256: the shared secret; RS256 / ES256: the private key, PEM text.
  std::string key;
  std::string subject;
  /// Scope names ("ingest", "query", "admin"), written as the `scope`
  /// claim, space-separated (RFC 8693).
  std::vector<std::string> scopes;
  /// Lifetime from `now`; `exp` = now + ttl. Must be positive.
  std::chrono::seconds ttl{86400};
  /// Written when not empty.
  std::string issuer;
  std::string audience;
};

/// Returns the signed token (`iat` = `now`, epoch seconds). Throws
/// std::invalid_argument naming what is wrong (unknown algorithm or scope,
/// a short HS256 secret, a key libjwt cannot sign with).
std::string sign_token(const token_request& req, int64_t now);

/// Reads a key file the way the node does: a secret file loses its
/// trailing newlines, a PEM file is taken as it is. Throws
/// std::invalid_argument naming `option` and the path if unreadable.
std::string read_key_file(const char* option, const std::string& path,
                          bool is_secret);

} // namespace cairn::runtime::auth
