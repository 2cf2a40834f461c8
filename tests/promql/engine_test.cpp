// The engine against a fake Cairn node: series and query requests answered
// from raw events with the bucket semantics of docs/protocol.md ("query"),
// 1 s buckets, exact lower-rank quantiles.
#include "promql/engine.hpp"
#include "promql/http_api.hpp"
#include "promql/parser.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>

using namespace cairn::promql;
using nlohmann::json;

namespace {

constexpr millis now = 1'764'190'800'000;  // a multiple of 1 h

struct fake_series {
  std::string metric;
  std::map<std::string, std::string> tags;
  std::vector<std::pair<millis, double>> events;
};

struct fake_node {
  std::vector<fake_series> data;
  std::vector<json> requests;
  json force_reply;  ///< answered to everything when set

  bool where_ok(const fake_series& s, const json& where) const {
    for (auto& [k, v] : where.items()) {
      auto it = s.tags.find(k);
      if (it == s.tags.end() || it->second != v.get<std::string>())
        return false;
    }
    return true;
  }

  json answer(const json& req) {
    requests.push_back(req);
    if (!force_reply.is_null())
      return force_reply;
    auto op = req.value("op", "");
    auto where = req.value("where", json::object());
    if (op == "metrics") {
      std::map<std::string, int> names;
      for (auto& s : data)
        names[s.metric]++;
      json ms = json::array();
      for (auto& [n, c] : names)
        ms.push_back({{"name", n}, {"series", c}});
      return {{"ok", true}, {"metrics", ms}};
    }
    if (op == "series") {
      json out = json::array();
      for (auto& s : data)
        if ((!req.contains("metric") || s.metric == req["metric"]) && where_ok(s, where))
          out.push_back({{"metric", s.metric}, {"tags", s.tags}});
      return {{"ok", true}, {"series", out}, {"truncated", false}, {"partial", false}};
    }
    if (op != "query")
      return {{"ok", false}, {"error", {{"code", "unknown_op"}, {"message", "?"}}}};
    millis from = req["from"], to = req["to"], step = req["step"];
    millis align = req.value("align", millis{0});  // Cairn's: 0 <= align < step
    if (step % 1000 != 0 || align % 1000 != 0 || align < 0 || align >= step)
      return {{"ok", false}, {"error", {{"code", "bad_request"}, {"message", "step"}}}};
    std::vector<std::string> group_by = req["group_by"];
    std::map<json, std::map<millis, std::vector<std::pair<millis, double>>>> groups;
    for (auto& s : data) {
      if (s.metric != req["metric"] || !where_ok(s, where))
        continue;
      json tags = json::object();
      for (auto& g : group_by)
        if (s.tags.count(g))
          tags[g] = s.tags.at(g);
      for (auto& [ts, v] : s.events) {
        millis b = ts / 1000 * 1000;
        if (b < from || b >= to)
          continue;
        groups[tags][(b - align) / step * step + align].emplace_back(ts, v);
      }
    }
    json series = json::array();
    for (auto& [tags, pts] : groups) {
      json points = json::array();
      for (auto& [t, evs] : pts) {
        json p = {{"t", t}};
        auto sorted = evs;
        std::stable_sort(sorted.begin(), sorted.end(),
                         [](auto& a, auto& b) { return a.first < b.first; });
        std::vector<double> vals;
        for (auto& e : sorted)
          vals.push_back(e.second);
        std::vector<double> ordered = vals;
        std::sort(ordered.begin(), ordered.end());
        for (auto& a : req["aggs"]) {
          std::string name = a;
          double sum = 0;
          for (auto v : vals)
            sum += v;
          if (name == "count") p[name] = vals.size();
          else if (name == "sum") p[name] = sum;
          else if (name == "min") p[name] = ordered.front();
          else if (name == "max") p[name] = ordered.back();
          else if (name == "last") p[name] = vals.back();
          else if (name[0] == 'p') {
            double q = std::stod(name.substr(1)) / 100;
            p[name] = ordered[static_cast<size_t>(std::floor(q * (ordered.size() - 1)))];
          }
        }
        points.push_back(p);
      }
      series.push_back({{"tags", tags}, {"points", points}});
    }
    return {{"ok", true}, {"step", step}, {"partial", false}, {"series", series}};
  }

