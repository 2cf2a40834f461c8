#include "runtime/circuit_breaker.hpp"

#include <doctest/doctest.h>

using namespace cairn::runtime;
using namespace std::chrono_literals;

TEST_SUITE("runtime.circuit_breaker") {
  TEST_CASE("opens after consecutive failures, probes once, closes") {
    circuit_breaker b{{3, 100ms, 1000ms}};
    auto t = circuit_breaker::clock::now();
    CHECK(b.allow(t));
    b.on_failure(t);
    b.on_failure(t);
    CHECK(b.state(t) == breaker_state::closed);
    b.on_success(t);  // resets the consecutive count
    b.on_failure(t);
    b.on_failure(t);
    CHECK(b.state(t) == breaker_state::closed);
    b.on_failure(t);
    CHECK(b.state(t) == breaker_state::open);
    CHECK_FALSE(b.allow(t + 50ms));
    CHECK(b.state(t + 100ms) == breaker_state::half_open);
    CHECK(b.allow(t + 100ms));        // the one probe
    CHECK_FALSE(b.allow(t + 100ms));  // no second probe
    b.on_success(t + 110ms);
    CHECK(b.state(t + 110ms) == breaker_state::closed);
    CHECK(b.counters().opened == 1);
    CHECK(b.counters().half_opened == 1);
    CHECK(b.counters().closed == 1);
  }

  TEST_CASE("reset timeout doubles on failed probes up to the cap") {
    circuit_breaker b{{1, 100ms, 350ms}};
    auto t = circuit_breaker::clock::now();
    b.on_failure(t);
    CHECK(b.reopen_at() == t + 100ms);
    t += 100ms;
    REQUIRE(b.allow(t));
    b.on_failure(t);
    CHECK(b.reopen_at() == t + 200ms);
    t += 200ms;
    REQUIRE(b.allow(t));
    b.on_failure(t);
    CHECK(b.reopen_at() == t + 350ms);
    t += 350ms;
    REQUIRE(b.allow(t));
    b.on_failure(t);
    CHECK(b.reopen_at() == t + 350ms);
    t += 350ms;
    REQUIRE(b.allow(t));
    b.on_success(t);
    CHECK(b.current_reset() == 100ms);
  }

  TEST_CASE("trip opens at once") {
    circuit_breaker b;
    auto t = circuit_breaker::clock::now();
    b.trip(t);
    CHECK(b.state(t) == breaker_state::open);
    CHECK_FALSE(b.allow(t));
  }

  TEST_CASE("a refusal noted by the caller leaves the probe slot free") {
    // The remote-query path refuses calls while half-open; it must not take
    // the single probe slot, or the probe that would close the breaker is
    // never sent (a peer stayed half-open for good after a restart).
    circuit_breaker b{{1, 100ms, 1000ms}};
    auto t = circuit_breaker::clock::now();
    b.trip(t);
    CHECK(b.state(t + 100ms) == breaker_state::half_open);
    b.note_rejected();
    b.note_rejected();
    CHECK(b.counters().rejected == 2);
    CHECK_FALSE(b.probe_in_flight());
    CHECK(b.allow(t + 100ms));  // the probe still goes out
    CHECK(b.probe_in_flight());
    b.on_success(t + 120ms);
    CHECK(b.state(t + 120ms) == breaker_state::closed);
    CHECK_FALSE(b.probe_in_flight());
  }
}
