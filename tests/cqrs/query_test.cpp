#include "cqrs/query.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cmath>

using namespace cairn::cqrs;
using nlohmann::json;

namespace {

constexpr millis now = 1'764'190'000'000;

tier_set default_tiers() {
  return tier_set::parse({"1s:15m", "1m:2d", "1h:90d"});
}

template <class T>
const problem* error_of(const parsed<T>& p) {
  return std::get_if<problem>(&p);
}

} // namespace

TEST_SUITE("cqrs.query") {

TEST_CASE("parse_agg") {
  CHECK(parse_agg("count")->kind == agg_kind::count);
  CHECK(parse_agg("rate")->kind == agg_kind::rate);
  CHECK(parse_agg("last")->kind == agg_kind::last);
  auto p99 = parse_agg("p99");
  REQUIRE(p99);
  CHECK(p99->kind == agg_kind::quantile);
  CHECK(p99->quantile == doctest::Approx(0.99));
  CHECK(p99->name == "p99");
  CHECK(parse_agg("p99.9")->quantile == doctest::Approx(0.999));
  CHECK(parse_agg("p0")->quantile == 0);
  CHECK(parse_agg("p100")->quantile == 1);
  CHECK(parse_agg("p50")->quantile == 0.5);
  for (auto text : {"", "p", "p101", "p-1", "p99.", "p.5", "pxx", "p1e1",
                    "COUNT", "median", "p 50", "p1000", "p50x"})
    CHECK_MESSAGE(!parse_agg(text), text);
}

TEST_CASE("finalize") {
  ddsketch_mapping m;
  bucket b;
  for (double v : {1.0, 2.0, 3.0, 10.0})
    b.add(static_cast<millis>(v), v, m);
  auto fin = [&](const char* agg, millis step = 10'000) {
    return finalize(*parse_agg(agg), b, step, m);
  };
  CHECK(fin("count") == 4);
  CHECK(fin("sum") == 16);
  CHECK(fin("min") == 1);
  CHECK(fin("max") == 10);
  CHECK(fin("avg") == 4);
  CHECK(fin("last") == 10);
  CHECK(fin("rate") == doctest::Approx(0.4));
  CHECK(fin("p0") == doctest::Approx(1).epsilon(0.01));
  CHECK(fin("p50") == doctest::Approx(2).epsilon(0.01));
  CHECK(fin("p100") == doctest::Approx(10).epsilon(0.01));
  bucket empty;
  CHECK(std::isnan(finalize(*parse_agg("avg"), empty, 1000, m)));
  CHECK(std::isnan(finalize(*parse_agg("p99"), empty, 1000, m)));
  CHECK(finalize(*parse_agg("count"), empty, 1000, m) == 0);
}

TEST_CASE("parse_query defaults") {
  auto tiers = default_tiers();
  auto r = parse_query(json{{"op", "query"}, {"metric", "m"}}, now, tiers);
  REQUIRE(std::holds_alternative<query_spec>(r));
  auto& q = std::get<query_spec>(r);
  CHECK(q.metric == "m");
  CHECK(q.from == now - 900'000);
  CHECK(q.to == now);
  CHECK(q.tier == 0);
  CHECK(q.step == 1000);
  REQUIRE(q.aggs.size() == 1);
  CHECK(q.aggs[0].name == "count");
  CHECK(q.where.empty());
  CHECK(q.group_by.empty());
}

TEST_CASE("parse_query full") {
  auto tiers = default_tiers();
  auto req = json::parse(R"({"op":"query","metric":"m","from":"-1h","to":"now",
    "step":"5m","aggs":["count","p99.9","avg"],"where":{"service":"api","az":"b"},
    "group_by":["region","host"]})");
  auto r = parse_query(req, now, tiers);
  REQUIRE(std::holds_alternative<query_spec>(r));
  auto& q = std::get<query_spec>(r);
  CHECK(q.from == now - 3'600'000);
  CHECK(q.tier == 1);
  CHECK(q.step == 300'000);
  CHECK(q.aggs.size() == 3);
  CHECK(q.where == std::vector<tag>{{"az", "b"}, {"service", "api"}});
  CHECK(q.group_by == std::vector<std::string>{"region", "host"});
  auto r2 = parse_query(json{{"metric", "m"}, {"from", now - 5000}, {"to", now},
                             {"step", 2000}},
                        now, tiers);
  REQUIRE(std::holds_alternative<query_spec>(r2));
  CHECK(std::get<query_spec>(r2).from == now - 5000);
  CHECK(std::get<query_spec>(r2).step == 2000);
}

TEST_CASE("parse_query errors") {
  auto tiers = default_tiers();
  const char* cases[][2] = {
    {R"([1])", "JSON object"},
    {R"({})", "\"metric\" is required"},
    {R"({"metric":5})", "must be a string"},
    {R"({"metric":"bad metric"})", "invalid character"},
    {R"({"metric":"m","from":"yesterday"})", "\"from\""},
    {R"({"metric":"m","to":1.5})", "\"to\""},
    {R"({"metric":"m","from":"now","to":"-1m"})", "before"},
    {R"({"metric":"m","from":"-1m","to":"-1m"})", "before"},
    {R"({"metric":"m","step":"1500ms"})", "multiple"},
    {R"({"metric":"m","step":0})", "multiple"},
    {R"({"metric":"m","step":-1000})", "multiple"},
    {R"({"metric":"m","step":"-1s"})", "multiple"},
    {R"({"metric":"m","from":"-1h","step":"30s"})", "1m"},
    {R"({"metric":"m","step":[1]})", "step"},
    {R"({"metric":"m","aggs":["count","median"]})", "unknown aggregation"},
    {R"({"metric":"m","aggs":"count"})", "aggs"},
    {R"({"metric":"m","aggs":[]})", "aggs"},
    {R"({"metric":"m","aggs":[5]})", "unknown aggregation"},
    {R"({"metric":"m","where":["a"]})", "where"},
    {R"({"metric":"m","where":{"a":1}})", "where"},
    {R"({"metric":"m","group_by":"region"})", "group_by"},
    {R"({"metric":"m","group_by":[1]})", "group_by"},
    {R"({"metric":"m","from":0})", "too many points"},
  };
  for (auto& [text, message] : cases) {
    CAPTURE(text);
    auto r = parse_query(json::parse(text), now, tiers);
    auto* p = error_of(r);
    REQUIRE(p);
    CHECK(p->code == error_code::bad_request);
    CHECK_MESSAGE(p->message.find(message) != std::string::npos, p->message);
  }
}

TEST_CASE("parse_topk and parse_series") {
  auto tiers = default_tiers();
  auto r = parse_topk(json::parse(R"({"metric":"m","by":"path"})"), now, tiers);
  REQUIRE(std::holds_alternative<topk_spec>(r));
  auto& t = std::get<topk_spec>(r);
  CHECK(t.k == 10);
  CHECK(t.agg.kind == agg_kind::count);
  CHECK(t.by == "path");
  CHECK(t.from == now - 900'000);
  for (auto text : {R"({"metric":"m"})", R"({"metric":"m","by":5})",
                    R"({"metric":"m","by":"p","k":0})",
                    R"({"metric":"m","by":"p","k":10001})",
                    R"({"metric":"m","by":"p","k":"5"})",
                    R"({"metric":"m","by":"p","agg":"nope"})",
                    R"({"by":"p"})"}) {
    CAPTURE(text);
    CHECK(error_of(parse_topk(json::parse(text), now, tiers)));
  }
  auto s = parse_series(json::object());
  REQUIRE(std::holds_alternative<series_spec>(s));
  CHECK(std::get<series_spec>(s).metric.empty());
  CHECK(std::get<series_spec>(s).limit == 10000);
  auto s2 = parse_series(json::parse(R"({"metric":"m","where":{"a":"b"},"limit":5})"));
  REQUIRE(std::holds_alternative<series_spec>(s2));
  CHECK(std::get<series_spec>(s2).limit == 5);
  CHECK(error_of(parse_series(json::parse(R"({"limit":0})"))));
  CHECK(error_of(parse_series(json::parse(R"({"metric":"a b"})"))));
  CHECK(error_of(parse_series(json::parse(R"({"where":5})"))));
}

TEST_CASE("group keys sort by tag values, absent first") {
  using v = std::vector<std::optional<std::string>>;
  CHECK(encode_group_key(v{std::nullopt}) < encode_group_key(v{""}));
  CHECK(encode_group_key(v{"a"}) < encode_group_key(v{"ab"}));
  CHECK(encode_group_key(v{"a", "z"}) < encode_group_key(v{"ab", "a"}));
  CHECK(encode_group_key(v{std::string("a\0", 2)}) < encode_group_key(v{"a\x01"}));
  CHECK(encode_group_key(v{"a"}) < encode_group_key(v{std::string("a\0", 2)}));
  CHECK(encode_group_key(v{"a", std::nullopt}) != encode_group_key(v{std::nullopt, "a"}));
}

TEST_CASE("render_query shape") {
  auto tiers = default_tiers();
  ddsketch_mapping m;
  auto q = std::get<query_spec>(parse_query(
    json::parse(R"({"metric":"m","step":"10s","aggs":["count","p99","avg"],"group_by":["region"]})"),
    now, tiers));
  query_partial p;
  auto add = [&](std::optional<std::string> region, millis t, double v) {
    std::vector<std::optional<std::string>> values{region};
    auto& g = p.groups[encode_group_key(values)];
    g.values = values;
    g.points[t].add(t, v, m);
  };
  add("us", now - 10'000, 3.5);
  add("eu", now - 20'000, 1);
  add("eu", now - 10'000, 2);
  add(std::nullopt, now - 10'000, 4);
  p.groups[encode_group_key({std::string{"empty"}})].values = {"empty"};
  json out;
  render_query(q, p, tiers, m, {}, out);
  auto expected = json::parse(R"({"ok":true,"step":10000,"tier":"1s","partial":false,"series":[
    {"tags":{},"points":[{"t":1764189990000,"count":1,"p99":4.0,"avg":4.0}]},
    {"tags":{"region":"eu"},"points":[{"t":1764189980000,"count":1,"p99":1.0,"avg":1.0},
                                     {"t":1764189990000,"count":1,"p99":2.0,"avg":2.0}]},
    {"tags":{"region":"us"},"points":[{"t":1764189990000,"count":1,"p99":3.5,"avg":3.5}]}]})");
  CHECK(out == expected);
  CHECK(out["series"][0]["points"][0]["count"].is_number_integer());
  // The text renderer writes the same document, plus the echoed id.
  std::string text;
  json id = {{"req", 7}};
  render_query_text(q, p, tiers, m, {}, &id, text);
  auto with_id = expected;
  with_id["id"] = id;
  CHECK(json::parse(text) == with_id);
  // Empty, partial.
  query_partial none;
  render_query(q, none, tiers, m, coverage{{3, 5}}, out);
  CHECK(out == json::parse(R"({"ok":true,"step":10000,"tier":"1s","partial":true,
                               "missing_partitions":[3,5],"series":[]})"));
  text.clear();
  render_query_text(q, none, tiers, m, coverage{{3, 5}}, nullptr, text);
  CHECK(json::parse(text) == out);
}

TEST_CASE("partial merge folds groups and points") {
  ddsketch_mapping m;
  query_partial a, b;
  auto key = encode_group_key({std::string{"x"}});
  a.groups[key].values = {"x"};
  a.groups[key].points[0].add(0, 1, m);
  b.groups[key].values = {"x"};
  b.groups[key].points[0].add(1, 2, m);
  b.groups[key].points[1000].add(1000, 5, m);
  auto other = encode_group_key({std::nullopt});
  b.groups[other].points[0].add(0, 7, m);
  a.merge(std::move(b));
  REQUIRE(a.groups.size() == 2);
  CHECK(a.groups[key].points.size() == 2);
  CHECK(a.groups[key].points[0].count == 2);
  CHECK(a.groups[key].points[0].last == 2);
  CHECK(a.groups[other].points[0].sum == 7);
}

TEST_CASE("render_topk, render_series, render_metrics shapes") {
  auto tiers = default_tiers();
  ddsketch_mapping m;
  auto q = std::get<topk_spec>(
    parse_topk(json::parse(R"({"metric":"m","by":"path","k":2})"), now, tiers));
  topk_partial a, b;
  a.values["/home"].add(0, 1, m);
  a.values["/home"].add(0, 1, m);
  a.values["/a"].add(0, 1, m);
  b.values["/b"].add(0, 1, m);
  b.values["/home"].add(0, 1, m);
  a.merge(std::move(b));
  json out;
  render_topk(q, a, m, {}, out);
  CHECK(out == json::parse(R"({"ok":true,"partial":false,"top":[{"tag":"/home","value":3},{"tag":"/a","value":1}]})"));

  series_partial sa, sb;
  sa.keys = {make_series_key("m", {{"b", "2"}}), make_series_key("a", {})};
  sb.keys = {make_series_key("m", {{"a", "1"}})};
  sa.merge(std::move(sb));
  series_spec sq;
  sq.limit = 2;
  render_series(sq, sa, {}, out);
  CHECK(out["ok"] == true);
  CHECK(out["truncated"] == true);
  CHECK(out["series"] == json::parse(R"([{"metric":"a","tags":{}},{"metric":"m","tags":{"a":"1"}}])"));
  sq.limit = 10;
  render_series(sq, sa, {}, out);
  CHECK(out["truncated"] == false);
  CHECK(out["series"].size() == 3);

  metrics_partial ma, mb;
  ma.metrics["b"] = 2;
  mb.metrics["b"] = 1;
  mb.metrics["a"] = 5;
  ma.merge(std::move(mb));
  render_metrics(ma, {}, out);
  CHECK(out["metrics"] == json::parse(R"([{"name":"a","series":5},{"name":"b","series":3}])"));
  CHECK(out["ok"] == true);
}

}