  cairn_call caller() {
    return [this](json req, cairn_reply done) {
      if (!req.is_array())
        return done(answer(req));
      ++batches;
      json out = json::array();
      for (auto& r : req)
        out.push_back(answer(r));
      done(out);
    };
  }
  int batches = 0;
};

/// Two series of `req_total` (counters, one sample every 15 s at +500 ms)
/// and a gauge `lat` with tags that differ only by an extra tag.
fake_node sample_node() {
  fake_node n;
  fake_series a{"req_total", {{"job", "api"}, {"code", "200"}}, {}};
  fake_series b{"req_total", {{"job", "api"}, {"code", "500"}}, {}};
  for (int i = 0; i < 80; ++i) {
    millis ts = now - 20 * 60000 + i * 15000 + 500;
    a.events.emplace_back(ts, 1000 + 10.0 * i);
    b.events.emplace_back(ts, 50 + 1.0 * i);
  }
  fake_series c{"lat", {{"host", "x"}}, {}};
  fake_series d{"lat", {{"host", "x"}, {"dc", "eu"}}, {}};
  for (int i = 0; i < 60; ++i) {
    millis ts = now - 10 * 60000 + i * 10000 + 500;
    c.events.emplace_back(ts, i + 1);
    d.events.emplace_back(ts, 1000 + i);
  }
  n.data = {a, b, c, d};
  return n;
}

query_outcome run(fake_node& n, std::string_view q, eval_times t) {
  auto e = parse(q);
  REQUIRE(std::holds_alternative<expr>(e));
  query_outcome out = problem{error_type::internal, "not called"};
  bool called = false;
  evaluate(std::get<expr>(e), t, now, engine_options{}, n.caller(), [&](query_outcome o) {
    CHECK_FALSE(called);
    called = true;
    out = std::move(o);
  });
  CHECK(called);
  return out;
}

query_value value_of(query_outcome o) {
  if (auto* p = std::get_if<problem>(&o))
    FAIL("query failed: " << p->message);
  return std::get<query_value>(std::move(o));
}

std::string label(const result_series& s, const std::string& name) {
  for (auto& [k, v] : s.labels)
    if (k == name)
      return v;
  return "";
}

fetch_plan plan_of(std::string_view q, eval_times t) {
  auto e = parse(q);
  REQUIRE(std::holds_alternative<expr>(e));
  auto p = plan(std::get<expr>(e), t, now, engine_options{});
  if (auto* pr = std::get_if<problem>(&p))
    FAIL("plan failed: " << pr->message);
  return std::get<fetch_plan>(p);
}

} // namespace

