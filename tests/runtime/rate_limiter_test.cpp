#include "runtime/rate_limiter.hpp"

#include <doctest/doctest.h>

using namespace cairn::runtime;
using namespace std::chrono_literals;

namespace {

auth::principal who(std::string sub, auth::scope_set scopes = auth::all_scopes) {
  auth::principal p;
  p.sub = std::move(sub);
  p.scopes = scopes;
  p.address = "127.0.0.1";
  return p;
}

const auto t0 = rate_limiter::clock::time_point{} + 1h;

} // namespace

TEST_SUITE("runtime.rate_limiter") {

TEST_CASE("no rate: everything admitted at once, still counted") {
  rate_limiter rl{rate_options{}};
  CHECK_FALSE(rl.enabled());
  auto d = rl.take(who("a"), rate_kind::events, 1000000, t0, false);
  CHECK(d.admitted);
  CHECK(d.delay == 0ms);
  auto c = rl.counters();
  REQUIRE(c.size() == 1);
  CHECK(c[0].events == 1000000);
}

TEST_CASE("requests: burst, refusal with retry_after, recovery after the window") {
  rate_options o;
  o.requests_per_sec = 10;  // bucket of 10 (burst 1 s)
  rate_limiter rl{o};
  CHECK(rl.enabled());
  auto a = who("a");
  for (int i = 0; i < 10; ++i)
    CHECK(rl.take(a, rate_kind::requests, 1, t0, false).admitted);
  auto refused = rl.take(a, rate_kind::requests, 1, t0, false);
  CHECK_FALSE(refused.admitted);
  CHECK(refused.retry_after == 100ms);  // one token at 10/s
  // Another principal has a bucket of its own.
  CHECK(rl.take(who("b"), rate_kind::requests, 1, t0, false).admitted);
  // After retry_after the same take passes.
  CHECK(rl.take(a, rate_kind::requests, 1, t0 + 100ms, false).admitted);
  CHECK_FALSE(rl.take(a, rate_kind::requests, 1, t0 + 100ms, false).admitted);
  // A full window later the whole burst is back.
  for (int i = 0; i < 10; ++i)
    CHECK(rl.take(a, rate_kind::requests, 1, t0 + 1200ms, false).admitted);
  auto c = rl.counters();
  REQUIRE(c.size() == 2);
  CHECK(c[0].key == "a");
  CHECK(c[0].requests == 21);
  CHECK(c[0].requests_limited == 2);
}

TEST_CASE("events: a caller that may wait gets a delay, up to max_delay") {
  rate_options o;
  o.events_per_sec = 1000;
  o.max_delay = 500ms;
  rate_limiter rl{o};
  auto a = who("a");
  CHECK(rl.take(a, rate_kind::events, 1000, t0, true).delay == 0ms);
  // 200 more: 200 ms of refill missing.
  auto d = rl.take(a, rate_kind::events, 200, t0, true);
  CHECK(d.admitted);
  CHECK(d.delay == 200ms);
  // The debt counts: another 400 would need 600 ms > max_delay.
  auto r = rl.take(a, rate_kind::events, 400, t0, true);
  CHECK_FALSE(r.admitted);
  CHECK(r.retry_after == 600ms);
  // The refusal cost nothing: 300 ms later, 100 tokens are back.
  CHECK(rl.take(a, rate_kind::events, 100, t0 + 300ms, false).admitted);
  // A batch larger than the bucket passes once the bucket is full, into
  // debt, so the long-run rate holds.
  CHECK(rl.take(a, rate_kind::events, 5000, t0 + 10s, false).admitted);
  CHECK_FALSE(rl.take(a, rate_kind::events, 1, t0 + 10s + 3s, false).admitted);
  CHECK(rl.take(a, rate_kind::events, 1, t0 + 10s + 4001ms, false).admitted);
  CHECK(rl.counters()[0].delayed == 1);
}

TEST_CASE("per-scope rates: the largest of the principal's scopes") {
  rate_options o;
  o.events_per_sec = 10;                // default
  o.scope_events_per_sec[0] = 1000;     // ingest
  o.scope_events_per_sec[2] = 100;      // admin
  rate_limiter rl{o};
  auto ingest = who("i", static_cast<auth::scope_set>(auth::scope::ingest));
  auto admin = who("x", static_cast<auth::scope_set>(auth::scope::admin));
  auto both = who("b", static_cast<auth::scope_set>(auth::scope::admin)
                         | static_cast<auth::scope_set>(auth::scope::ingest));
  auto query = who("q", static_cast<auth::scope_set>(auth::scope::query));
  CHECK(rl.take(ingest, rate_kind::events, 1000, t0, false).admitted);
  CHECK_FALSE(rl.take(ingest, rate_kind::events, 1, t0, false).admitted);
  CHECK(rl.take(admin, rate_kind::events, 100, t0, false).admitted);
  CHECK_FALSE(rl.take(admin, rate_kind::events, 1, t0, false).admitted);
  CHECK(rl.take(both, rate_kind::events, 1000, t0, false).admitted);
  CHECK(rl.take(query, rate_kind::events, 10, t0, false).admitted);  // default
  CHECK_FALSE(rl.take(query, rate_kind::events, 1, t0, false).admitted);
  // Requests have no rate at all here.
  CHECK(rl.take(query, rate_kind::requests, 100000, t0, false).admitted);
}

TEST_CASE("without a sub the address is the key; labels are escaped") {
  rate_options o;
  o.requests_per_sec = 1;
  rate_limiter rl{o};
  auth::principal anon;
  anon.address = "10.1.2.3";
  CHECK(rl.take(anon, rate_kind::requests, 1, t0, false).admitted);
  CHECK(rl.take(who("we\"ird\\sub\n"), rate_kind::requests, 1, t0, false).admitted);
  auto text = rl.render_prometheus();
  CHECK(text.find("cairn_rate_requests_total{principal=\"10.1.2.3\"} 1") != std::string::npos);
  CHECK(text.find(R"(principal="we\"ird\\sub\n")") != std::string::npos);
}

TEST_CASE("idle principals are forgotten past max_principals") {
  rate_options o;
  o.requests_per_sec = 1;
  o.max_principals = 2;
  rate_limiter rl{o};
  CHECK(rl.take(who("a"), rate_kind::requests, 1, t0, false).admitted);
  CHECK(rl.take(who("b"), rate_kind::requests, 1, t0 + 30s, false).admitted);
  CHECK(rl.take(who("c"), rate_kind::requests, 1, t0 + 61s, false).admitted);
  auto c = rl.counters();
  REQUIRE(c.size() == 2);
  CHECK(c[0].key == "b");
  CHECK(c[1].key == "c");
}

}
