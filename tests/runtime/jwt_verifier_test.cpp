// The verifier against tokens minted here with libjwt and OpenSSL keys
// (tokens of other libraries: tests/integration/test_auth.py).
#include "runtime/auth/jwt_signer.hpp"
#include "runtime/auth/jwt_verifier.hpp"

#include <doctest/doctest.h>

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstdlib>
#include <memory>
#include <string>

using namespace cairn::runtime::auth;

namespace {

constexpr int64_t now = 1764190000;
const std::string secret = "0123456789abcdef0123456789abcdef-secret";

struct keypair {
  std::string private_pem;
  std::string public_pem;
};

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  auto n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

keypair make_keys(bool rsa) {
  EVP_PKEY* key = rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
  REQUIRE(key != nullptr);
  keypair out;
  BIO* priv = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(priv, key, nullptr, nullptr, 0, nullptr, nullptr);
  out.private_pem = bio_text(priv);
  BIO_free(priv);
  BIO* pub = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(pub, key);
  out.public_pem = bio_text(pub);
  BIO_free(pub);
  EVP_PKEY_free(key);
  return out;
}

/// A token with `claims` (JSON object text) signed with `alg` and `key`.
std::string mint(jwt_alg_t alg, const std::string& key, const std::string& claims) {
  jwt_t* jwt = nullptr;
  REQUIRE(jwt_new(&jwt) == 0);
  REQUIRE(jwt_add_grants_json(jwt, claims.c_str()) == 0);
  REQUIRE(jwt_set_alg(jwt, alg, reinterpret_cast<const unsigned char*>(key.data()),
                      static_cast<int>(key.size()))
          == 0);
  char* text = jwt_encode_str(jwt);
  REQUIRE(text != nullptr);
  std::string out{text};
  std::free(text);
  jwt_free(jwt);
  return out;
}

std::string b64url(const std::string& in) {
  static const char* abc =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6)
      out += abc[(v >> s) & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += abc[(v >> 18) & 63];
    out += abc[(v >> 12) & 63];
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += abc[(v >> 18) & 63];
    out += abc[(v >> 12) & 63];
    out += abc[(v >> 6) & 63];
  }
  return out;
}

jwt_verifier hs256() {
  jwt_options o;
  o.secret = secret;
  return jwt_verifier{o};
}

const principal* ok(const std::variant<principal, jwt_refusal>& r) {
  return std::get_if<principal>(&r);
}

jwt_failure failure(const std::variant<principal, jwt_refusal>& r) {
  REQUIRE(std::holds_alternative<jwt_refusal>(r));
  return std::get<jwt_refusal>(r).failure;
}

} // namespace

