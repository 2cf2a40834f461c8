// The query planner (plan_segments): which tiers read which parts of a range,
// and that the planned answer equals the one of the tier the range alone
// selects, on random data.
#include "cqrs/query.hpp"
#include "cqrs/series_store.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <random>

using namespace cairn::cqrs;
using nlohmann::json;

namespace {

constexpr millis now = 1'764'190'012'345; // not aligned to any resolution
constexpr millis sec = 1000, minute = 60 * sec, hour = 60 * minute;

tier_set default_tiers() {
  return tier_set::parse({"1s:15m", "1m:2d", "1h:90d"});
}

query_spec parse(const tier_set& tiers, const json& req) {
  auto r = parse_query(req, now, tiers);
  REQUIRE(std::holds_alternative<query_spec>(r));
  return std::get<query_spec>(std::move(r));
}

/// Stores of `partitions` partitions with random events: a few series of
/// one metric over the last `span` (and a few events up to 5 minutes ahead).
/// Integer values keep every sum exact, so answers compare as text.
std::vector<series_store> random_stores(const tier_set& tiers, uint64_t seed,
                                        millis span, size_t events,
                                        uint32_t partitions) {
  std::vector<series_store> stores;
  for (uint32_t p = 0; p < partitions; ++p)
    stores.emplace_back(tiers, ddsketch_mapping{0.01});
  std::mt19937_64 rng{seed};
  std::uniform_int_distribution<int> pick{0, 99};
  std::uniform_int_distribution<millis> past{now - span, now - 1};
  std::uniform_int_distribution<millis> ahead{now, now + 5 * minute};
  std::uniform_int_distribution<int> value{-50, 2000};
  for (size_t i = 0; i < events; ++i) {
    std::vector<tag> tags{{"host", "h" + std::to_string(pick(rng) % 12)}};
    if (pick(rng) < 80)
      tags.emplace_back("region", pick(rng) < 50 ? "eu" : "us");
    auto key = make_series_key("m", tags);
    auto ts = pick(rng) < 2 ? ahead(rng) : past(rng);
    auto v = pick(rng) < 5 ? 0 : value(rng);
    stores[series_hash(key) % partitions].apply(key, ts, v);
  }
  return stores;
}

query_partial gather(const std::vector<series_store>& stores,
                     const query_spec& q) {
  query_partial merged;
  for (auto& s : stores) {
    query_partial part;
    s.query(q, part);
    merged.merge(std::move(part));
  }
  return merged;
}

std::string answer(const std::vector<series_store>& stores,
                   const query_spec& q, const tier_set& tiers) {
  auto merged = gather(stores, q);
  REQUIRE(!merged.collided);
  std::string text;
  render_query_text(q, merged, tiers, stores.front().mapping(), {}, nullptr,
                    text);
  return text;
}

size_t final_groups(const query_partial& p) {
  return static_cast<size_t>(std::count_if(
    p.groups.begin(), p.groups.end(), [](auto& g) { return g.second.final; }));
}

} // namespace

