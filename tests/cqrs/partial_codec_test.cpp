#include "cqrs/partial_codec.hpp"

#include <doctest/doctest.h>

using namespace cairn::cqrs;

TEST_SUITE("cqrs.partial_codec") {
  TEST_CASE("query partials round-trip exactly, sketches included") {
    ddsketch_mapping m{0.01};
    query_partial p;
    auto& g = p.groups[encode_group_key({std::string{"eu"}, std::nullopt})];
    g.values = {std::string{"eu"}, std::nullopt};
    for (int i = 0; i < 100; ++i)
      g.points[1000 * (i % 7)].add(1000 * i, i * 1.5 - 20, m);
    auto& h = p.groups[encode_group_key({std::string{""}, std::string{"x"}})];
    h.values = {std::string{""}, std::string{"x"}};
    h.points[0].add(5, 0.0, m);
    std::string bytes;
    encode_partial(p, bytes);
    query_partial q;
    REQUIRE(decode_partial(bytes, q));
    REQUIRE(q.groups.size() == 2);
    for (auto& [k, grp] : p.groups) {
      REQUIRE(q.groups.count(k) == 1);
      CHECK(q.groups[k].values == grp.values);
      CHECK(q.groups[k].points == grp.points);
    }
    // Truncated input is rejected, never read past.
    for (size_t n = 0; n < bytes.size(); ++n) {
      query_partial r;
      CHECK_FALSE(decode_partial(std::string_view{bytes}.substr(0, n), r));
    }
  }

  TEST_CASE("topk, series and metrics partials round-trip") {
    ddsketch_mapping m{0.01};
    topk_partial t;
    t.values["/a"].add(1, 2.0, m);
    t.values["/b"].add(2, -3.0, m);
    std::string bytes;
    encode_partial(t, bytes);
    topk_partial t2;
    REQUIRE(decode_partial(bytes, t2));
    CHECK(t2.values == t.values);

    series_partial s;
    s.keys = {"m", "m\x1f" "a=b"};
    bytes.clear();
    encode_partial(s, bytes);
    series_partial s2;
    REQUIRE(decode_partial(bytes, s2));
    CHECK(s2.keys == s.keys);

    metrics_partial mp;
    mp.metrics = {{"a", 3}, {"b", 1}};
    bytes.clear();
    encode_partial(mp, bytes);
    metrics_partial mp2;
    REQUIRE(decode_partial(bytes, mp2));
    CHECK(mp2.metrics == mp.metrics);
  }
}