TEST_SUITE("runtime.jwt_verifier") {

TEST_CASE("HS256: sub, scopes and exp of a valid token") {
  auto v = hs256();
  auto t = mint(JWT_ALG_HS256, secret,
                R"({"sub":"svc-a","scope":"ingest query bogus","exp":1764193600})");
  auto r = v.verify(t, now);
  auto* who = ok(r);
  REQUIRE(who != nullptr);
  CHECK(who->sub == "svc-a");
  CHECK(who->authenticated);
  CHECK(who->has(scope::ingest));
  CHECK(who->has(scope::query));
  CHECK_FALSE(who->has(scope::admin));
  CHECK(who->expires_at == 1764193600);
  CHECK(who->key() == "svc-a");
  // A "scopes" array works as well.
  auto t2 = mint(JWT_ALG_HS256, secret, R"({"sub":"ops","scopes":["admin"]})");
  auto r2 = v.verify(t2, now);
  REQUIRE(ok(r2) != nullptr);
  CHECK(ok(r2)->scopes == static_cast<scope_set>(scope::admin));
  CHECK(ok(r2)->expires_at == 0);
}

TEST_CASE("exp and nbf are checked with the leeway") {
  auto v = hs256();  // leeway 30 s
  auto expired = mint(JWT_ALG_HS256, secret, R"({"sub":"a","exp":1764189000})");
  CHECK(failure(v.verify(expired, now)) == jwt_failure::expired);
  auto just = mint(JWT_ALG_HS256, secret, R"({"sub":"a","exp":1764189980})");
  CHECK(ok(v.verify(just, now)) != nullptr);  // 20 s late: within leeway
  auto future = mint(JWT_ALG_HS256, secret, R"({"sub":"a","nbf":1764190600})");
  CHECK(failure(v.verify(future, now)) == jwt_failure::not_yet_valid);
  auto soon = mint(JWT_ALG_HS256, secret, R"({"sub":"a","nbf":1764190020})");
  CHECK(ok(v.verify(soon, now)) != nullptr);
  auto bad = mint(JWT_ALG_HS256, secret, R"({"sub":"a","exp":"tomorrow"})");
  CHECK(failure(v.verify(bad, now)) == jwt_failure::malformed);
}

TEST_CASE("tampered, wrong-key, alg none and garbage tokens are refused") {
  auto v = hs256();
  auto t = mint(JWT_ALG_HS256, secret, R"({"sub":"a","scope":"query"})");
  // Another payload under the original signature.
  auto dot1 = t.find('.');
  auto dot2 = t.find('.', dot1 + 1);
  auto forged = t.substr(0, dot1 + 1) + b64url(R"({"sub":"a","scope":"admin"})")
                + t.substr(dot2);
  CHECK(failure(v.verify(forged, now)) == jwt_failure::bad_signature);
  // One flipped signature character.
  auto flipped = t;
  flipped[t.size() - 3] = flipped[t.size() - 3] == 'A' ? 'B' : 'A';
  CHECK(std::holds_alternative<jwt_refusal>(v.verify(flipped, now)));
  auto other = mint(JWT_ALG_HS256, std::string(40, 'x'), R"({"sub":"a"})");
  CHECK(failure(v.verify(other, now)) == jwt_failure::bad_signature);
  // alg none: libjwt would accept it without a signature check.
  auto none = b64url(R"({"alg":"none","typ":"JWT"})") + "."
              + b64url(R"({"sub":"root","scope":"admin"})") + ".";
  CHECK(failure(v.verify(none, now)) == jwt_failure::wrong_algorithm);
  for (std::string junk : std::initializer_list<std::string>{
         "", "abc", "a.b", "a.b.c.d", "x.y.z", "a b.c.d", std::string("a.b\0.c", 6)})
    CHECK(std::holds_alternative<jwt_refusal>(v.verify(junk, now)));
  // No message carries token bytes.
  auto r = v.verify(forged, now);
  auto& msg = std::get<jwt_refusal>(r).message;
  CHECK(msg.find(forged.substr(0, 10)) == std::string::npos);
}

TEST_CASE("RS256 and ES256 with a public key; algorithm confusion refused") {
  for (bool rsa : {true, false}) {
    CAPTURE(rsa);
    auto keys = make_keys(rsa);
    jwt_options o;
    o.algorithm = rsa ? "RS256" : "ES256";
    o.public_key = keys.public_pem;
    jwt_verifier v{o};
    auto alg = rsa ? JWT_ALG_RS256 : JWT_ALG_ES256;
    auto t = mint(alg, keys.private_pem, R"({"sub":"k","scope":"ingest"})");
    auto r = v.verify(t, now);
    REQUIRE(ok(r) != nullptr);
    CHECK(ok(r)->sub == "k");
    // HS256 "signed" with the public key's text as the secret.
    auto confused = mint(JWT_ALG_HS256, keys.public_pem, R"({"sub":"k","scope":"admin"})");
    CHECK(failure(v.verify(confused, now)) == jwt_failure::wrong_algorithm);
    // Another key pair of the same kind.
    auto stranger = make_keys(rsa);
    auto wrong = mint(alg, stranger.private_pem, R"({"sub":"k"})");
    CHECK(std::holds_alternative<jwt_refusal>(v.verify(wrong, now)));
  }
}

TEST_CASE("issuer and audience when configured") {
  jwt_options o;
  o.secret = secret;
  o.issuer = "https://issuer.example";
  o.audience = "cairn";
  jwt_verifier v{o};
  auto good = mint(JWT_ALG_HS256, secret,
                   R"({"sub":"a","iss":"https://issuer.example","aud":["x","cairn"]})");
  CHECK(ok(v.verify(good, now)) != nullptr);
  auto bad_iss = mint(JWT_ALG_HS256, secret, R"({"sub":"a","iss":"evil","aud":"cairn"})");
  CHECK(failure(v.verify(bad_iss, now)) == jwt_failure::wrong_claims);
  auto no_aud = mint(JWT_ALG_HS256, secret, R"({"sub":"a","iss":"https://issuer.example"})");
  CHECK(failure(v.verify(no_aud, now)) == jwt_failure::wrong_claims);
}

TEST_CASE("bad configuration throws") {
  jwt_options o;
  o.secret = "short";
  CHECK_THROWS_AS(jwt_verifier{o}, std::invalid_argument);
  o.secret = secret;
  o.algorithm = "none";
  CHECK_THROWS_AS(jwt_verifier{o}, std::invalid_argument);
  o.algorithm = "RS256";
  o.public_key = "not a key";
  CHECK_THROWS_AS(jwt_verifier{o}, std::invalid_argument);
  o.algorithm = "ES256";
  o.public_key = make_keys(true).public_pem;  // RSA key for ES256
  CHECK_THROWS_AS(jwt_verifier{o}, std::invalid_argument);
}

TEST_CASE("principal helpers") {
  CHECK(address_of("127.0.0.1:5000") == "127.0.0.1");
  CHECK(address_of("[::1]:5000") == "::1");
  CHECK(address_of("::1") == "::1");
  CHECK(address_of("http") == "http");
  CHECK(scopes_text(all_scopes) == "ingest query admin");
  principal p;
  p.address = "10.0.0.1";
  CHECK(p.key() == "10.0.0.1");
}

TEST_CASE("signer: HS256 tokens the verifier accepts, with sub, scopes, exp, iss and aud") {
  token_request req;
  req.key = secret;
  req.subject = "ingest-svc";
  req.scopes = {"ingest", "query"};
  req.ttl = std::chrono::seconds{3600};
  req.issuer = "cairn-ops";
  req.audience = "cairn";
  auto t = sign_token(req, now);
  jwt_options o;
  o.secret = secret;
  o.issuer = "cairn-ops";
  o.audience = "cairn";
  jwt_verifier v{o};
  auto r = v.verify(t, now + 10);
  auto* who = ok(r);
  REQUIRE(who != nullptr);
  CHECK(who->sub == "ingest-svc");
  CHECK(who->has(scope::ingest));
  CHECK(who->has(scope::query));
  CHECK_FALSE(who->has(scope::admin));
  CHECK(who->expires_at == now + 3600);
  CHECK(failure(v.verify(t, now + 3600 + 31)) == jwt_failure::expired);
  req.key = std::string(secret.rbegin(), secret.rend());
  CHECK(failure(v.verify(sign_token(req, now), now)) == jwt_failure::bad_signature);
}

TEST_CASE("signer: RS256 and ES256 with the private key verify with the public key") {
  for (bool rsa : {true, false}) {
    auto keys = make_keys(rsa);
    token_request req;
    req.algorithm = rsa ? "RS256" : "ES256";
    req.key = keys.private_pem;
    req.scopes = {"admin"};
    auto t = sign_token(req, now);
    jwt_options o;
    o.algorithm = req.algorithm;
    o.public_key = keys.public_pem;
    auto r = jwt_verifier{o}.verify(t, now);
    REQUIRE(ok(r) != nullptr);
    CHECK(ok(r)->has(scope::admin));
    // The public key cannot sign.
    req.key = keys.public_pem;
    CHECK_THROWS_AS(sign_token(req, now), std::invalid_argument);
  }
}

TEST_CASE("signer: refuses what no node would accept") {
  token_request req;
  req.key = secret;
  req.scopes = {"ingest"};
  req.algorithm = "none";
  CHECK_THROWS_AS(sign_token(req, now), std::invalid_argument);
  req.algorithm = "HS256";
  req.key = "short";
  CHECK_THROWS_AS(sign_token(req, now), std::invalid_argument);
  req.key = secret;
  req.scopes = {"root"};
  CHECK_THROWS_AS(sign_token(req, now), std::invalid_argument);
  req.scopes = {};
  CHECK_THROWS_AS(sign_token(req, now), std::invalid_argument);
  req.scopes = {"query"};
  req.ttl = std::chrono::seconds{0};
  CHECK_THROWS_AS(sign_token(req, now), std::invalid_argument);
}

}
