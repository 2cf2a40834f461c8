#include "cqrs/series_store.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

using namespace cairn::cqrs;

namespace {

constexpr millis now = 1'764'190'000'000;

tier_set test_tiers() { return tier_set::parse({"1s:15m", "1m:2d", "1h:90d"}); }

struct event {
  std::string metric;
  std::vector<tag> tags;
  millis ts;
  double value;
};

/// Random events over a few metrics and tag combinations, some tags missing.
std::vector<event> random_events(size_t n, uint64_t seed, millis span) {
  std::mt19937_64 rng{seed};
  std::uniform_int_distribution<int> pick{0, 99};
  std::uniform_int_distribution<millis> when{now - span, now - 1};
  std::lognormal_distribution<double> value{2, 1};
  const char* metrics[] = {"http.latency", "db.query", "cpu"};
  const char* regions[] = {"eu", "us", "ap"};
  const char* hosts[] = {"h1", "h2", "h3", "h4"};
  std::vector<event> out;
  for (size_t i = 0; i < n; ++i) {
    event e;
    e.metric = metrics[pick(rng) % 3];
    if (pick(rng) < 85)
      e.tags.emplace_back("region", regions[pick(rng) % 3]);
    e.tags.emplace_back("host", hosts[pick(rng) % 4]);
    if (pick(rng) < 30)
      e.tags.emplace_back("path", "/p" + std::to_string(pick(rng) % 5));
    e.ts = when(rng);
    e.value = pick(rng) < 10 ? -value(rng) : (pick(rng) < 5 ? 0 : value(rng));
    out.push_back(std::move(e));
  }
  return out;
}

const std::string* find(const std::vector<tag>& tags, const std::string& k) {
  for (auto& [key, v] : tags)
    if (key == k)
      return &v;
  return nullptr;
}

bool matches(const event& e, const std::string& metric,
             const std::vector<tag>& where) {
  if (e.metric != metric)
    return false;
  for (auto& [k, v] : where) {
    auto* got = find(e.tags, k);
    if (!got || *got != v)
      return false;
  }
  return true;
}

/// Brute-force reference for one point.
struct ref_point {
  uint64_t count = 0;
  double sum = 0, min = INFINITY, max = -INFINITY;
  millis last_ts = std::numeric_limits<millis>::min();
  double last = 0;
  std::vector<double> values;
};

/// Applies events to `partitions` stores as the cluster would.
std::vector<series_store> build(const std::vector<event>& events,
                                uint32_t partitions) {
  std::vector<series_store> stores;
  for (uint32_t p = 0; p < partitions; ++p)
    stores.emplace_back(test_tiers(), ddsketch_mapping{0.01});
  event_batch batch;
  for (auto& e : events) {
    auto key = make_series_key(e.metric, e.tags);
    batch.add(key, series_hash(key), e.ts, e.value);
  }
  std::vector<event_batch> parts;
  split_by_partition(batch, partitions, parts);
  for (uint32_t p = 0; p < partitions; ++p)
    stores[p].apply(parts[p]);
  return stores;
}

void check_query(const std::vector<event>& events,
                 const std::vector<series_store>& stores, const query_spec& q) {
  auto tiers = test_tiers();
  auto res = tiers[q.tier].resolution;
  std::map<std::string, std::map<millis, ref_point>> expected;
  for (auto& e : events) {
    if (!matches(e, q.metric, q.where))
      continue;
    auto start = align_down(e.ts, res);
    if (start < q.from || start >= q.to)
      continue;
    std::vector<std::optional<std::string>> values;
    for (auto& g : q.group_by) {
      auto* v = find(e.tags, g);
      values.push_back(v ? std::optional<std::string>{*v} : std::nullopt);
    }
    auto& p = expected[encode_group_key(values)][align_down(start, q.step)];
    ++p.count;
    p.sum += e.value;
    p.min = std::min(p.min, e.value);
    p.max = std::max(p.max, e.value);
    if (e.ts >= p.last_ts) {
      p.last_ts = e.ts;
      p.last = e.value;
    }
    p.values.push_back(e.value);
  }
  query_partial merged;
  for (auto& s : stores) {
    query_partial part;
    s.query(q, part);
    merged.merge(std::move(part));
  }
  REQUIRE(merged.groups.size() == expected.size());
  ddsketch_mapping m{0.01};
  for (auto& [key, points] : expected) {
    auto it = merged.groups.find(key);
    REQUIRE(it != merged.groups.end());
    REQUIRE(it->second.points.size() == points.size());
    for (auto& [t, ref] : points) {
      auto pit = it->second.points.find(t);
      REQUIRE(pit != it->second.points.end());
      auto& b = pit->second;
      CHECK(b.count == ref.count);
      CHECK(b.sum == doctest::Approx(ref.sum));
      CHECK(b.min == ref.min);
      CHECK(b.max == ref.max);
      CHECK(b.last_ts == ref.last_ts);
      std::sort(ref.values.begin(), ref.values.end());
      for (double qq : {0.0, 0.5, 0.9, 0.99, 1.0}) {
        agg_spec a{agg_kind::quantile, qq, "p"};
        auto exact = ref.values[static_cast<size_t>(std::floor(qq * (ref.values.size() - 1)))];
        CHECK(std::fabs(finalize(a, b, q.step, m) - exact)
              <= 0.01 * std::fabs(exact) * (1 + 1e-9));
      }
    }
  }
}

query_spec make_query(std::string metric, millis from, millis to, millis step,
                      size_t tier, std::vector<tag> where,
                      std::vector<std::string> group_by) {
  query_spec q;
  q.metric = std::move(metric);
  q.from = from;
  q.to = to;
  q.step = step;
  q.tier = tier;
  q.where = std::move(where);
  q.group_by = std::move(group_by);
  // p50: the reference also checks the sketches (only a quantile agg
  // makes the store read them).
  q.aggs = {*parse_agg("count"), *parse_agg("p50")};
  return q;
}

} // namespace

