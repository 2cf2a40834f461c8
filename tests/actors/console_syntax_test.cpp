// The console's short read syntax (apps/cairn-console/query_syntax.hpp).
#include "../../apps/cairn-console/query_syntax.hpp"

#include <doctest/doctest.h>

using namespace cairn::console;
using nlohmann::json;

namespace {

json ok(std::string_view line) {
  auto r = parse_read(line);
  if (auto* e = std::get_if<syntax_error>(&r))
    FAIL_CHECK("unexpected error: " << render_error(line, *e));
  REQUIRE(std::holds_alternative<json>(r));
  return std::get<json>(r);
}

syntax_error bad(std::string_view line) {
  auto r = parse_read(line);
  REQUIRE_MESSAGE(std::holds_alternative<syntax_error>(r),
                  "expected an error for: " << line);
  return std::get<syntax_error>(r);
}

/// The text the error points at.
std::string pointed(std::string_view line, const syntax_error& e) {
  return std::string{line.substr(e.pos, e.len)};
}

} // namespace

TEST_SUITE("console.syntax") {

TEST_CASE("the issue's example becomes the protocol request") {
  auto q = ok("query http.latency_ms p99,avg -15m step=1m where service=api by region");
  CHECK(q == json::parse(R"({"op":"query","metric":"http.latency_ms",
    "aggs":["p99","avg"],"from":"-15m","step":"1m",
    "where":{"service":"api"},"group_by":["region"]})"));
}

TEST_CASE("only given fields are set") {
  auto q = ok("query m");
  CHECK(q == json{{"op", "query"}, {"metric", "m"}});
  q = ok("query m count from=now-1h to=now-5m");
  CHECK(q["from"] == "now-1h");
  CHECK(q["to"] == "now-5m");
  CHECK(q["aggs"] == json::array({"count"}));
  q = ok("query m from=1764190000000 by a,b where x=1 y=\"two words\"");
  CHECK(q["from"] == "1764190000000");
  CHECK(q["group_by"] == json::array({"a", "b"}));
  CHECK(q["where"] == json{{"x", "1"}, {"y", "two words"}});
}

TEST_CASE("where ends at by and at options") {
  auto q = ok("query m where a=1 b=2 step=10s");
  CHECK(q["where"].size() == 2);
  CHECK(q["step"] == "10s");
  q = ok("query m where a=1 by b -5m");
  CHECK(q["group_by"] == json::array({"b"}));
  CHECK(q["from"] == "-5m");
}

TEST_CASE("topk") {
  auto t = ok("topk http.requests by path 5 -1h where service=api");
  CHECK(t == json::parse(R"({"op":"topk","metric":"http.requests","by":"path",
    "k":5,"from":"-1h","where":{"service":"api"}})"));
  t = ok("topk m by host k=3 agg=p99");
  CHECK(t["k"] == 3);
  CHECK(t["agg"] == "p99");
  t = ok("topk m by host max");
  CHECK(t["agg"] == "max");
}

TEST_CASE("series and watch") {
  CHECK(ok("series") == json{{"op", "series"}});
  CHECK(ok("series m where a=b limit=10")
        == json::parse(R"({"op":"series","metric":"m","where":{"a":"b"},"limit":10})"));
  CHECK(ok("series where a=b")["where"] == json{{"a", "b"}});
  auto w = ok("watch m p99 step=1s");
  CHECK(w == json::parse(R"({"op":"query","metric":"m","aggs":["p99"],"step":"1s"})"));
}

TEST_CASE("errors point at the offending token") {
  std::string line = "query m p99,avx -15m";
  auto e = bad(line);
  CHECK(pointed(line, e) == "p99,avx");
  CHECK(e.message.find("avx") != std::string::npos);

  line = "query m count -15x";
  e = bad(line);
  CHECK(pointed(line, e) == "-15x");

  line = "query m step=fast";
  e = bad(line);
  CHECK(pointed(line, e) == "step=fast");
  CHECK(e.message.find("bad step") != std::string::npos);

  line = "query m where";
  e = bad(line);
  CHECK(e.pos == line.size());
  CHECK(e.message.find("tag=value") != std::string::npos);

  line = "query";
  e = bad(line);
  CHECK(e.message.find("metric") != std::string::npos);

  line = "topk m k=3";
  e = bad(line);
  CHECK(e.message.find("by TAG") != std::string::npos);

  line = "topk m by a,b";
  e = bad(line);
  CHECK(pointed(line, e) == "a,b");

  line = "query m wat=1";
  e = bad(line);
  CHECK(pointed(line, e) == "wat=1");
  CHECK(e.message.find("where") != std::string::npos);

  line = "query m -5m -10m";
  e = bad(line);
  CHECK(pointed(line, e) == "-10m");

  line = "query bad!metric";
  e = bad(line);
  CHECK(pointed(line, e) == "bad!metric");

  line = "query m where a=\"open";
  e = bad(line);
  CHECK(e.message == "unterminated quote");
}

TEST_CASE("render_error draws a caret under the token") {
  std::string line = "query m p99,avx";
  auto e = bad(line);
  auto text = render_error(line, e, "");
  CHECK(text == "query m p99,avx\n        ^^^^^^^ " + e.message);
}

TEST_CASE("tokenize keeps offsets and the raw rest of the line") {
  std::string line = R"(send p0 {"op": "stats"})";
  auto toks = std::get<std::vector<token>>(tokenize(line));
  REQUIRE(toks.size() >= 3);
  CHECK(toks[1].text == "p0");
  CHECK(rest_of_line(line, toks, 2) == R"({"op": "stats"})");
}

} // TEST_SUITE
