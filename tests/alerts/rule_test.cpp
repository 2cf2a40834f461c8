#include "alerts/rule.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

using namespace cairn::alerts;
using nlohmann::json;

namespace {

json good() {
  return json::parse(R"({"name":"api-p99","metric":"latency_ms",
    "where":{"service":"api"},"group_by":["host"],"agg":"p99","window":"5m",
    "op":">","threshold":250,"for":"2m","keep_firing_for":"30s",
    "labels":{"team":"core"},"annotations":{"summary":"p99 {{value}} on {{host}}"},
    "severity":"critical","no_data":"alerting",
    "receivers":[{"url":"http://127.0.0.1:9/hook","headers":{"X-A":"b"},"secret":"s"}]})");
}

std::string problem_of(json j) {
  auto r = parse_rule(j, 1000);
  auto* p = std::get_if<cairn::cqrs::problem>(&r);
  REQUIRE(p != nullptr);
  CHECK(p->code == cairn::cqrs::error_code::bad_request);
  return p->message;
}

} // namespace

TEST_SUITE("alerts.rule") {

TEST_CASE("a full rule parses and round-trips through to_json") {
  auto r = parse_rule(good(), 1000);
  REQUIRE(std::holds_alternative<rule>(r));
  auto& x = std::get<rule>(r);
  CHECK(x.name == "api-p99");
  CHECK(x.agg.kind == cairn::cqrs::agg_kind::quantile);
  CHECK(x.agg.quantile == doctest::Approx(0.99));
  CHECK(x.window == 300000);
  CHECK(x.for_ms == 120000);
  CHECK(x.keep_firing_for == 30000);
  CHECK(x.no_data == no_data_policy::alerting);
  CHECK(x.group_by == std::vector<std::string>{"host"});
  REQUIRE(x.receivers.size() == 1);
  CHECK(x.receivers[0].headers.at("X-A") == "b");
  auto back = parse_rule(to_json(x), 1000);
  REQUIRE(std::holds_alternative<rule>(back));
  auto& y = std::get<rule>(back);
  CHECK(y.where == x.where);
  CHECK(y.window == x.window);
  CHECK(y.receivers == x.receivers);
  CHECK(y.annotations == x.annotations);
  CHECK(to_json(y) == to_json(x));
}

TEST_CASE("defaults: op >, no for, no_data ok, 4h repeat") {
  auto r = parse_rule(json::parse(R"({"name":"n","metric":"m","agg":"count",
    "window":"1m","threshold":0})"), 1000);
  REQUIRE(std::holds_alternative<rule>(r));
  auto& x = std::get<rule>(r);
  CHECK(x.op == comparator::gt);
  CHECK(x.for_ms == 0);
  CHECK(x.no_data == no_data_policy::ok);
  CHECK(x.repeat_interval == 4 * 3600 * 1000);
  CHECK(x.receivers.empty());
}

TEST_CASE("invalid rules name the field") {
  auto with = [](const char* key, json v) {
    auto j = good();
    j[key] = v;
    return problem_of(j);
  };
  auto without = [](const char* key) {
    auto j = good();
    j.erase(key);
    return problem_of(j);
  };
  CHECK(problem_of(json::array()) == "\"rule\" must be an object");
  CHECK(without("name") == "rule.name: is required");
  CHECK(without("metric") == "rule.metric: is required");
  CHECK(without("threshold") == "rule.threshold: is required");
  CHECK(without("window").rfind("rule.window:", 0) == 0);
  CHECK(with("name", "") == "rule.name: must not be empty");
  CHECK(with("name", 5) == "rule.name: must be a string");
  CHECK(with("name", "a/b").rfind("rule.name:", 0) == 0);
  CHECK(with("agg", "p101").rfind("rule.agg:", 0) == 0);
  CHECK(with("window", "5x").rfind("rule.window: must be a duration", 0) == 0);
  CHECK(with("window", "1500ms").rfind("rule.window: must be a positive multiple", 0) == 0);
  CHECK(with("op", "=>").rfind("rule.op:", 0) == 0);
  CHECK(with("threshold", "1").rfind("rule.threshold:", 0) == 0);
  CHECK(with("for", "soon").rfind("rule.for:", 0) == 0);
  CHECK(with("no_data", "maybe").rfind("rule.no_data:", 0) == 0);
  CHECK(with("where", json{{"a", 1}}).rfind("rule.where.a:", 0) == 0);
  CHECK(with("group_by", "host").rfind("rule.group_by:", 0) == 0);
  CHECK(with("labels", json{{"a", 1}}).rfind("rule.labels.a:", 0) == 0);
  CHECK(with("repeat_interval", "10ms").rfind("rule.repeat_interval:", 0) == 0);
  CHECK(with("receivers", json::array({json{{"url", "ftp://x"}}}))
        == "rule.receivers[0].url: must be an http:// or https:// URL");
  CHECK(with("receivers", json::array({json{{"nourl", 1}}}))
        == "rule.receivers[0].url: is required");
  CHECK(with("receivers", json::array({5})).rfind("rule.receivers[0]:", 0) == 0);
}

TEST_CASE("comparators, NaN never holds") {
  CHECK(holds(comparator::gt, 2, 1));
  CHECK_FALSE(holds(comparator::gt, 1, 1));
  CHECK(holds(comparator::ge, 1, 1));
  CHECK(holds(comparator::lt, 0, 1));
  CHECK(holds(comparator::le, 1, 1));
  CHECK(holds(comparator::eq, 1, 1));
  CHECK(holds(comparator::ne, 2, 1));
  CHECK_FALSE(holds(comparator::ne, NAN, 1));
}

TEST_CASE("where, group_of and group_key") {
  auto x = std::get<rule>(parse_rule(good(), 1000));
  std::vector<cairn::cqrs::tag> tags{{"host", "h1"}, {"service", "api"}};
  CHECK(matches(x, tags));
  CHECK_FALSE(matches(x, {{"host", "h1"}, {"service", "web"}}));
  CHECK_FALSE(matches(x, {{"host", "h1"}}));
  auto g = group_of(x, tags);
  CHECK(group_key(g) == "host=h1");
  CHECK(group_key(group_of(x, {{"service", "api"}})) == "host=");
  CHECK(group_key({{"a", "x,y=z"}, {"b", "\\"}}) == "a=x\\,y\\=z,b=\\\\");
}

TEST_CASE("templates: value, name, tags, unknown kept") {
  auto x = std::get<rule>(parse_rule(good(), 1000));
  CHECK(render_template("p99 {{value}} on {{host}} ({{ name }}) {{x}}", x,
                        312.5, {{"host", "h1"}})
        == "p99 312.5 on h1 (api-p99) {{x}}");
  CHECK(render_template("{{labels.host}} {{", x, 1, {{"host", "h"}}) == "h {{");
}

}
