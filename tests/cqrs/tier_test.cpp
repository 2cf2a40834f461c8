#include "cqrs/tier.hpp"

#include <doctest/doctest.h>

#include <stdexcept>

using namespace cairn::cqrs;

TEST_SUITE("cqrs.tier") {

TEST_CASE("parse_tier") {
  auto t = parse_tier("1s:15m");
  REQUIRE(t);
  CHECK(t->resolution == 1000);
  CHECK(t->retention == 900'000);
  CHECK(t->name == "1s");
  CHECK(parse_tier("60000:2d")->name == "1m");
  CHECK(parse_tier("1h:1h"));
  for (auto text : {"", "1s", "1s:", ":15m", "0s:15m", "1m:30s", "1s:15m:1h",
                    "1x:15m", "-1s:15m", "1s;15m"})
    CHECK_MESSAGE(!parse_tier(text), text);
}

TEST_CASE("tier_set sorts finest first and validates") {
  auto ts = tier_set::parse({"1h:90d", "1s:15m", "1m:2d"});
  REQUIRE(ts.size() == 3);
  CHECK(ts[0].name == "1s");
  CHECK(ts[1].name == "1m");
  CHECK(ts[2].name == "1h");
  CHECK(ts.max_retention() == 90LL * 86'400'000);
  CHECK_THROWS_AS(tier_set::parse({}), std::invalid_argument);
  CHECK_THROWS_AS(tier_set::parse({"1s:15m", "1000:1h"}), std::invalid_argument);
  CHECK_THROWS_AS(tier_set::parse({"2s:15m", "3s:1h"}), std::invalid_argument);
  CHECK_THROWS_AS(tier_set::parse({"1s:15m", "bogus"}), std::invalid_argument);
  CHECK_THROWS_WITH_AS(tier_set::parse({"x"}), doctest::Contains("\"x\""),
                       std::invalid_argument);
}

TEST_CASE("tier_set::select picks the finest tier covering from") {
  auto ts = tier_set::parse({"1s:15m", "1m:2d", "1h:90d"});
  millis now = 1'764'190'000'000;
  CHECK(ts.select(now - 60'000, now) == 0);
  CHECK(ts.select(now - 900'000, now) == 0);       // exactly covered
  CHECK(ts.select(now - 900'001, now) == 1);
  CHECK(ts.select(now - 86'400'000, now) == 1);
  CHECK(ts.select(now - 3 * 86'400'000LL, now) == 2);
  CHECK(ts.select(now - 365 * 86'400'000LL, now) == 2); // none: coarsest
  CHECK(ts.select(now + 1000, now) == 0);
}

}