TEST_SUITE("cqrs.query_plan") {

TEST_CASE("the coarsest tier dividing the step reads the aligned middle") {
  auto tiers = default_tiers();
  // -5m at 1m steps: the 1m tier serves; the 1s tier reads the partial
  // minutes at both ends.
  auto q = parse(tiers, {{"metric", "m"}, {"from", "-5m"}, {"step", "1m"}});
  CHECK(q.tier == 1);
  auto from = now - 5 * minute; // 1764189712345
  auto a = from - from % sec + sec;
  auto x = from - from % minute + minute;
  auto y = now - now % minute;
  auto c = now - now % sec + sec;
  CHECK(q.segments == std::vector<query_segment>{{0, a, x}, {1, x, y}, {0, y, c}});
  // The default step (1s) and 10s steps: only the 1s tier divides them.
  q = parse(tiers, {{"metric", "m"}, {"from", "-5m"}});
  CHECK(q.tier == 0);
  CHECK(q.segments == std::vector<query_segment>{{0, now - 5 * minute, now}});
  q = parse(tiers, {{"metric", "m"}, {"from", "-5m"}, {"step", "10s"}});
  CHECK(q.tier == 0);
  // A range inside one minute: the plan names the 1m tier (it could serve)
  // but every bucket comes from the 1s tier.
  q = parse(tiers, {{"metric", "m"}, {"from", now - 20 * sec}, {"step", "1m"}});
  CHECK(q.tier == 1);
  CHECK(q.segments.size() == 1);
  CHECK(q.segments[0].tier == 0);
  // Two days at 1h steps from the 1m tier: the 1h tier (90d) serves.
  q = parse(tiers, {{"metric", "m"}, {"from", "-2d"}, {"step", "1h"}});
  CHECK(q.tier == 2);
  REQUIRE(q.segments.size() == 3);
  CHECK(q.segments[0].tier == 1);
  CHECK(q.segments[1].tier == 2);
  CHECK(q.segments[2].tier == 1);
  // Aligned bounds: one segment of the coarse tier, nothing from finer ones.
  auto h0 = now - now % hour;
  q = parse(tiers, {{"metric", "m"}, {"from", h0 - 10 * minute}, {"to", h0},
                    {"step", "5m"}});
  CHECK(q.tier == 1);
  CHECK(q.segments == std::vector<query_segment>{{1, h0 - 10 * minute, h0}});
  // Three tiers in one plan: 1s edges, 1m edges, the 1h middle.
  tier_set long_fine = tier_set::parse({"1s:1d", "1m:2d", "1h:90d"});
  q = parse(long_fine, {{"metric", "m"}, {"from", "-5h"}, {"step", "1h"}});
  CHECK(q.tier == 2);
  std::vector<size_t> order;
  for (auto& s : q.segments)
    order.push_back(s.tier);
  CHECK(order == std::vector<size_t>{0, 1, 2, 1, 0});
  for (size_t i = 1; i < q.segments.size(); ++i)
    CHECK(q.segments[i - 1].to == q.segments[i].from);
}

TEST_CASE("a tier whose retention does not cover from is not used") {
  // 1m keeps only 10 minutes here: a 30-minute query stays on the 1s tier.
  auto tiers = tier_set::parse({"1s:1h", "1m:10m", "1h:90d"});
  auto q = parse(tiers, {{"metric", "m"}, {"from", "-30m"}, {"step", "1m"}});
  CHECK(q.tier == 0);
  CHECK(q.segments == std::vector<query_segment>{{0, now - 30 * minute, now}});
  q = parse(tiers, {{"metric", "m"}, {"from", "-5m"}, {"step", "1m"}});
  CHECK(q.tier == 1);
  // Step validation still follows the tier the range selects.
  auto r = parse_query(json{{"metric", "m"}, {"from", "-2h"}, {"step", "1s"}},
                       now, tiers);
  CHECK(std::holds_alternative<problem>(r));
  // Extreme bounds plan without overflow.
  q = parse(tiers, {{"metric", "m"},
                    {"from", now - 5 * minute},
                    {"to", std::numeric_limits<millis>::max()},
                    {"step", std::numeric_limits<millis>::max() / 1000 * 1000}});
  CHECK(q.segments.size() == 1);
}

TEST_CASE("planned answers equal the answers of the fine tier") {
  // Random ranges, steps, aggs and groupings over random data: the planned
  // query and the same query forced onto the tier the range selects give
  // byte-identical replies (apart from the tier name).
  struct setup {
    tier_set tiers;
    millis span;
  };
  std::vector<setup> setups{{default_tiers(), 2 * hour},
                            {tier_set::parse({"1s:1h", "10s:2h", "1m:1d"}), 3 * hour},
                            {tier_set::parse({"1s:1d", "1m:2d", "1h:90d"}), 30 * hour}};
  std::mt19937_64 rng{7};
  size_t compared = 0, coarse = 0, split = 0, nonempty = 0;
  for (size_t si = 0; si < setups.size(); ++si) {
    auto& [tiers, span] = setups[si];
    auto stores = random_stores(tiers, 11 + si, span, 30000, 4);
    const char* aggsets[][5] = {{"count", "sum", "min", "max", "avg"},
                                {"last", "rate", "p50", "p99", "p0"},
                                {"p99.9", "count", "rate", "sum", "p100"}};
    const char* steps[] = {"1s", "2s", "10s", "30s", "1m", "2m", "5m", "15m",
                           "1h", "3h"};
    std::uniform_int_distribution<millis> back{0, span};
    std::uniform_int_distribution<millis> len{1, span};
    std::uniform_int_distribution<int> pick{0, 1 << 20};
    for (int i = 0; i < 300; ++i) {
      auto from = now - back(rng);
      // Aligned bounds sometimes, ragged ones mostly.
      if (pick(rng) % 4 == 0)
        from -= from % minute;
      auto to = from + len(rng);
      json req{{"metric", "m"}, {"from", from}, {"to", to},
               {"step", steps[pick(rng) % std::size(steps)]}};
      req["aggs"] = json::array();
      for (auto* a : aggsets[pick(rng) % 3])
        req["aggs"].push_back(a);
      // Steps through an unaligned instant sometimes (a multiple of the
      // range tier's resolution).
      if (pick(rng) % 3 == 0)
        req["align"] = tiers[tiers.select(from, now)].resolution * (pick(rng) % 50);
      switch (pick(rng) % 3) {
        case 0: req["group_by"] = {"host"}; break;
        case 1: req["group_by"] = {"region", "host"}; break;
        default: break;
      }
      auto r = parse_query(req, now, tiers);
      if (std::holds_alternative<problem>(r))
        continue; // step not a multiple of the selected tier, too many points
      auto planned = std::get<query_spec>(std::move(r));
      auto fine = planned;
      fine.tier = tiers.select(from, now);
      fine.segments.clear();
      auto expected = answer(stores, fine, tiers);
      auto got = answer(stores, planned, tiers);
      // Only the serving tier's name may differ.
      auto name_of = [&](size_t t) { return "\"tier\":\"" + tiers[t].name + "\""; };
      auto pos = got.find(name_of(planned.tier));
      REQUIRE(pos != std::string::npos);
      got.replace(pos, name_of(planned.tier).size(), name_of(fine.tier));
      INFO(req.dump());
      CHECK(got == expected);
      ++compared;
      coarse += planned.tier != fine.tier;
      split += planned.segments.size() > 1;
      nonempty += expected.find("\"points\"") != std::string::npos;
    }
  }
  // The comparison must have exercised the planner, on real answers.
  CHECK(compared > 400);
  CHECK(coarse > 150);
  CHECK(split > 100);
  CHECK(nonempty > 300);
  MESSAGE("compared " << compared << " answers, " << coarse << " on a coarser tier, "
                      << split << " split plans");
}

TEST_CASE("the last coarse window answers from its coarse bucket as from fine ones") {
  // read_segments: the trailing edge [y, c) of a range (fine buckets of the
  // serving tier's last window) is read from the coarse bucket at y when its
  // latest event is before c. Series whose data ends before `to` take that
  // path; series with an event later in the window, or in the fine bucket
  // `to` falls in (still part of the range), must answer the same. Both
  // forms, open and sealed buckets, several ends.
  auto tiers = default_tiers();
  std::mt19937_64 rng{41};
  std::uniform_int_distribution<int> value{-50, 2000};
  for (int sealed = 0; sealed < 2; ++sealed) {
    std::vector<series_store> stores;
    for (int p = 0; p < 3; ++p)
      stores.emplace_back(tiers, ddsketch_mapping{0.01});
    auto put = [&](int host, millis ts) {
      auto key = make_series_key("m", {{"host", "h" + std::to_string(host)}});
      stores[series_hash(key) % stores.size()].apply(key, ts, value(rng));
    };
    for (millis t = now - 20 * minute; t < now; t += sec) {
      if (sealed)
        for (auto& st : stores)
          st.set_clock(t);
      for (int h = 0; h < 30; ++h)
        if (h % 7 != 3 || t < now - 3 * minute)  // some series end early
          put(h, t + static_cast<millis>(rng() % sec) - (t + sec > now ? sec : 0));
    }
    // In now's fine bucket, after now (still in a range ending at now), and
    // later in now's minute (beyond it).
    auto in_bucket = now - now % sec + 900;
    for (int h = 0; h < 30; h += 5)
      put(h, in_bucket);
    for (int h = 1; h < 30; h += 5)
      put(h, now + 20 * sec);
    if (sealed)
      for (auto& st : stores) {
        st.seal(now + 30 * sec);
        st.seal(now + 30 * sec);
      }
    size_t compared = 0;
    for (millis to : {now, now - 20 * sec, in_bucket + 1, now - now % minute + 5,
                      now - 3 * minute - 100}) {
      for (auto* step : {"1m", "2m"}) {
        json req{{"metric", "m"}, {"from", to - 5 * minute - 1234}, {"to", to},
                 {"step", step}, {"group_by", {"host"}}};
        req["aggs"] = {"count", "sum", "min", "max", "last", "p50", "p99"};
        auto planned = parse(tiers, req);
        REQUIRE(planned.segments.size() > 1);
        auto fine = planned;
        fine.tier = tiers.select(planned.from, now);
        fine.segments.clear();
        auto expected = answer(stores, fine, tiers);
        auto name_of = [&](size_t k) { return "\"tier\":\"" + tiers[k].name + "\""; };
        for (int finals = 0; finals < 2; ++finals) {
          planned.finals = finals != 0;
          auto got = answer(stores, planned, tiers);
          auto pos = got.find(name_of(planned.tier));
          REQUIRE(pos != std::string::npos);
          got.replace(pos, name_of(planned.tier).size(), name_of(fine.tier));
          INFO(req.dump() << " finals " << finals << " sealed " << sealed);
          CHECK(got == expected);
          ++compared;
        }
        CHECK(expected.find("\"h29\"") != std::string::npos);
      }
    }
    CHECK(compared == 20);
  }
}

TEST_CASE("groups finalised in their partition answer as with sketches") {
  // The coordinator's path (query_spec::finals): partitions finalise the
  // groups that are one series whose tags are all group_by or where keys;
  // a merge that meets such a group twice says so (collided) and the
  // coordinator asks again with sketches. Both renderings must equal the
  // sketch-only answer byte for byte, on open and on sealed buckets.
  auto tiers = default_tiers();
  std::mt19937_64 rng{23};
  size_t compared = 0, finalised = 0, collided = 0, clean = 0;
  for (int sealed = 0; sealed < 2; ++sealed) {
    auto stores = random_stores(tiers, 31 + sealed, 2 * hour, 30000, 4);
    if (sealed)
      for (auto& st : stores) { // the second pass seals what the first saw quiet
        st.seal(now);
        st.seal(now);
      }
    const char* aggsets[][4] = {{"count", "sum", "avg", "p99"},
                                {"last", "rate", "min", "max"},
                                {"p50", "p0", "p100", "p99.9"}};
    const char* steps[] = {"1s", "10s", "1m", "2m", "5m", "1h"};
    std::uniform_int_distribution<millis> back{0, 2 * hour};
    std::uniform_int_distribution<millis> len{1, 2 * hour};
    std::uniform_int_distribution<int> pick{0, 1 << 20};
    for (int i = 0; i < 200; ++i) {
      auto from = now - back(rng);
      if (pick(rng) % 4 == 0)
        from -= from % minute;
      json req{{"metric", "m"}, {"from", from}, {"to", from + len(rng)},
               {"step", steps[pick(rng) % std::size(steps)]}};
      req["aggs"] = json::array();
      for (auto* a : aggsets[pick(rng) % 3])
        req["aggs"].push_back(a);
      if (pick(rng) % 3 == 0)  // steps through an unaligned instant
        req["align"] = tiers[tiers.select(from, now)].resolution * (pick(rng) % 50);
      switch (pick(rng) % 5) {
        case 0: req["group_by"] = {"host"}; break;  // collides: mixed tag sets
        case 1: req["group_by"] = {"region", "host"}; break;  // all final
        case 2: // final through where
          req["group_by"] = {"host"};
          req["where"] = {{"region", "eu"}};
          break;
        case 3: req["group_by"] = {"host", "region", "dc"}; break;
        default: break;  // one group of every series: never final
      }
      auto r = parse_query(req, now, tiers);
      if (std::holds_alternative<problem>(r))
        continue;
      auto q = std::get<query_spec>(std::move(r));
      auto expected = answer(stores, q, tiers);
      json expected_json;
      render_query(q, gather(stores, q), tiers, stores.front().mapping(), {},
                   expected_json);
      auto fq = q;
      fq.finals = true;
      auto merged = gather(stores, fq);
      INFO(req.dump());
      if (merged.collided) {
        // Only a group whose series have different tag sets can collide.
        CHECK(req["group_by"] == json::array({"host"}));
        CHECK(!req.contains("where"));
        ++collided;
        merged = gather(stores, q);  // the coordinator's second round
      } else {
        ++clean;
        finalised += final_groups(merged) > 0;
        if (req["group_by"] == json::array({"region", "host"}) && expected.find("\"t\"") != std::string::npos)
          CHECK(final_groups(merged) == merged.groups.size());
      }
      std::string got;
      render_query_text(q, merged, tiers, stores.front().mapping(), {}, nullptr,
                        got);
      CHECK(got == expected);
      json got_json;
      render_query(q, merged, tiers, stores.front().mapping(), {}, got_json);
      CHECK(got_json == expected_json);
      ++compared;
    }
  }
  CHECK(compared > 250);
  CHECK(finalised > 100);
  CHECK(collided > 20);
  CHECK(clean > 200);
  MESSAGE("compared " << compared << " answers, " << finalised
                      << " with final groups, " << collided << " collided");
}

TEST_CASE("query_series equals the final group of its one series") {
  // The Prometheus API's inline reads (series_store::query_series) must give
  // exactly the points and values query() finalises for a group that is
  // that series alone: grouped by every tag key, every series is one.
  auto tiers = default_tiers();
  std::mt19937_64 rng{57};
  size_t compared = 0, points = 0;
  for (int sealed = 0; sealed < 2; ++sealed) {
    auto stores = random_stores(tiers, 71 + sealed, 2 * hour, 20000, 3);
    if (sealed)
      for (auto& st : stores) {
        st.seal(now);
        st.seal(now);
      }
    const char* aggsets[][3] = {{"last", "count", "sum"},
                                {"min", "max", "p99"},
                                {"avg", "rate", "p50"}};
    const char* steps[] = {"1s", "15s", "1m", "5m", "1h"};
    std::uniform_int_distribution<millis> back{0, 2 * hour};
    std::uniform_int_distribution<millis> len{1, 2 * hour};
    std::uniform_int_distribution<int> pick{0, 1 << 20};
    for (int i = 0; i < 120; ++i) {
      auto from = now - back(rng);
      json req{{"metric", "m"}, {"from", from}, {"to", from + len(rng)},
               {"step", steps[pick(rng) % std::size(steps)]},
               {"group_by", {"host", "region"}}};
      req["aggs"] = json::array();
      for (auto* a : aggsets[pick(rng) % 3])
        req["aggs"].push_back(a);
      if (pick(rng) % 2 == 0)
        req["align"] = tiers[tiers.select(from, now)].resolution * (pick(rng) % 50);
      auto r = parse_query(req, now, tiers);
      if (std::holds_alternative<problem>(r))
        continue;
      auto q = std::get<query_spec>(std::move(r));
      q.finals = true;
      INFO(req.dump());
      for (auto& st : stores) {
        query_partial part;
        st.query(q, part);
        REQUIRE(!part.collided);
        std::map<std::string, const query_group*> by_key;
        for (auto& [k, g] : part.groups) {
          REQUIRE(g.final);
          std::vector<tag> tags;
          for (size_t t = 0; t < q.group_by.size(); ++t)
            if (g.values[t])
              tags.emplace_back(q.group_by[t], *g.values[t]);
          by_key[make_series_key("m", tags)] = &g;
        }
        st.for_each_key([&](std::string_view key) {
          std::vector<final_point> finals;
          std::vector<double> values;
          auto found = st.query_series(key, q, finals, values);
          CHECK(found == series_store::series_read::found);
          auto it = by_key.find(std::string{key});
          if (it == by_key.end()) {
            CHECK(finals.empty());  // no bucket in range
            return;
          }
          CHECK(finals == it->second->finals);
          REQUIRE(values.size() == it->second->final_values.size());
          for (size_t v = 0; v < values.size(); ++v) {
            auto x = values[v], y = it->second->final_values[v];
            CHECK(((std::isnan(x) && std::isnan(y))
                   || std::memcmp(&x, &y, sizeof x) == 0));
          }
          points += finals.size();
          ++compared;
        });
      }
    }
    std::vector<final_point> none;
    std::vector<double> values;
    CHECK(stores[0].query_series(make_series_key("m", {{"host", "nope"}}),
                                 parse(tiers, {{"metric", "m"}}), none, values)
          == series_store::series_read::missing);
    CHECK(none.empty());
  }
  CHECK(compared > 1000);
  CHECK(points > 10000);
  MESSAGE("compared " << compared << " series, " << points << " points");
}

TEST_CASE("make_query equals parse_query") {
  // The typed builder of the inline reads must give parse_query's spec, or
  // its error message, for the same fields.
  auto tiers = default_tiers();
  std::mt19937_64 rng{91};
  std::uniform_int_distribution<millis> back{-5 * minute, 3 * 86400000LL};
  std::uniform_int_distribution<millis> len{-minute, 2 * hour};
  std::uniform_int_distribution<int> pick{0, 1 << 20};
  const millis steps[] = {0, -1000, 1000, 1500, 15000, 60000, 7 * minute, hour, 1};
  const char* aggsets[][3] = {{"last", "", ""}, {"count", "sum", "p99"},
                              {"p50", "nope", ""}, {"", "", ""}};
  size_t specs = 0, errors = 0;
  for (int i = 0; i < 3000; ++i) {
    auto from = now - back(rng);
    auto to = from + len(rng);
    auto step = steps[pick(rng) % std::size(steps)];
    std::optional<millis> align;
    if (pick(rng) % 2 == 0)
      align = 1000 * (pick(rng) % 90) - (pick(rng) % 7 == 0 ? 500 : 0);
    std::vector<std::string> aggs;
    for (auto* a : aggsets[pick(rng) % std::size(aggsets)])
      if (*a)
        aggs.emplace_back(a);
    std::string metric = pick(rng) % 20 == 0 ? "bad metric!" : "m";
    json req{{"op", "query"}, {"metric", metric}, {"from", from}, {"to", to},
             {"step", step}, {"aggs", aggs}};
    if (align)
      req["align"] = *align;
    INFO(req.dump());
    auto want = parse_query(req, now, tiers);
    auto got = make_query(metric, from, to, step, align, aggs, now, tiers);
    REQUIRE(want.index() == got.index());
    if (auto* p = std::get_if<problem>(&want)) {
      CHECK(std::get<problem>(got).code == p->code);
      CHECK(std::get<problem>(got).message == p->message);
      ++errors;
      continue;
    }
    auto& w = std::get<query_spec>(want);
    auto& g = std::get<query_spec>(got);
    CHECK(g.metric == w.metric);
    CHECK(g.from == w.from);
    CHECK(g.to == w.to);
    CHECK(g.step == w.step);
    CHECK(g.align == w.align);
    CHECK(g.tier == w.tier);
    CHECK(g.segments == w.segments);
    REQUIRE(g.aggs.size() == w.aggs.size());
    for (size_t a = 0; a < g.aggs.size(); ++a) {
      CHECK(g.aggs[a].name == w.aggs[a].name);
      CHECK(g.aggs[a].kind == w.aggs[a].kind);
      CHECK(g.aggs[a].quantile == w.aggs[a].quantile);
    }
    CHECK(g.where.empty());
    CHECK(g.group_by.empty());
    ++specs;
  }
  CHECK(specs > 150);  // most random field sets are invalid: 184 valid
  CHECK(errors > 1000);
}

TEST_CASE("a group in final form merges with nothing") {
  query_group final_group;
  final_group.values = {std::string{"h1"}};
  final_group.final = true;
  final_group.finals = {{60000, 3}};
  final_group.final_values = {4.5};
  auto key = encode_group_key(final_group.values);
  auto other_key = encode_group_key({std::string{"h2"}});
  query_partial a, b, c;
  a.groups[key] = final_group;
  b.groups[other_key].points[60000].count = 2;
  a.merge(std::move(b));  // disjoint groups: fine
  CHECK(!a.collided);
  CHECK(a.groups.size() == 2);
  c.groups[key].points[0].count = 1;  // the same group in sketch form
  a.merge(std::move(c));
  CHECK(a.collided);
  query_partial d, e;
  e.collided = true;  // a collision found below propagates
  d.merge(std::move(e));
  CHECK(d.collided);
  CHECK(!e.collided);
}

TEST_CASE("aligned steps fold the buckets from their boundary on") {
  // A point t of a query with `align` holds the buckets starting in
  // [t, t + step), t = align + k * step: checked against the 1 s points.
  auto tiers = default_tiers();
  auto stores = random_stores(tiers, 5, 10 * minute, 20000, 3);
  for (millis align : {millis{0}, 7 * sec, 14 * sec, 15 * sec + 2 * sec, -3 * sec}) {
    CAPTURE(align);
    auto from = now - 9 * minute;
    json req{{"metric", "m"}, {"from", from}, {"to", now}, {"step", "15s"},
             {"aggs", {"count", "sum", "min", "max", "last"}}, {"group_by", {"host"}},
             {"align", align}};
    auto q = parse(tiers, req);
    CHECK(q.align == ((align % (15 * sec)) + 15 * sec) % (15 * sec));
    auto fine_req = req;
    fine_req["step"] = "1s";
    fine_req.erase("align");
    auto got = json::parse(answer(stores, q, tiers));
    auto fine = json::parse(answer(stores, parse(tiers, fine_req), tiers));
    REQUIRE(got["series"].size() == fine["series"].size());
    size_t points = 0;
    for (size_t i = 0; i < got["series"].size(); ++i) {
      std::map<millis, json> want;
      for (auto& p : fine["series"][i]["points"]) {
        millis t = p["t"];
        millis k = t - q.align;
        k -= ((k % q.step) + q.step) % q.step;
        auto& w = want[k + q.align];
        if (w.is_null()) {
          w = p;
          w["t"] = k + q.align;
          continue;
        }
        w["count"] = w["count"].get<int64_t>() + p["count"].get<int64_t>();
        w["sum"] = w["sum"].get<double>() + p["sum"].get<double>();
        w["min"] = std::min(w["min"].get<double>(), p["min"].get<double>());
        w["max"] = std::max(w["max"].get<double>(), p["max"].get<double>());
        w["last"] = p["last"];
      }
      auto& pts = got["series"][i]["points"];
      REQUIRE(pts.size() == want.size());
      for (auto& p : pts) {
        auto& w = want[p["t"].get<millis>()];
        CHECK(p["count"] == w["count"]);
        CHECK(p["sum"].get<double>() == w["sum"].get<double>());
        CHECK(p["min"].get<double>() == w["min"].get<double>());
        CHECK(p["max"].get<double>() == w["max"].get<double>());
        CHECK(p["last"] == w["last"]);
        ++points;
      }
    }
    CHECK(points > 50);
  }
  // Not a multiple of the range tier's resolution, not an integer.
  for (auto bad : {json(1500), json("7s"), json(1.5)}) {
    json req{{"metric", "m"}, {"from", now - minute}, {"to", now}, {"step", "15s"},
             {"align", bad}};
    auto r = parse_query(req, now, tiers);
    REQUIRE(std::holds_alternative<problem>(r));
    CHECK(std::get<problem>(r).message.find("\"align\"") != std::string::npos);
  }
}

} // TEST_SUITE
