#include "runtime/auth/jwt_verifier.hpp"

#include <jwt.h>
#include <nlohmann/json.hpp>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstdlib>
#include <memory>
#include <stdexcept>

namespace cairn::runtime::auth {

namespace {

using nlohmann::json;

struct jwt_deleter {
  void operator()(jwt_t* p) const noexcept { jwt_free(p); }
};

struct free_deleter {
  void operator()(char* p) const noexcept { std::free(p); }
};

/// True if OpenSSL reads `pem` as a public key of the kind `alg` needs.
bool readable_public_key(const std::string& pem, jwt_alg_t alg) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio{
    BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free};
  if (!bio)
    return false;
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key{
    PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free};
  if (!key)
    return false;
  auto id = EVP_PKEY_base_id(key.get());
  return alg == JWT_ALG_RS256 ? id == EVP_PKEY_RSA : id == EVP_PKEY_EC;
}

/// A numeric claim as epoch seconds (integers or, as some libraries write
/// them, numbers with a fraction); nullopt if absent, false if not a number.
std::optional<std::optional<int64_t>> time_claim(const json& claims,
                                                 const char* name) {
  auto i = claims.find(name);
  if (i == claims.end())
    return std::optional<int64_t>{};
  if (i->is_number_integer() || i->is_number_unsigned())
    return std::optional<int64_t>{i->get<int64_t>()};
  if (i->is_number_float())
    return std::optional<int64_t>{static_cast<int64_t>(i->get<double>())};
  return std::nullopt;
}

/// Decodes base64url without padding (RFC 7515 2); invalid characters
/// make the result unparsable, which the caller reports.
std::string base64url_decode(std::string_view in) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char ch : in) {
    int v;
    if (ch >= 'A' && ch <= 'Z')
      v = ch - 'A';
    else if (ch >= 'a' && ch <= 'z')
      v = ch - 'a' + 26;
    else if (ch >= '0' && ch <= '9')
      v = ch - '0' + 52;
    else if (ch == '-')
      v = 62;
    else if (ch == '_')
      v = 63;
    else
      break;  // '=' padding
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

jwt_refusal refuse(jwt_failure f, std::string message) {
  return {f, std::move(message)};
}

} // namespace

std::string_view to_string(jwt_failure f) noexcept {
  switch (f) {
    case jwt_failure::malformed:
      return "malformed";
    case jwt_failure::wrong_algorithm:
      return "wrong_algorithm";
    case jwt_failure::bad_signature:
      return "bad_signature";
    case jwt_failure::expired:
      return "expired";
    case jwt_failure::not_yet_valid:
      return "not_yet_valid";
    case jwt_failure::wrong_claims:
      return "wrong_claims";
  }
  return "malformed";
}

jwt_verifier::jwt_verifier(jwt_options opts) : opts_(std::move(opts)) {
  auto alg = jwt_str_alg(opts_.algorithm.c_str());
  if (alg != JWT_ALG_HS256 && alg != JWT_ALG_RS256 && alg != JWT_ALG_ES256)
    throw std::invalid_argument("JWT algorithm must be HS256, RS256 or ES256, not '"
                                + opts_.algorithm + "'");
  alg_ = static_cast<int>(alg);
  if (alg == JWT_ALG_HS256) {
    // RFC 7518 3.2: a key of at least the hash size.
    if (opts_.secret.size() < 32)
      throw std::invalid_argument("the HS256 secret must have at least 32 bytes");
  } else if (!readable_public_key(opts_.public_key, alg)) {
    throw std::invalid_argument(std::string{"the public key is not a PEM "}
                                + (alg == JWT_ALG_RS256 ? "RSA" : "EC")
                                + " public key (needed for " + opts_.algorithm
                                + ")");
  }
}

