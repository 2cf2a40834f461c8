#include "runtime/auth/access_control.hpp"

#include <doctest/doctest.h>

#include <jwt.h>

#include <cstdlib>
#include <ctime>

using namespace cairn::runtime;
using namespace cairn::runtime::auth;

namespace {

const std::string secret = "an-hs256-secret-of-more-than-32-bytes";

std::string mint(const std::string& claims) {
  jwt_t* jwt = nullptr;
  REQUIRE(jwt_new(&jwt) == 0);
  REQUIRE(jwt_add_grants_json(jwt, claims.c_str()) == 0);
  REQUIRE(jwt_set_alg(jwt, JWT_ALG_HS256,
                      reinterpret_cast<const unsigned char*>(secret.data()),
                      static_cast<int>(secret.size()))
          == 0);
  char* text = jwt_encode_str(jwt);
  std::string out{text};
  std::free(text);
  jwt_free(jwt);
  return out;
}

std::optional<jwt_verifier> verifier() {
  jwt_options o;
  o.secret = secret;
  return jwt_verifier{o};
}

} // namespace

TEST_SUITE("runtime.access_control") {

TEST_CASE("required: anonymous clients have no scope; tokens give theirs") {
  access_control ac{verifier(), true, rate_options{}};
  CHECK(ac.required());
  CHECK(ac.verifies());
  auto anon = ac.anonymous("10.0.0.7:5000");
  CHECK(anon->scopes == 0);
  CHECK_FALSE(anon->authenticated);
  CHECK(anon->key() == "10.0.0.7");
  auto r = ac.authenticate(mint(R"({"sub":"w","scope":"ingest"})"), "10.0.0.7:5000");
  auto* who = std::get_if<std::shared_ptr<const principal>>(&r);
  REQUIRE(who != nullptr);
  CHECK((*who)->sub == "w");
  CHECK((*who)->address == "10.0.0.7");
  CHECK((*who)->has(scope::ingest));
  CHECK(ac.authenticated.load() == 1);
  auto bad = ac.authenticate("x.y.z", "10.0.0.7:5000");
  CHECK(std::holds_alternative<jwt_refusal>(bad));
  CHECK(ac.unauthorized.load() == 1);
}

TEST_CASE("optional: anonymous clients have every scope; no key, no check") {
  access_control open{std::nullopt, false, rate_options{}};
  CHECK(open.anonymous("127.0.0.1:1")->scopes == all_scopes);
  auto r = open.authenticate("anything", "127.0.0.1:1");
  REQUIRE(std::holds_alternative<std::shared_ptr<const principal>>(r));
  CHECK_FALSE(std::get<std::shared_ptr<const principal>>(r)->authenticated);
  CHECK_THROWS_AS((access_control{std::nullopt, true, rate_options{}}),
                  std::invalid_argument);
}

TEST_CASE("a connection outliving its token's exp (plus leeway)") {
  access_control ac{verifier(), true, rate_options{}};
  principal p;
  p.authenticated = true;
  p.expires_at = 1000;
  CHECK(ac.still_valid(p, 1000 * 1000));
  CHECK(ac.still_valid(p, 1030 * 1000));  // leeway 30 s
  CHECK_FALSE(ac.still_valid(p, 1031 * 1000));
  p.expires_at = 0;
  CHECK(ac.still_valid(p, 1LL << 50));
}

TEST_CASE("Bearer and Sec-WebSocket-Protocol tokens") {
  CHECK(bearer_token("Bearer abc.def.ghi") == "abc.def.ghi");
  CHECK(bearer_token("bearer   abc ") == "abc");
  CHECK(bearer_token("Basic dXNlcjpw") == "");
  CHECK(bearer_token("Bearer") == "");
  CHECK(bearer_token("") == "");
  CHECK(websocket_protocol_token("cairn, bearer.a.b.c") == "a.b.c");
  CHECK(websocket_protocol_token("bearer.x.y.z") == "x.y.z");
  CHECK(websocket_protocol_token("cairn") == "");
}

}
