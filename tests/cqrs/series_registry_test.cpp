#include "cqrs/series_registry.hpp"

#include "cqrs/series_key.hpp"
#include "cqrs/series_store.hpp"

#include <doctest/doctest.h>

using namespace cairn::cqrs;

TEST_SUITE("cqrs.series_registry") {

TEST_CASE("the guard admits existing series and new ones below the limit") {
  series_registry reg{3};
  CHECK(reg.admits(1));
  reg.insert(1);
  reg.insert(2);
  reg.insert(2);  // idempotent
  CHECK(reg.size() == 2);
  CHECK(reg.admits(3));
  reg.insert(3);
  CHECK(reg.size() == 3);
  CHECK(reg.admits(1));        // existing: still fine
  CHECK_FALSE(reg.admits(4));  // would be the fourth
  reg.erase(2);
  CHECK(reg.admits(4));
  series_registry unlimited{0};
  for (uint64_t h = 0; h < 10; ++h)
    unlimited.insert(h);
  CHECK(unlimited.admits(99));
}

TEST_CASE("the log line is due at most once per period") {
  series_registry reg{1};
  CHECK(reg.should_log(1000));
  CHECK_FALSE(reg.should_log(1001));
  CHECK_FALSE(reg.should_log(60'999));
  CHECK(reg.should_log(61'000));
}

TEST_CASE("a store tells the registry about created and evicted series") {
  constexpr millis now = 1'764'190'000'000;
  series_store s{tier_set::parse({"1s:15m", "1m:2d", "1h:90d"}),
                 ddsketch_mapping{0.01}};
  series_registry reg{2};
  s.on_series([&](std::string_view, uint64_t h, bool added) {
    if (added)
      reg.insert(h);
    else
      reg.erase(h);
  });
  auto a = make_series_key("m", {{"k", "a"}});
  auto b = make_series_key("m", {{"k", "b"}});
  auto c = make_series_key("m", {{"k", "c"}});
  s.apply(a, now, 1);
  s.apply(a, now, 2);
  s.apply(b, now - 3 * 86'400'000LL, 1);
  CHECK(reg.size() == 2);
  CHECK(reg.admits(series_hash(a)));
  CHECK_FALSE(reg.admits(series_hash(c)));
  // b lives only in the 1h tier (90d): evicted after that.
  (void) s.evict(now + 88 * 86'400'000LL);
  CHECK(reg.size() == 1);
  CHECK(reg.admits(series_hash(c)));
  std::vector<std::string> keys;
  s.for_each_key([&](std::string_view k) { keys.emplace_back(k); });
  REQUIRE(keys.size() == 1);
  CHECK(keys[0] == a);
}

}
