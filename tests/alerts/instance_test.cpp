#include "alerts/instance.hpp"

#include <doctest/doctest.h>

using namespace cairn::alerts;

namespace {

observation v(double x) {
  return {true, x};
}
const observation none{false, NAN};

timing t(millis for_ms = 0, millis keep = 0,
         no_data_policy nd = no_data_policy::ok) {
  return {for_ms, keep, nd, comparator::gt, 10};
}

} // namespace

TEST_SUITE("alerts.instance") {

TEST_CASE("without for: inactive -> firing -> resolved -> firing") {
  instance x;
  CHECK_FALSE(step(x, t(), v(5), 1000));
  CHECK(x.state == alert_state::inactive);
  auto tr = step(x, t(), v(11), 2000);
  REQUIRE(tr);
  CHECK(tr->from == alert_state::inactive);
  CHECK(tr->to == alert_state::firing);
  CHECK(x.fired_at == 2000);
  CHECK(x.episode == 1);
  CHECK_FALSE(step(x, t(), v(12), 3000));
  tr = step(x, t(), v(1), 4000);
  REQUIRE(tr);
  CHECK(tr->to == alert_state::resolved);
  CHECK(x.resolved_at == 4000);
  CHECK_FALSE(step(x, t(), v(1), 5000));
  CHECK(x.state == alert_state::resolved);
  tr = step(x, t(), v(20), 6000);
  REQUIRE(tr);
  CHECK(tr->from == alert_state::resolved);
  CHECK(tr->to == alert_state::firing);
  CHECK(x.episode == 2);
}

TEST_CASE("for: pending until the condition held for the duration") {
  instance x;
  auto tr = step(x, t(2000), v(11), 1000);
  REQUIRE(tr);
  CHECK(tr->to == alert_state::pending);
  CHECK(x.active_since == 1000);
  CHECK_FALSE(step(x, t(2000), v(11), 2000));
  CHECK(x.state == alert_state::pending);
  tr = step(x, t(2000), v(11), 3000);
  REQUIRE(tr);
  CHECK(tr->from == alert_state::pending);
  CHECK(tr->to == alert_state::firing);
}

TEST_CASE("for: a false evaluation while pending goes back to inactive") {
  instance x;
  step(x, t(2000), v(11), 1000);
  auto tr = step(x, t(2000), v(9), 2000);
  REQUIRE(tr);
  CHECK(tr->from == alert_state::pending);
  CHECK(tr->to == alert_state::inactive);
  // The next episode starts its `for` anew.
  step(x, t(2000), v(11), 3000);
  CHECK(x.active_since == 3000);
  CHECK_FALSE(step(x, t(2000), v(11), 4000));
  CHECK(step(x, t(2000), v(11), 5000)->to == alert_state::firing);
}

TEST_CASE("keep_firing_for: a short dip does not resolve") {
  instance x;
  step(x, t(0, 3000), v(11), 1000);
  CHECK_FALSE(step(x, t(0, 3000), v(1), 2000));
  CHECK_FALSE(step(x, t(0, 3000), v(1), 3000));
  CHECK(x.state == alert_state::firing);
  CHECK_FALSE(step(x, t(0, 3000), v(11), 4000)); // back: timer restarts
  CHECK_FALSE(step(x, t(0, 3000), v(1), 6000));
  auto tr = step(x, t(0, 3000), v(1), 7000);
  REQUIRE(tr);
  CHECK(tr->to == alert_state::resolved);
  CHECK(x.episode == 1);
}

TEST_CASE("flapping: one episode with keep_firing_for, several without") {
  instance a, b;
  int fired_a = 0, fired_b = 0;
  for (millis s = 0; s < 20; ++s) {
    auto o = v(s % 2 == 0 ? 11 : 1);
    if (auto tr = step(a, t(0, 5000), o, s * 1000); tr && tr->to == alert_state::firing)
      ++fired_a;
    if (auto tr = step(b, t(), o, s * 1000); tr && tr->to == alert_state::firing)
      ++fired_b;
  }
  CHECK(fired_a == 1);
  CHECK(fired_b == 10);
  CHECK(a.state == alert_state::firing);
}

TEST_CASE("no data: ok resolves, alerting fires, keep holds") {
  instance x;
  step(x, t(), v(11), 1000);
  REQUIRE(x.state == alert_state::firing);
  auto y = x, z = x;
  CHECK(step(x, t(0, 0, no_data_policy::ok), none, 2000)->to
        == alert_state::resolved);
  CHECK_FALSE(step(y, t(0, 0, no_data_policy::alerting), none, 2000));
  CHECK(y.state == alert_state::firing);
  CHECK_FALSE(step(z, t(0, 0, no_data_policy::keep), none, 2000));
  CHECK(z.state == alert_state::firing);
  instance w;
  CHECK(step(w, t(1000, 0, no_data_policy::alerting), none, 1000)->to
        == alert_state::pending);
  CHECK(step(w, t(1000, 0, no_data_policy::alerting), none, 2000)->to
        == alert_state::firing);
  instance k;
  CHECK_FALSE(step(k, t(0, 0, no_data_policy::keep), none, 1000));
  CHECK(k.state == alert_state::inactive);
  CHECK(std::isnan(k.value));
}

TEST_CASE("state names round-trip") {
  for (auto s : {alert_state::inactive, alert_state::pending,
                 alert_state::firing, alert_state::resolved})
    CHECK(state_from_string(to_string(s)) == s);
  CHECK_FALSE(state_from_string("bogus"));
}

}
