#include "promql/http_api.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>

using namespace cairn::promql;
using nlohmann::json;

namespace {

constexpr millis now = 1'764'190'000'000;

/// Answers series/metrics requests from a fixed list; queries with no data.
cairn_call fake_cairn(std::vector<json>* seen = nullptr) {
  return [seen](json req, cairn_reply done) {
    if (seen)
      seen->push_back(req);
    std::string op = req["op"];
    if (op == "metrics")
      return done({{"ok", true},
                   {"metrics", {{{"name", "up"}, {"series", 2}}, {{"name", "cpu.load"}, {"series", 1}}}}});
    if (op == "series") {
      json all = {{{"metric", "up"}, {"tags", {{"job", "api"}, {"instance", "a"}}}},
                  {{"metric", "up"}, {"tags", {{"job", "db"}, {"instance", "b"}}}},
                  {{"metric", "cpu.load"}, {"tags", {{"host", "h\"1"}}}}};
      json out = json::array();
      for (auto& s : all) {
        if (req.contains("metric") && s["metric"] != req["metric"])
          continue;
        bool ok = true;
        for (auto& [k, v] : req["where"].items())
          ok = ok && s["tags"].value(k, "") == v;
        if (ok)
          out.push_back(s);
      }
      return done({{"ok", true}, {"series", out}, {"truncated", false}});
    }
    done({{"ok", true}, {"series", json::array()}});
  };
}

struct harness {
  std::vector<json> seen;
  prometheus_api api{api_options{engine_options{}, [] { return now; }, "0.1.0"},
                     fake_cairn(&seen)};

  std::pair<int, json> get(const std::string& path, const std::string& query = "") {
    return call({"GET", path, query, "", ""});
  }

  std::pair<int, json> call(const api_request& r) {
    std::pair<int, json> out{0, nullptr};
    api.handle(r, [&](api_response a) {
      out.first = a.status;
      out.second = json::parse(a.body);
    });
    REQUIRE(out.first != 0);
    return out;
  }
};

} // namespace