TEST_SUITE("cqrs.series_store") {

TEST_CASE("query matches a brute-force reference") {
  // Distinct timestamps make "last" unambiguous across series of one group.
  auto events = random_events(20000, 1, 10 * 60 * 1000);
  for (size_t i = 0; i < events.size(); ++i)
    events[i].ts = now - 1 - static_cast<millis>(i) * 29;
  std::shuffle(events.begin(), events.end(), std::mt19937{5}); // late events
  auto stores = build(events, 4);
  size_t total_series = 0;
  for (auto& s : stores) {
    total_series += s.series_count();
    CHECK(s.bucket_count() > 0);
  }
  CHECK(total_series > 20);
  uint64_t applied = 0;
  for (auto& s : stores)
    applied += s.events_applied();
  CHECK(applied == events.size());

  check_query(events, stores, make_query("http.latency", now - 300'000, now, 1000, 0, {}, {}));
  check_query(events, stores, make_query("http.latency", now - 300'000, now, 10'000, 0, {}, {"region"}));
  check_query(events, stores, make_query("db.query", now - 600'000, now - 60'000, 60'000, 0,
                                         {{"host", "h2"}}, {"region", "path"}));
  check_query(events, stores, make_query("cpu", now - 3'600'000, now, 60'000, 1,
                                         {{"host", "h1"}, {"region", "eu"}}, {}));
  check_query(events, stores, make_query("cpu", now - 86'400'000, now, 3'600'000, 2, {}, {"host"}));
  check_query(events, stores, make_query("nope", now - 300'000, now, 1000, 0, {}, {}));
  check_query(events, stores, make_query("cpu", now - 300'000, now, 1000, 0, {{"host", "zz"}}, {}));
}

TEST_CASE("a query without quantile aggs reads no sketches, with the same values") {
  auto events = random_events(5000, 7, 10 * 60 * 1000);
  for (size_t i = 0; i < events.size(); ++i)
    events[i].ts = now - 1 - static_cast<millis>(i) * 97;
  auto stores = build(events, 1);
  auto& s = stores[0];
  auto scalar = make_query("http.latency", now - 600'000, now, 10'000, 0, {}, {"region"});
  scalar.aggs.clear();
  for (auto name : {"count", "sum", "min", "max", "avg", "last", "rate"})
    scalar.aggs.push_back(*parse_agg(name));
  auto with_q = scalar;
  with_q.aggs.push_back(*parse_agg("p50"));
  query_partial a, b;
  s.query(scalar, a);
  s.query(with_q, b);
  REQUIRE(a.groups.size() == b.groups.size());
  REQUIRE(a.groups.size() > 1);
  size_t points = 0;
  for (auto& [key, g] : a.groups) {
    auto& h = b.groups.at(key);
    REQUIRE(g.points.size() == h.points.size());
    auto it = h.points.begin();
    for (auto& [t, x] : g.points) {
      CHECK(t == it->first);
      auto& y = it->second;
      CHECK(x.count == y.count);
      CHECK(x.sum == y.sum);
      CHECK(x.min == y.min);
      CHECK(x.max == y.max);
      CHECK(x.last == y.last);
      CHECK(x.last_ts == y.last_ts);
      CHECK(x.sketch.count() == 0);
      CHECK(y.sketch.count() == y.count);
      ++it;
      ++points;
    }
  }
  CHECK(points > 50);
}

TEST_CASE("group_by with missing tags renders the tag absent") {
  series_store s{test_tiers(), ddsketch_mapping{}};
  s.apply(make_series_key("m", {{"region", "eu"}}), now - 5000, 1);
  s.apply(make_series_key("m", {}), now - 5000, 2);
  s.apply(make_series_key("m", {{"host", "a"}}), now - 5000, 3);
  auto tiers = test_tiers();
  auto q = std::get<query_spec>(parse_query(
    nlohmann::json::parse(R"({"metric":"m","aggs":["count","sum"],"group_by":["region"]})"),
    now, tiers));
  query_partial p;
  s.query(q, p);
  nlohmann::json out;
  render_query(q, p, tiers, s.mapping(), {}, out);
  CHECK(out["series"] == nlohmann::json::parse(R"([
    {"tags":{},"points":[{"t":1764189995000,"count":2,"sum":5.0}]},
    {"tags":{"region":"eu"},"points":[{"t":1764189995000,"count":1,"sum":1.0}]}])"));
}

TEST_CASE("topk, series and metrics against the reference") {
  auto events = random_events(5000, 2, 5 * 60 * 1000);
  auto stores = build(events, 3);
  auto tiers = test_tiers();
  // topk by host, count
  auto tq = std::get<topk_spec>(parse_topk(
    nlohmann::json::parse(R"({"metric":"http.latency","by":"host","k":3,"agg":"sum","from":"-10m"})"),
    now, tiers));
  topk_partial tp;
  for (auto& s : stores) {
    topk_partial part;
    s.topk(tq, part);
    tp.merge(std::move(part));
  }
  std::map<std::string, double> sums;
  for (auto& e : events)
    if (e.metric == "http.latency")
      if (auto* h = find(e.tags, "host"))
        sums[*h] += e.value;
  REQUIRE(tp.values.size() == sums.size());
  for (auto& [h, sum] : sums)
    CHECK(tp.values[h].sum == doctest::Approx(sum));
  nlohmann::json out;
  render_topk(tq, tp, stores[0].mapping(), {}, out);
  CHECK(out["top"].size() == 3);
  CHECK(out["top"][0]["value"].get<double>() >= out["top"][1]["value"].get<double>());

  // series
  std::set<std::string> keys, keys_db;
  for (auto& e : events) {
    keys.insert(make_series_key(e.metric, e.tags));
    if (e.metric == "db.query" && find(e.tags, "region") && *find(e.tags, "region") == "eu")
      keys_db.insert(make_series_key(e.metric, e.tags));
  }
  series_spec sq;
  series_partial sp;
  for (auto& s : stores)
    s.series(sq, sp);
  CHECK(std::set<std::string>(sp.keys.begin(), sp.keys.end()) == keys);
  sq.metric = "db.query";
  sq.where = {{"region", "eu"}};
  series_partial sp2;
  for (auto& s : stores)
    s.series(sq, sp2);
  CHECK(std::set<std::string>(sp2.keys.begin(), sp2.keys.end()) == keys_db);
  sq.limit = 2;
  series_partial sp3;
  for (auto& s : stores)
    s.series(sq, sp3);
  render_series(sq, sp3, {}, out);
  CHECK(out["truncated"] == (keys_db.size() > 2));
  CHECK(out["series"].size() == std::min<size_t>(2, keys_db.size()));
  CHECK(out["series"][0]["tags"]["region"] == "eu");

  // metrics
  metrics_partial mp;
  for (auto& s : stores) {
    metrics_partial part;
    s.metrics(part);
    mp.merge(std::move(part));
  }
  std::map<std::string, uint64_t> per_metric;
  for (auto& k : keys)
    ++per_metric[std::string{series_metric(k)}];
  CHECK(mp.metrics == per_metric);
}

TEST_CASE("evict drops old buckets and empty series") {
  series_store s{test_tiers(), ddsketch_mapping{}};
  auto old_key = make_series_key("m", {{"a", "old"}});
  auto new_key = make_series_key("m", {{"a", "new"}});
  s.apply(old_key, now - 3 * 86'400'000LL, 1);  // only the 1h tier keeps it
  s.apply(new_key, now - 1000, 1);
  CHECK(s.series_count() == 2);
  CHECK(s.bucket_count() == 6);
  CHECK(s.evict(now) == 2); // old: 1s and 1m buckets
  CHECK(s.series_count() == 2);
  CHECK(s.bucket_count() == 4);
  CHECK(s.evict(now + 91 * 86'400'000LL) == 4);
  CHECK(s.series_count() == 0);
  CHECK(s.bucket_count() == 0);
  // Still usable, ids renumbered correctly.
  s.apply(new_key, now, 2);
  s.apply(old_key, now, 3);
  metrics_partial mp;
  s.metrics(mp);
  CHECK(mp.metrics["m"] == 2);
  series_store t{test_tiers(), ddsketch_mapping{}};
  for (int i = 0; i < 10; ++i)
    t.apply(make_series_key("m", {{"i", std::to_string(i)}}),
            now - (i % 2 ? 89 * 86'400'000LL : 0), i);
  millis later = now + 2 * 86'400'000LL;
  t.evict(later);
  CHECK(t.series_count() == 5);
  auto tiers = test_tiers();
  auto q = std::get<query_spec>(parse_query(
    nlohmann::json::parse(R"({"metric":"m","from":"-3d","group_by":["i"],"aggs":["sum"]})"),
    later, tiers));
  CHECK(q.tier == 2);
  query_partial p;
  t.query(q, p);
  CHECK(p.groups.size() == 5);
  for (auto& [k, g] : p.groups)
    CHECK(std::stoi(*g.values[0]) % 2 == 0);
}

TEST_CASE("encode/decode round trip and garbage rejection") {
  auto events = random_events(3000, 3, 60 * 60 * 1000);
  auto stores = build(events, 1);
  auto& s = stores[0];
  std::string buf;
  s.encode(buf);
  series_store d{test_tiers(), ddsketch_mapping{0.01}};
  REQUIRE(d.decode(buf));
  CHECK(d == s);
  CHECK(d.series_count() == s.series_count());
  CHECK(d.bucket_count() == s.bucket_count());
  CHECK(d.events_applied() == s.events_applied());
  // Decoded stores keep working: apply the same to both.
  s.apply(make_series_key("cpu", {{"host", "h1"}}), now, 5);
  CHECK_FALSE(d == s);
  d.apply(make_series_key("cpu", {{"host", "h1"}}), now, 5);
  CHECK(d == s);
  // Snapshot + replay == full replay.
  auto first = build(std::vector<event>(events.begin(), events.begin() + 1000), 1);
  std::string snap;
  first[0].encode(snap);
  series_store replayed{test_tiers(), ddsketch_mapping{0.01}};
  REQUIRE(replayed.decode(snap));
  for (size_t i = 1000; i < events.size(); ++i)
    replayed.apply(make_series_key(events[i].metric, events[i].tags), events[i].ts, events[i].value);
  CHECK(replayed == build(events, 1)[0]);

  // Mismatched config, truncation, corruption: false and state unchanged.
  series_store other_tiers{tier_set::parse({"1s:15m"}), ddsketch_mapping{0.01}};
  CHECK_FALSE(other_tiers.decode(buf));
  series_store other_acc{test_tiers(), ddsketch_mapping{0.02}};
  CHECK_FALSE(other_acc.decode(buf));
  series_store g{test_tiers(), ddsketch_mapping{0.01}};
  g.apply("keep", now, 1);
  CHECK_FALSE(g.decode(""));
  CHECK_FALSE(g.decode("CRNS"));
  CHECK_FALSE(g.decode(std::string_view{buf}.substr(0, buf.size() - 1)));
  CHECK_FALSE(g.decode(buf + "x"));
  auto bad_version = buf;
  bad_version[4] = 9;
  CHECK_FALSE(g.decode(bad_version));
  for (size_t cut = 0; cut < buf.size(); cut += 97)
    CHECK_FALSE(g.decode(std::string_view{buf}.substr(0, cut)));
  std::mt19937 rng{9};
  for (int i = 0; i < 3000; ++i) {
    auto corrupt = buf;
    for (int j = 0; j < 3; ++j)
      corrupt[5 + rng() % (corrupt.size() - 5)] = static_cast<char>(rng());
    (void) g.decode(corrupt); // may succeed on a benign flip; must not crash
  }
  for (int i = 0; i < 3000; ++i) {
    std::string garbage = "CRNS\x01" + std::string(rng() % 200, '\0');
    for (size_t j = 5; j < garbage.size(); ++j)
      garbage[j] = static_cast<char>(rng());
    series_store h{test_tiers(), ddsketch_mapping{0.01}};
    (void) h.decode(garbage);
  }
  series_store empty{test_tiers(), ddsketch_mapping{0.01}};
  std::string ebuf;
  empty.encode(ebuf);
  CHECK(g.decode(ebuf));
  CHECK(g.series_count() == 0);
}

TEST_CASE("move keeps the state") {
  series_store s{test_tiers(), ddsketch_mapping{}};
  s.apply("m", now, 1);
  series_store t = std::move(s);
  CHECK(t.series_count() == 1);
  CHECK(t.events_applied() == 1);
}

}