std::variant<principal, jwt_refusal>
jwt_verifier::verify(std::string_view token, int64_t now) const {
  // A token is three base64url parts: nothing else reaches libjwt (which
  // wants a NUL-terminated string and would take an embedded NUL as the
  // end).
  size_t dots = 0;
  for (char ch : token) {
    bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')
              || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '=';
    if (ch == '.')
      ++dots;
    else if (!ok)
      return refuse(jwt_failure::malformed,
                    "the token is not a JWT (a character outside base64url)");
  }
  if (dots != 2 || token.size() > 16384)
    return refuse(jwt_failure::malformed,
                  "the token is not a JWT (header.payload.signature)");
  // The algorithm is the node's, never the token's choice: libjwt skips the
  // signature check for alg "none" even with a key, and checks a signature
  // with whatever algorithm the header names (an HS256 token "signed" with
  // the RSA public key's text would pass).
  auto header = json::parse(base64url_decode(token.substr(0, token.find('.'))),
                            nullptr, false);
  if (!header.is_object())
    return refuse(jwt_failure::malformed, "the token's header is not a JSON object");
  auto alg = header.find("alg");
  if (alg == header.end() || !alg->is_string() || *alg != opts_.algorithm)
    return refuse(jwt_failure::wrong_algorithm,
                  std::string{"the token is not signed with "} + opts_.algorithm);
  std::string text{token};
  const auto& key = alg_ == JWT_ALG_HS256 ? opts_.secret : opts_.public_key;
  jwt_t* raw = nullptr;
  int rc = jwt_decode(&raw, text.c_str(),
                      reinterpret_cast<const unsigned char*>(key.data()),
                      static_cast<int>(key.size()));
  std::unique_ptr<jwt_t, jwt_deleter> decoded{raw};
  if (rc != 0 || jwt_get_alg(decoded.get()) != static_cast<jwt_alg_t>(alg_))
    return refuse(jwt_failure::bad_signature,
                  "the token's signature does not verify with this node's key "
                  "(or its payload is not JSON)");
  std::unique_ptr<char, free_deleter> grants{
    jwt_get_grants_json(decoded.get(), nullptr)};
  auto claims = grants ? json::parse(grants.get(), nullptr, false) : json{};
  if (!claims.is_object())
    return refuse(jwt_failure::malformed, "the token's claims are not a JSON object");
  auto exp = time_claim(claims, "exp");
  auto nbf = time_claim(claims, "nbf");
  if (!exp || !nbf)
    return refuse(jwt_failure::malformed, "exp and nbf must be numbers");
  auto leeway = static_cast<int64_t>(opts_.leeway.count());
  if (*exp && now > **exp + leeway)
    return refuse(jwt_failure::expired,
                  "the token expired " + std::to_string(now - **exp) + " s ago");
  if (*nbf && now + leeway < **nbf)
    return refuse(jwt_failure::not_yet_valid,
                  "the token is not valid for another "
                    + std::to_string(**nbf - now) + " s (nbf)");
  if (!opts_.issuer.empty()) {
    auto iss = claims.find("iss");
    if (iss == claims.end() || !iss->is_string() || *iss != opts_.issuer)
      return refuse(jwt_failure::wrong_claims, "the token's iss is not this node's issuer");
  }
  if (!opts_.audience.empty()) {
    bool found = false;
    if (auto aud = claims.find("aud"); aud != claims.end()) {
      if (aud->is_string())
        found = *aud == opts_.audience;
      else if (aud->is_array())
        for (auto& a : *aud)
          found = found || (a.is_string() && a == opts_.audience);
    }
    if (!found)
      return refuse(jwt_failure::wrong_claims, "the token's aud does not name this node");
  }
  principal who;
  who.authenticated = true;
  who.scopes = 0;
  who.expires_at = *exp ? **exp : 0;
  if (auto sub = claims.find("sub"); sub != claims.end() && sub->is_string())
    who.sub = sub->get<std::string>();
  auto add_scope = [&who](std::string_view name) {
    if (auto s = scope_from_string(name))
      who.scopes |= static_cast<scope_set>(*s);
  };
  if (auto s = claims.find("scope"); s != claims.end() && s->is_string()) {
    std::string_view all = s->get_ref<const std::string&>();
    while (!all.empty()) {
      auto sp = all.find(' ');
      add_scope(all.substr(0, sp));
      if (sp == std::string_view::npos)
        break;
      all.remove_prefix(sp + 1);
    }
  }
  if (auto s = claims.find("scopes"); s != claims.end() && s->is_array())
    for (auto& one : *s)
      if (one.is_string())
        add_scope(one.get_ref<const std::string&>());
  return who;
}

} // namespace cairn::runtime::auth