TEST_SUITE("promql.http_api") {

TEST_CASE("form decoding") {
  form_params p;
  REQUIRE(decode_form("query=sum%28up%29+by+%28job%29&match[]=a&match%5B%5D=b&x", p));
  CHECK(p["query"] == std::vector<std::string>{"sum(up) by (job)"});
  CHECK(p["match[]"] == std::vector<std::string>{"a", "b"});
  CHECK(p["x"] == std::vector<std::string>{""});
  form_params bad;
  CHECK_FALSE(decode_form("q=%2", bad));
  CHECK_FALSE(decode_form("q=%zz", bad));
}

TEST_CASE("times and steps") {
  CHECK(parse_time("1764190000") == now);
  CHECK(parse_time("1764190000.123") == now + 123);
  CHECK(parse_time("2025-11-26T20:46:40Z") == 1764190000000);
  CHECK(parse_time("2025-11-26T20:46:40.5Z") == 1764190000500);
  CHECK(parse_time("2025-11-26T21:46:40+01:00") == 1764190000000);
  CHECK(parse_time("1970-01-01T00:00:00Z") == 0);
  CHECK_FALSE(parse_time("yesterday"));
  CHECK_FALSE(parse_time("2025-13-26T20:46:40Z"));
  CHECK_FALSE(parse_time("2025-11-26T20:46:40"));
  CHECK(parse_step("15") == 15000);
  CHECK(parse_step("0.5") == 500);
  CHECK(parse_step("1m30s") == 90000);
  CHECK_FALSE(parse_step("0"));
  CHECK_FALSE(parse_step("-5"));
  CHECK_FALSE(parse_step("abc"));
}

TEST_CASE("values and envelopes") {
  CHECK(format_value(1) == "1");
  CHECK(format_value(0.1) == "0.1");
  CHECK(format_value(1e-5) == "0.00001");
  CHECK(format_value(1e21) == "1000000000000000000000");
  CHECK(format_value(-2.5) == "-2.5");
  CHECK(format_value(std::numeric_limits<double>::quiet_NaN()) == "NaN");
  CHECK(format_value(std::numeric_limits<double>::infinity()) == "+Inf");
  CHECK(format_value(-std::numeric_limits<double>::infinity()) == "-Inf");

  query_value v;
  v.type = query_value::kind::matrix;
  v.series.push_back({{{"__name__", "up"}, {"job", "a"}}, {{now, 1}, {now + 1500, 0.25}}});
  v.warnings.push_back("w");
  auto j = json::parse(render_value(v));
  CHECK(j["status"] == "success");
  CHECK(j["data"]["resultType"] == "matrix");
  CHECK(j["data"]["result"][0]["metric"]["job"] == "a");
  CHECK(j["data"]["result"][0]["values"][1][0].get<double>() == 1764190001.5);
  CHECK(j["data"]["result"][0]["values"][1][1] == "0.25");
  CHECK(j["warnings"][0] == "w");
  v.type = query_value::kind::vector;
  j = json::parse(render_value(v));
  CHECK(j["data"]["result"][0]["value"][1] == "1");
  v.type = query_value::kind::scalar;
  v.scalar = 2;
  v.time = now;
  j = json::parse(render_value(v));
  CHECK(j["data"]["result"] == json::parse("[1764190000,\"2\"]"));
  // The hand-written writer gives nlohmann's bytes: labels in order, plain
  // ones as they are, anything to escape (quotes, control characters,
  // UTF-8, invalid UTF-8, unsorted or repeated names) as nlohmann writes it.
  auto reference = [](const label_set& ls) {
    json m = json::object();
    for (auto& [k, val] : ls)
      m[k] = val;
    return m.dump(-1, ' ', false, json::error_handler_t::replace);
  };
  for (label_set ls : std::vector<label_set>{
         {},
         {{"__name__", "up"}, {"job", "a"}},
         {{"a", "x\"y"}, {"b", "back\\slash"}},
         {{"a", "tab\tnew\nline"}, {"z", "\x01"}},
         {{"host", "h\xc3\xa9"}, {"k", "\xff\xfe"}},
         {{"b", "1"}, {"a", "2"}},
         {{"a", "1"}, {"a", "2"}}}) {
    query_value one;
    one.type = query_value::kind::matrix;
    one.series.push_back({ls, {{now - 250, 0.5}, {now + 10, 3}, {now + 100, -1e-7}}});
    auto text = render_value(one);
    CAPTURE(text);
    auto metric = text.find("\"metric\":") + 9;
    auto values = text.find(",\"values\":");
    CHECK(text.substr(metric, values - metric) == reference(ls));
    CHECK(text.substr(values) == ",\"values\":[[1764189999.75,\"0.5\"],[1764190000.01,\"3\"],"
                                 "[1764190000.1,\"-0.0000001\"]]}]}}");
  }
  auto e = json::parse(render_problem({error_type::bad_data, "x \"y\""}));
  CHECK(e == json{{"status", "error"}, {"errorType", "bad_data"}, {"error", "x \"y\""}});
}

TEST_CASE("query endpoints: GET, POST form, errors") {
  harness h;
  auto [st, j] = h.get("/api/v1/query", "query=1%2B1&time=1764190000");
  CHECK(st == 200);
  CHECK(j["data"]["resultType"] == "scalar");
  CHECK(j["data"]["result"][1] == "2");

  auto [pst, pj] = h.call({"POST", "/api/v1/query", "",
                           "query=up%7Bjob%3D%22api%22%7D&time=2025-11-26T20%3A46%3A40Z",
                           "application/x-www-form-urlencoded; charset=UTF-8"});
  CHECK(pst == 200);
  CHECK(pj["data"]["resultType"] == "vector");
  REQUIRE(h.seen.size() >= 1);
  CHECK(h.seen[0]["where"] == json{{"job", "api"}});

  auto [rst, rj] = h.get("/api/v1/query_range",
                         "query=up&start=1764189000&end=1764190000&step=1m");
  CHECK(rst == 200);
  CHECK(rj["data"]["resultType"] == "matrix");
  // Data over 15 minutes old sits in the 1 m tier: a 15 s step is refused.
  auto [fst, fj] = h.get("/api/v1/query_range",
                         "query=up&start=1764189000&end=1764190000&step=15");
  CHECK(fst == 400);
  CHECK(fj["error"].get<std::string>().find("step 15s is not a multiple of 1m")
        != std::string::npos);

  auto [ust, uj] = h.get("/api/v1/query", "query=histogram_quantile(0.9,x)");
  CHECK(ust == 400);
  CHECK(uj["errorType"] == "bad_data");
  CHECK(uj["error"].get<std::string>().find("unsupported function: histogram_quantile")
        != std::string::npos);
  CHECK(h.get("/api/v1/query", "query=up+%2B+1").second["error"].get<std::string>().find(
          "unsupported operator: +")
        != std::string::npos);
  CHECK(h.get("/api/v1/query", "").first == 400);
  CHECK(h.get("/api/v1/query", "query=up&time=soon").first == 400);
  CHECK(h.get("/api/v1/query_range", "query=up&start=10&end=5&step=1").first == 400);
  CHECK(h.get("/api/v1/query_range", "query=up&start=1&end=5").first == 400);
  CHECK(h.get("/api/v1/query_range", "query=up&start=0&end=100000&step=1").first == 400);
  CHECK(h.get("/api/v1/query", "query=%zz").first == 400);
  CHECK(h.call({"DELETE", "/api/v1/query", "query=up", "", ""}).first == 405);
  auto [nst, nj] = h.get("/api/v1/nope");
  CHECK(nst == 404);
  CHECK(nj["errorType"] == "not_found");
}

TEST_CASE("labels, label values, series, buildinfo") {
  harness h;
  auto [st, j] = h.get("/api/v1/labels");
  CHECK(st == 200);
  CHECK(j["data"] == json{"__name__", "host", "instance", "job"});
  CHECK(h.get("/api/v1/label/__name__/values").second["data"] == json{"cpu.load", "up"});
  CHECK(h.get("/api/v1/label/job/values").second["data"] == json{"api", "db"});
  CHECK(h.get("/api/v1/label/job/values", "match[]=up%7Binstance%3D~%22a%7Cc%22%7D")
          .second["data"]
        == json{"api"});
  auto [sst, sj] = h.get("/api/v1/series", "match[]=up%7Bjob!%3D%22api%22%7D&match[]=%7B__name__%3D%22cpu.load%22%7D");
  CHECK(sst == 200);
  REQUIRE(sj["data"].size() == 2);
  CHECK(sj["data"][0] == json{{"__name__", "cpu.load"}, {"host", "h\"1"}});
  CHECK(sj["data"][1] == json{{"__name__", "up"}, {"instance", "b"}, {"job", "db"}});
  CHECK(h.get("/api/v1/series").first == 400);
  CHECK(h.get("/api/v1/series", "match[]=rate(x%5B1m%5D)").first == 400);
  auto [bst, bj] = h.get("/api/v1/status/buildinfo");
  CHECK(bst == 200);
  CHECK(bj["data"]["version"] == "2.42.0");
  CHECK(bj["data"]["revision"] == "cairn-0.1.0");
  CHECK(h.get("/api/v1/metadata").second["status"] == "success");
  CHECK(h.get("/api/v1/query_exemplars").second["data"] == json::array());
  CHECK(h.get("/api/v1/rules").second["data"]["groups"] == json::array());
  CHECK(h.get("/api/v1/alerts").second["data"]["alerts"] == json::array());
}

}