TEST_SUITE("promql.engine") {

TEST_CASE("plans: windows, per-window queries, samples") {
  // A range query whose range equals its step: one Cairn point per window.
  auto p = plan_of("sum_over_time(req_total{job=\"api\",code=~\"2..\"}[1m])",
                   {now - 600000, now, 60000});
  CHECK(p.mode == fetch_mode::windows);
  CHECK(p.step == 60000);
  CHECK(p.from == now - 660000);
  CHECK(p.to == now);
  CHECK(p.where == json{{"job", "api"}});
  CHECK(p.filters.size() == 2);
  CHECK(p.aggs == std::vector<std::string>{"sum"});
  CHECK(p.times.size() == 11);
  // Range 1m at step 15s: 15 s points, four per window.
  auto q = plan_of("avg_over_time(lat[1m])", {now - 600000, now, 15000});
  CHECK(q.step == 15000);
  CHECK(q.aggs == std::vector<std::string>{"sum", "count"});
  CHECK(p.align == 0);
  CHECK(q.align == 0);
  // An unaligned start: evaluation times rounded down to the resolution,
  // and the Cairn query's steps aligned to them (one point per window, not
  // one per bucket).
  auto u = plan_of("max_over_time(lat[1m])", {now - 600000 + 7300, now, 60000});
  CHECK(u.mode == fetch_mode::windows);
  CHECK(u.step == 60000);
  CHECK(u.align == 7000);
  CHECK(u.from == now - 660000 + 7000);
  CHECK(u.times.front() == now - 600000 + 7000);
  CHECK(u.shown_times.front() == now - 600000 + 7300);
  // The lookback of an instant selector (5m) at an unaligned 15 s step.
  auto l = plan_of("lat", {now - 300000 + 2000, now + 2000, 15000});
  CHECK(l.step == 15000);
  CHECK(l.align == 2000);
  CHECK(l.window == 300000);
  // A quantile whose range is the step stays one Cairn query when unaligned.
  auto uq = plan_of("quantile_over_time(0.9, lat[1m])",
                    {now - 600000 + 3000, now, 60000});
  CHECK(uq.mode == fetch_mode::windows);
  CHECK(uq.align == 3000);
  // Instant queries: one query, one point holding the whole window.
  auto i = plan_of("count_over_time(lat[5m])", {now, now, 0});
  CHECK(i.mode == fetch_mode::per_window);
  CHECK(i.from == now - 300000);
  CHECK(i.to == now);
  CHECK(i.step == now - 300000);
  // Quantiles merge only as one point per window.
  auto qq = plan_of("quantile_over_time(0.9, lat[2m])", {now - 600000, now, 60000});
  CHECK(qq.mode == fetch_mode::per_window);
  CHECK(qq.aggs == std::vector<std::string>{"p90"});
  CHECK(plan_of("quantile_over_time(0.999, lat[1m])", {now - 600000, now, 60000}).mode
        == fetch_mode::windows);
  CHECK(quantile_agg(0.999) == "p99.9");
  CHECK(quantile_agg(0.95) == "p95");
  // rate: one sample per bucket of the range tier.
  auto r = plan_of("rate(req_total[5m])", {now - 300000, now, 60000});
  CHECK(r.mode == fetch_mode::samples);
  CHECK(r.step == 1000);
  CHECK(r.aggs == std::vector<std::string>{"last"});
  // Data older than the 1 s tier's 15 minutes: 1 m resolution.
  auto old = plan_of("sum_over_time(m[5m])", {now - 3600000, now, 300000});
  CHECK(old.resolution == 60000);
}

TEST_CASE("plans refuse what the tiers cannot answer") {
  auto e = std::get<expr>(parse("sum_over_time(m[90s])"));
  auto p = plan(e, {now - 3600000, now, 60000}, now, engine_options{});
  REQUIRE(std::holds_alternative<problem>(p));
  CHECK(std::get<problem>(p).message.find("range 90s is not a multiple of 1m") == 0);
  auto s = plan(std::get<expr>(parse("m")), {now - 3600000, now, 15000}, now,
                engine_options{});
  REQUIRE(std::holds_alternative<problem>(s));
  CHECK(std::get<problem>(s).message.find("step 15s") == 0);
  auto m = plan(std::get<expr>(parse("m[5m]")), {now - 600000, now, 15000}, now,
                engine_options{});
  REQUIRE(std::holds_alternative<problem>(m));
  CHECK(std::get<problem>(m).message.find("invalid expression type \"range vector\"")
        == 0);
}

TEST_CASE("over_time functions over aligned windows") {
  auto n = sample_node();
  // lat{host="x"} has values 1..60 every 10 s from now-10m (+500 ms).
  auto v = value_of(run(n, "sum_over_time(lat{dc=\"\"}[1m])", {now - 540000, now, 60000}));
  CHECK(v.type == query_value::kind::matrix);
  REQUIRE(v.series.size() == 1);  // the dc="eu" series is excluded exactly
  auto& s = v.series[0];
  CHECK(s.labels == label_set{{"host", "x"}});  // __name__ dropped
  REQUIRE(s.points.size() == 10);
  // The point at now-9m is the window [now-10m, now-9m): values 1..6.
  CHECK(s.points[0].first == now - 540000);
  CHECK(s.points[0].second == 1 + 2 + 3 + 4 + 5 + 6);
  CHECK(s.points[9].second == 55 + 56 + 57 + 58 + 59 + 60);

  auto c = value_of(run(n, "count_over_time(lat[2m])", {now - 300000, now, 15000}));
  REQUIRE(c.series.size() == 2);
  for (auto& x : c.series)
    for (auto& [t, val] : x.points)
      CHECK(val == 12);

  auto mx = value_of(run(n, "max_over_time(lat{dc=\"eu\"}[1m])", {now, now, 0}));
  CHECK(mx.type == query_value::kind::vector);
  REQUIRE(mx.series.size() == 1);
  CHECK(mx.series[0].points[0] == std::pair<millis, double>{now, 1059});

  auto last = value_of(run(n, "last_over_time(lat{dc!=\"eu\"}[5m])", {now, now, 0}));
  REQUIRE(last.series.size() == 1);
  CHECK(label(last.series[0], "__name__") == "lat");  // kept by last_over_time
  CHECK(last.series[0].points[0].second == 60);

  auto avg = value_of(run(n, "avg_over_time(lat{host=~\"x\",dc=~\"e.\"}[1m])",
                           {now - 60000, now, 60000}));
  REQUIRE(avg.series.size() == 1);
  CHECK(avg.series[0].points.back().second == doctest::Approx(1056.5));

  auto q = value_of(run(n, "quantile_over_time(0.5, lat{dc=\"eu\"}[1m])",
                         {now - 120000, now, 60000}));
  REQUIRE(q.series.size() == 1);
  CHECK(q.series[0].points.back().second == 1056);  // lower rank of 1054..1059
  auto q2 = value_of(run(n, "quantile_over_time(0.5, lat{dc=\"eu\"}[2m])",
                          {now - 120000, now, 60000}));
  CHECK(q2.series[0].points.back().second == 1053);  // 1048..1059, per window
  auto qinf = value_of(run(n, "quantile_over_time(2, lat{dc=\"eu\"}[1m])", {now, now, 0}));
  CHECK(std::isinf(qinf.series[0].points[0].second));
}

TEST_CASE("unaligned ranges answer what Prometheus' windows hold") {
  // Evaluation times that are no multiple of the step: the Cairn query is
  // aligned to them, and each value is that of the window's events.
  auto n = sample_node();
  auto lat_eu = n.data[3];
  auto reference = [&](millis t, millis d, bool last) {
    std::optional<double> v;
    for (auto& [ts, x] : lat_eu.events) {
      millis b = ts / 1000 * 1000;
      if (b >= t - d && b < t)
        v = last ? x : std::max(v.value_or(x), x);
    }
    return v;
  };
  for (millis skew : {1000, 2000, 7300, 14000}) {
    CAPTURE(skew);
    eval_times t{now - 300000 + skew, now + skew, 15000};
    auto before = n.requests.size();
    for (auto [q, d, last] : {std::tuple{"lat{dc=\"eu\"}", millis{300000}, true},
                              std::tuple{"max_over_time(lat{dc=\"eu\"}[15s])",
                                         millis{15000}, false}}) {
      CAPTURE(q);
      auto v = value_of(run(n, q, t));
      REQUIRE(v.series.size() == 1);
      std::vector<std::pair<millis, double>> want;
      for (auto shown = t.start; shown <= t.end; shown += t.step)
        if (auto x = reference(shown / 1000 * 1000, d, last))
          want.emplace_back(shown, *x);
      CHECK(v.series[0].points == want);
    }
    // One point per step, not one per bucket.
    for (auto i = before; i < n.requests.size(); ++i)
      if (n.requests[i].value("op", "") == "query") {
        CHECK(n.requests[i]["step"] == 15000);
        CHECK(n.requests[i]["align"] == skew / 1000 * 1000 % 15000);
      }
  }
}

TEST_CASE("instant selectors look back 5 minutes") {
  auto n = sample_node();
  auto v = value_of(run(n, "lat", {now, now, 0}));
  REQUIRE(v.series.size() == 2);
  CHECK(label(v.series[0], "__name__") == "lat");
  auto r = value_of(run(n, "lat{dc=\"eu\"}", {now + 240000, now + 600000, 60000}));
  REQUIRE(r.series.size() == 1);
  // The last sample (now-9.5s) is visible until now+5m-9.5s.
  CHECK(r.series[0].points.size() == 1);
  CHECK(r.series[0].points[0].first == now + 240000);
  CHECK(r.series[0].points[0].second == 1059);
}

TEST_CASE("rate and increase follow Prometheus' extrapolation") {
  auto n = sample_node();
  // +10 per 15 s: rate 2/3 per second, increase over 5 minutes 200.
  auto v = value_of(run(n, "rate(req_total{code=\"200\"}[5m])", {now - 300000, now, 60000}));
  REQUIRE(v.series.size() == 1);
  for (auto& [t, x] : v.series[0].points)
    CHECK(x == doctest::Approx(10.0 / 15));
  auto inc = value_of(run(n, "increase(req_total{code=\"500\"}[5m])", {now, now, 0}));
  REQUIRE(inc.series.size() == 1);
  CHECK(inc.series[0].points[0].second == doctest::Approx(20));

  // A counter reset adds the value before it.
  std::vector<std::pair<millis, double>> s{{0, 10}, {15000, 20}, {30000, 5}, {45000, 15}};
  auto r = extrapolated_rate(s, 0, 60000, false);
  REQUIRE(r);
  CHECK(*r == doctest::Approx((15 - 10 + 20) * 60.0 / 45));
  CHECK_FALSE(extrapolated_rate({{0, 1}}, 0, 60000, true));
}

TEST_CASE("aggregations by and without") {
  auto n = sample_node();
  auto s = value_of(run(n, "sum(rate(req_total[5m]))", {now, now, 0}));
  REQUIRE(s.series.size() == 1);
  CHECK(s.series[0].labels.empty());
  CHECK(s.series[0].points[0].second == doctest::Approx(10.0 / 15 + 1.0 / 15));

  auto by = value_of(run(n, "max by (host) (lat)", {now, now, 0}));
  REQUIRE(by.series.size() == 1);
  CHECK(by.series[0].labels == label_set{{"host", "x"}});
  CHECK(by.series[0].points[0].second == 1059);

  auto wo = value_of(run(n, "count without (code) (req_total)", {now, now, 0}));
  REQUIRE(wo.series.size() == 1);
  CHECK(wo.series[0].labels == label_set{{"job", "api"}});
  CHECK(wo.series[0].points[0].second == 2);

  auto avg = value_of(run(n, "avg(min_over_time(lat[1m]))", {now, now, 0}));
  CHECK(avg.series[0].points[0].second == doctest::Approx((55 + 1054) / 2.0));
  auto mn = value_of(run(n, "min by (dc) (lat)", {now, now, 0}));
  CHECK(mn.series.size() == 2);  // dc="eu" and no dc
}

TEST_CASE("numbers, empty answers, errors and partial answers") {
  auto n = sample_node();
  auto sc = value_of(run(n, "1+1", {now, now, 0}));
  CHECK(sc.type == query_value::kind::scalar);
  CHECK(sc.scalar == 2);
  CHECK(n.requests.empty());
  auto empty = value_of(run(n, "lat{host=\"nope\"}", {now, now, 0}));
  CHECK(empty.series.empty());
  CHECK(n.requests.size() == 1);  // no query when no series matches

  n.force_reply = {{"ok", false},
                   {"error", {{"code", "unavailable"}, {"message", "node is recovering"}}}};
  auto failed = run(n, "lat", {now, now, 0});
  REQUIRE(std::holds_alternative<problem>(failed));
  CHECK(std::get<problem>(failed).type == error_type::unavailable);
  CHECK(http_status(std::get<problem>(failed).type) == 503);
  n.force_reply = {{"ok", false}, {"error", {{"code", "bad_request"}, {"message", "x"}}}};
  CHECK(std::get<problem>(run(n, "lat", {now, now, 0})).type == error_type::bad_data);

  fake_node partial = sample_node();
  cairn_call call = [&](json req, cairn_reply done) {
    auto r = partial.answer(req);
    r["partial"] = true;
    r["missing_partitions"] = {3};
    done(r);
  };
  query_outcome out;
  evaluate(std::get<expr>(parse("lat")), {now, now, 0}, now, engine_options{}, call,
           [&](query_outcome o) { out = std::move(o); });
  auto pv = value_of(out);
  REQUIRE(pv.warnings.size() == 1);
  CHECK(pv.warnings[0].find("partitions [3]") != std::string::npos);
  CHECK(pv.series.size() == 2);
}

TEST_CASE("the key cache sends the query with the series request, checked") {
  auto n = sample_node();
  engine_options opts;
  opts.key_cache = std::make_shared<group_key_cache>();
  auto once = [&](std::string_view q) {
    query_outcome out;
    evaluate(std::get<expr>(parse(q)), {now, now, 0}, now, opts, n.caller(),
             [&](query_outcome o) { out = std::move(o); });
    return value_of(std::move(out));
  };
  auto first = once("max_over_time(lat[1m])");
  CHECK(n.requests.size() == 2);
  CHECK(n.requests[0]["op"] == "series");
  CHECK(n.requests[1]["op"] == "query");
  n.requests.clear();
  auto second = once("max_over_time(lat[1m])");
  REQUIRE(n.requests.size() == 2);  // both in one batch, no third request
  CHECK(n.batches == 1);
  CHECK(n.requests[1]["group_by"] == json{"dc", "host"});
  CHECK(second.series.size() == first.series.size());
  CHECK(second.series[0].points == first.series[0].points);

  // A series with a new key: the guess no longer isolates every series, so
  // the query is sent again with the full key set.
  fake_series extra{"lat", {{"host", "x"}, {"dc", "eu"}, {"rack", "r1"}}, {}};
  extra.events.emplace_back(now - 30000, 5000);
  n.data.push_back(extra);
  n.requests.clear();
  auto third = once("max_over_time(lat[1m])");
  REQUIRE(n.requests.size() == 3);
  CHECK(n.requests[2]["group_by"] == json{"dc", "host", "rack"});
  REQUIRE(third.series.size() == 3);
  // Sorted by labels: {dc,host} < {dc,host,rack} < {host}.
  CHECK(third.series[0].points[0].second == 1059);  // dc=eu alone, not 5000
  CHECK(label(third.series[1], "rack") == "r1");
  CHECK(third.series[1].points[0].second == 5000);
  CHECK(third.series[2].points[0].second == 60);
}

TEST_CASE("the direct source answers as the requests do") {
  // A direct_source over the same fake node (keys are the series' tags as
  // JSON text): every expression must evaluate to the same value through it
  // as through the requests, and a source that declines or is busy must
  // leave the requests path to answer.
  auto n = sample_node();
  int series_calls = 0, read_calls = 0;
  std::vector<millis> read_froms;
  bool busy = false;
  auto key_of = [](const fake_series& s) {
    return s.metric + json(s.tags).dump();
  };
  auto src = std::make_shared<direct_source>();
  src->series = [&](const std::string& metric, const label_set& where, size_t,
                    std::vector<source_series>& out) {
    ++series_calls;
    out.clear();
    for (auto& s : n.data) {
      bool ok = s.metric == metric;
      for (auto& [k, v] : where)
        ok = ok && s.tags.count(k) && s.tags.at(k) == v;
      if (ok)
        out.push_back({key_of(s), label_set(s.tags.begin(), s.tags.end())});
    }
    std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.key < b.key; });
    return true;
  };
  src->read = [&](const source_read& r, std::vector<std::vector<cairn_point>>& out,
                  problem& err) {
    ++read_calls;
    read_froms.push_back(r.from);
    if (busy)
      return source_status::busy;
    out.assign(r.keys.size(), {});
    for (size_t i = 0; i < r.keys.size(); ++i)
      for (auto& s : n.data) {
        if (key_of(s) != r.keys[i])
          continue;
        // The series alone, grouped by its own keys: its points.
        fake_node one;
        one.data = {s};
        json group_by = json::array();
        for (auto& kv : s.tags)
          group_by.push_back(kv.first);
        json q = {{"op", "query"}, {"metric", r.metric}, {"from", r.from},
                  {"to", r.to}, {"step", r.step}, {"aggs", r.aggs},
                  {"group_by", group_by}};
        if (r.align)
          q["align"] = *r.align;
        auto reply = one.answer(q);
        if (!reply.value("ok", false)) {
          err = problem_of_reply(reply);
          return source_status::error;
        }
        for (auto& g : reply["series"])
          for (auto& pt : g["points"]) {
            cairn_point c;
            c.t = pt["t"];
            for (auto& [k, v] : pt.items()) {
              double x = v.is_number() ? v.get<double>() : std::nan("");
              if (k == "count") c.count = x;
              else if (k == "sum") c.sum = x;
              else if (k == "min") c.min = x;
              else if (k == "max") c.max = x;
              else if (k == "last") c.last = x;
              else if (k[0] == 'p') c.q = x;
            }
            out[i].push_back(c);
          }
      }
    return source_status::done;
  };
  engine_options direct;
  direct.source = src;
  auto eval = [&](const engine_options& o, std::string_view q, eval_times t) {
    query_outcome out = problem{error_type::internal, "not called"};
    evaluate(std::get<expr>(parse(q)), t, now, o, n.caller(),
             [&](query_outcome x) { out = std::move(x); });
    if (auto* p = std::get_if<problem>(&out))
      return "error " + std::string(to_string(p->type)) + ": " + p->message;
    return render_value(std::get<query_value>(out));
  };
  const char* queries[] = {
    "lat", "lat{dc=\"eu\"}", "lat{dc=\"\"}", "lat{host=~\"x|y\"}",
    "lat{dc!=\"eu\"}", "max_over_time(lat[1m])", "min_over_time(lat[15s])",
    "sum_over_time(lat[30s])", "avg_over_time(lat[1m])", "count_over_time(lat[1m])",
    "last_over_time(lat[1m])", "quantile_over_time(0.9, lat[1m])",
    "quantile_over_time(0.5, lat[15s])", "rate(req_total[1m])",
    "increase(req_total[2m])", "sum by (job) (rate(req_total[1m]))",
    "max without (code) (req_total)", "count(lat)", "lat{host=\"nope\"}",
    "nope_total"};
  std::vector<eval_times> times = {{now, now, 0},
                                   {now - 300000, now, 15000},
                                   {now - 297000, now + 3000, 15000},
                                   {now - 600000 + 7000, now, 60000},
                                   {now - 300000, now, 5000}};
  size_t compared = 0;
  for (auto q : queries)
    for (auto& t : times) {
      CAPTURE(q);
      CAPTURE(t.start);
      n.requests.clear();
      auto want = eval(engine_options{}, q, t);
      auto via_requests = n.requests.size();
      n.requests.clear();
      auto got = eval(direct, q, t);
      CHECK(got == want);
      // Served by the source alone, unless a query per window is needed
      // (those too: each window is one read) - never a request.
      CHECK(n.requests.empty());
      CHECK(via_requests > 0);
      ++compared;
    }
  CHECK(compared == std::size(queries) * times.size());
  CHECK(read_calls > 40);

  // An instant selector over a range whose every step has a point: only the
  // last step before the first evaluation time is read, not the lookback.
  read_froms.clear();
  n.requests.clear();
  CHECK(eval(direct, "lat", times[1]) == eval(engine_options{}, "lat", times[1]));
  CHECK(read_froms == std::vector<millis>{now - 300000 - 15000});
  // Steps of 5 s over samples every 10 s: some steps have no point, so the
  // rest of the lookback is read too.
  read_froms.clear();
  eval_times fine{now - 300000, now, 5000};
  CHECK(eval(direct, "lat", fine) == eval(engine_options{}, "lat", fine));
  REQUIRE(read_froms.size() == 2);
  CHECK(read_froms[0] == now - 300000 - 5000);
  CHECK(read_froms[1] == now - 600000);

  // A busy source: the requests answer, the same value.
  busy = true;
  n.requests.clear();
  auto want = eval(engine_options{}, "max_over_time(lat[1m])", times[1]);
  n.requests.clear();
  CHECK(eval(direct, "max_over_time(lat[1m])", times[1]) == want);
  CHECK(n.requests.size() == 2);
  busy = false;

  // Too many series for an inline read: the requests.
  auto small = std::make_shared<direct_source>(*src);
  small->max_series = 1;
  engine_options limited;
  limited.source = small;
  n.requests.clear();
  CHECK(eval(limited, "lat", times[1]) == eval(engine_options{}, "lat", times[1]));
  CHECK(!n.requests.empty());

  // A source that cannot list the series alone: the requests.
  auto blind = std::make_shared<direct_source>(*src);
  blind->series = [](const std::string&, const label_set&, size_t,
                     std::vector<source_series>&) { return false; };
  engine_options unlisted;
  unlisted.source = blind;
  n.requests.clear();
  auto reads_before = read_calls;
  CHECK(eval(unlisted, "lat", times[1]) == eval(engine_options{}, "lat", times[1]));
  CHECK(read_calls == reads_before);

  // More series than max_series behind the equality matchers: the same
  // execution error as the truncated series reply.
  engine_options few = direct;
  few.max_series = 1;
  auto err = eval(few, "lat", times[1]);
  CHECK(err.rfind("error execution: more than 1 series", 0) == 0);
  CHECK(series_calls > 0);
}

}
