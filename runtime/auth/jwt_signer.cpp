#include "runtime/auth/jwt_signer.hpp"

#include <jwt.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

namespace cairn::runtime::auth {

namespace {

struct jwt_deleter {
  void operator()(jwt_t* p) const noexcept { jwt_free(p); }
};

struct free_deleter {
  void operator()(char* p) const noexcept { std::free(p); }
};

void check(int rc, const char* what) {
  if (rc != 0)
    throw std::invalid_argument(std::string{"cannot "} + what);
}

} // namespace

std::string sign_token(const token_request& req, int64_t now) {
  auto alg = jwt_str_alg(req.algorithm.c_str());
  if (alg != JWT_ALG_HS256 && alg != JWT_ALG_RS256 && alg != JWT_ALG_ES256)
    throw std::invalid_argument("the algorithm must be HS256, RS256 or ES256, not '"
                                + req.algorithm + "'");
  if (alg == JWT_ALG_HS256 && req.key.size() < 32)
    throw std::invalid_argument("the HS256 secret must have at least 32 bytes "
                                "(a node refuses a shorter one)");
  if (req.ttl.count() <= 0)
    throw std::invalid_argument("the lifetime must be positive");
  std::string scope;
  for (const auto& s : req.scopes) {
    if (s != "ingest" && s != "query" && s != "admin")
      throw std::invalid_argument("unknown scope '" + s
                                  + "' (ingest, query or admin)");
    scope += scope.empty() ? s : " " + s;
  }
  if (scope.empty())
    throw std::invalid_argument("a token needs at least one scope");
  jwt_t* raw = nullptr;
  check(jwt_new(&raw), "allocate a token");
  std::unique_ptr<jwt_t, jwt_deleter> token{raw};
  if (!req.subject.empty())
    check(jwt_add_grant(token.get(), "sub", req.subject.c_str()), "set sub");
  check(jwt_add_grant(token.get(), "scope", scope.c_str()), "set scope");
  check(jwt_add_grant_int(token.get(), "iat", now), "set iat");
  check(jwt_add_grant_int(token.get(), "exp", now + req.ttl.count()), "set exp");
  if (!req.issuer.empty())
    check(jwt_add_grant(token.get(), "iss", req.issuer.c_str()), "set iss");
  if (!req.audience.empty())
    check(jwt_add_grant(token.get(), "aud", req.audience.c_str()), "set aud");
  check(jwt_set_alg(token.get(), alg,
                    reinterpret_cast<const unsigned char*>(req.key.data()),
                    static_cast<int>(req.key.size())),
        "use the key with this algorithm");
  std::unique_ptr<char, free_deleter> text{jwt_encode_str(token.get())};
  if (!text)
    throw std::invalid_argument("cannot sign with this key (for RS256 / ES256 "
                                "give the private key as PEM)");
  return text.get();
}

std::string read_key_file(const char* option, const std::string& path,
                          bool is_secret) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    throw std::invalid_argument(std::string{"option "} + option
                                + ": cannot read '" + path + "'");
  std::ostringstream text;
  text << in.rdbuf();
  auto key = text.str();
  // A secret file usually ends in a newline that is not part of it.
  if (is_secret)
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r'))
      key.pop_back();
  return key;
}

} // namespace cairn::runtime::auth
