#include "promql/parser.hpp"

#include <doctest/doctest.h>

#include <cmath>

using namespace cairn::promql;

namespace {

expr ok(std::string_view text) {
  auto r = parse(text);
  if (auto* p = std::get_if<problem>(&r))
    FAIL("parse failed for " << text << ": " << p->message);
  return std::get<expr>(r);
}

std::string error_of(std::string_view text) {
  auto r = parse(text);
  auto* p = std::get_if<problem>(&r);
  if (!p)
    return "<parsed>";
  CHECK(p->type == error_type::bad_data);
  return p->message;
}

} // namespace

TEST_SUITE("promql.parser") {

TEST_CASE("durations") {
  CHECK(parse_duration("15s") == 15000);
  CHECK(parse_duration("1m30s") == 90000);
  CHECK(parse_duration("500ms") == 500);
  CHECK(parse_duration("2h") == 7200000);
  CHECK(parse_duration("1d") == 86400000);
  CHECK(parse_duration("1w") == 7 * 86400000LL);
  CHECK_FALSE(parse_duration(""));
  CHECK_FALSE(parse_duration("0s"));
  CHECK_FALSE(parse_duration("5"));
  CHECK_FALSE(parse_duration("1s1m"));  // units must descend
  CHECK_FALSE(parse_duration("5x"));
}

TEST_CASE("selectors and matchers") {
  auto e = ok(R"(http_requests{job="api", code!="500", path=~"/a.*", env!~'dev|test'})");
  auto& s = std::get<selector>(e.node);
  CHECK(s.metric == "http_requests");
  CHECK(s.range == 0);
  REQUIRE(s.matchers.size() == 4);
  CHECK(s.matchers[0].op == match_op::equal);
  CHECK(s.matchers[1].op == match_op::not_equal);
  CHECK(s.matchers[2].op == match_op::regex);
  CHECK(s.matchers[3].op == match_op::not_regex);
  // Regexes are anchored at both ends, as in Prometheus.
  CHECK(s.matchers[2].matches("/abc"));
  CHECK_FALSE(s.matchers[2].matches("x/abc"));
  CHECK(s.matchers[3].matches("prod"));
  CHECK_FALSE(s.matchers[3].matches("dev"));
  CHECK_FALSE(s.matchers[3].matches("test"));
  CHECK(s.matchers[3].matches("devx"));

  auto r = ok(R"({__name__="cpu.load", host="a"}[5m])");
  auto& rs = std::get<selector>(r.node);
  CHECK(rs.metric == "cpu.load");  // Cairn names with dots via __name__
  CHECK(rs.range == 300000);
  CHECK(rs.matchers.size() == 1);
  CHECK(ok("up[1m30s]").node.index() == 1);
  CHECK(ok("job:rate5m").node.index() == 1);
}

TEST_CASE("functions and aggregations") {
  auto e = ok("sum by (job) (rate(http_requests[5m]))");
  auto& a = std::get<aggregate_expr>(e.node);
  CHECK(a.op == aggregation::sum);
  CHECK_FALSE(a.without);
  CHECK(a.labels == std::vector<std::string>{"job"});
  auto& c = std::get<call_expr>(a.inner->node);
  CHECK(c.fn == function::rate);
  CHECK(c.arg.range == 300000);

  auto w = ok("max(max_over_time(m[1m])) without (instance, pod)");
  auto& wa = std::get<aggregate_expr>(w.node);
  CHECK(wa.without);
  CHECK(wa.labels.size() == 2);

  auto q = ok("quantile_over_time(0.99, latency{svc=\"a\"}[10m])");
  auto& qc = std::get<call_expr>(q.node);
  CHECK(qc.fn == function::quantile_over_time);
  CHECK(qc.phi == 0.99);
  CHECK(qc.arg.matchers.size() == 1);

  for (auto f : {"sum_over_time", "avg_over_time", "min_over_time", "max_over_time",
                 "count_over_time", "last_over_time", "increase"})
    CHECK(ok(std::string(f) + "(m[1m])").node.index() == 2);
  CHECK(ok("count(m)").node.index() == 3);
  CHECK(ok("avg(m)").node.index() == 3);
  CHECK(ok("min by (a) (m)").node.index() == 3);
}

TEST_CASE("number literals fold") {
  CHECK(std::get<number_expr>(ok("1+1").node).value == 2);
  CHECK(std::get<number_expr>(ok("2 * (3 + 4) - 1").node).value == 13);
  CHECK(std::get<number_expr>(ok("2^3^2").node).value == 512);
  CHECK(std::get<number_expr>(ok("-2^2").node).value == -4);
  CHECK(std::get<number_expr>(ok("0x10").node).value == 16);
  CHECK(std::get<number_expr>(ok("1e3").node).value == 1000);
  CHECK(std::isinf(std::get<number_expr>(ok("Inf").node).value));
}

TEST_CASE("unsupported parts are named") {
  CHECK(error_of("histogram_quantile(0.9, rate(m[5m]))")
        == "unsupported function: histogram_quantile");
  CHECK(error_of("abs(m)") == "unsupported function: abs");
  CHECK(error_of("m + 1") == "unsupported operator: +");
  CHECK(error_of("rate(a[1m]) / rate(b[1m])") == "unsupported operator: /");
  CHECK(error_of("a and b") == "unsupported operator: and");
  CHECK(error_of("m > 5") == "unsupported operator: >");
  CHECK(error_of("1 == bool 1") == "unsupported operator: == bool");
  CHECK(error_of("-m") == "unsupported operator: unary -");
  CHECK(error_of("topk(3, m)") == "unsupported aggregation: topk");
  CHECK(error_of("quantile(0.9, m)") == "unsupported aggregation: quantile");
  CHECK(error_of("m offset 5m") == "unsupported modifier: offset");
  CHECK(error_of("m @ 100") == "unsupported modifier: @");
  CHECK(error_of("rate(m[5m:1m])") == "unsupported subquery");
  CHECK(error_of("max_over_time(rate(m[1m])[5m:])").find("unsupported") == 0);
  CHECK(error_of("{job=\"a\"}").find("selector without a metric name") != std::string::npos);
  CHECK(error_of("{__name__=~\"a.*\"}").find("matcher on __name__") != std::string::npos);
  CHECK(error_of("\"text\"") == "unsupported expression: string literal");
}

TEST_CASE("syntax and type errors") {
  CHECK(error_of("sum(").find("parse error at char 5") == 0);
  CHECK(error_of("m{a=\"b\"").find("parse error") == 0);
  CHECK(error_of("m{a=b}").find("expected a quoted label value") != std::string::npos);
  CHECK(error_of("m[5x]").find("bad range duration") != std::string::npos);
  CHECK(error_of("rate(m)").find("expected type range vector") == 0);
  CHECK(error_of("sum(m[5m])").find("got range vector") != std::string::npos);
  CHECK(error_of("m{a=~\"(\"}").find("invalid regular expression") == 0);
  CHECK(error_of("5m").find("outside of a range") != std::string::npos);
  CHECK(error_of("m m").find("expected end of input") != std::string::npos);
  CHECK(error_of("").find("parse error") == 0);
  // Hostile input: bounded nesting and regex size, never a crash.
  CHECK(error_of(std::string(100000, '(') + "1" + std::string(100000, ')'))
        .find("nested deeper than") != std::string::npos);
  CHECK(error_of("m{a=~\"" + std::string(5000, 'a') + "\"}").find("longer than") != std::string::npos);
  CHECK(error_of(std::string(1000, '-') + "1") == "expression nested deeper than 200 levels");
}

TEST_CASE("lone selectors for match[]") {
  auto s = parse_selector("{job=\"a\"}");
  REQUIRE(std::holds_alternative<selector>(s));
  CHECK(std::get<selector>(s).metric.empty());
  CHECK(std::holds_alternative<problem>(parse_selector("{}")));
  CHECK(std::holds_alternative<problem>(parse_selector("rate(m[1m])")));
  CHECK(std::get<selector>(parse_selector("up")).metric == "up");
}

}
