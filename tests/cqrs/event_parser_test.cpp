#include "cqrs/event_parser.hpp"
#include "cqrs/series_key.hpp"

#include <doctest/doctest.h>

using namespace cairn::cqrs;

namespace {

constexpr millis now = 1'764'190'000'000;

struct bad_case {
  const char* name;
  std::string line;
  error_code code;
  const char* message; ///< substring of the message
};

} // namespace

TEST_SUITE("cqrs.event_parser") {

TEST_CASE("happy path with defaults") {
  event_parser p;
  event_batch out;
  auto r = p.parse_line(R"({"metric":"http.latency_ms"})", now, out);
  REQUIRE(r.kind == line_kind::event);
  REQUIRE(out.size() == 1);
  CHECK(out.entries[0].ts == now);
  CHECK(out.entries[0].value == 1);
  CHECK(out.key(out.entries[0]) == "http.latency_ms");
  CHECK(out.entries[0].hash == series_hash("http.latency_ms"));
}

TEST_CASE("a series seen before yields what it yields to a new parser") {
  // The second and later lines of a series are answered from the key cache
  // (cqrs/key_cache.hpp) after a skimming pass; lines that share the metric
  // and the raw "tags" of a cached series but differ elsewhere must not be
  // taken for it.
  const std::vector<std::string> lines = {
    R"({"metric":"cpu","tags":{"dc":"x"}})",
    R"({"metric":"cpu","tags":{"dc":"x"}})",
    R"({"metric":"cpu","tags":{"host":"a"},"tags":{"dc":"x"}})",
    R"({"metric":"cpu","tags":{"dc":"x"},"tags":{"host":"a"}})",
    R"({"metric":"cpu","tags":{"dc":"x"}})",
    R"({"metric":"cpu","tags":{"dc":"x"},"ts":1})",
    R"({"metric":"cpu","tags":{"dc":"x"},"value":"x"})",
    R"({"metric":"cpu","tags":{"dc":"x"},"op":"stats"})",
    R"({"metric":"cpu","tags":{"dc":"x"},"metric":"mem"})",
    R"({"metric":"cpu","tags":{"dc":"x"}} x)",
  };
  event_parser warm;
  for (int round = 0; round < 2; ++round)
    for (auto& line : lines) {
      CAPTURE(line);
      event_parser cold;
      event_batch a, b;
      auto x = warm.parse_line(line, now, a);
      auto y = cold.parse_line(line, now, b);
      CHECK(x.kind == y.kind);
      CHECK(x.op == y.op);
      CHECK(x.error.message == y.error.message);
      REQUIRE(a.size() == b.size());
      if (a.size() == 1) {
        CHECK(a.key(a.entries[0]) == b.key(b.entries[0]));
        CHECK(a.entries[0].hash == b.entries[0].hash);
      }
    }
  event_batch out;
  warm.parse_line(lines[2], now, out);
  warm.parse_line(lines[3], now, out);
  warm.parse_line(lines[4], now, out);
  auto both = make_series_key("cpu", {{"dc", "x"}, {"host", "a"}});
  REQUIRE(out.size() == 3);
  CHECK(out.key(out.entries[0]) == both);
  CHECK(out.key(out.entries[1]) == both);
  CHECK(out.key(out.entries[2]) == make_series_key("cpu", {{"dc", "x"}}));
}

TEST_CASE("tags are sorted into the key regardless of input order") {
  event_parser p;
  event_batch out;
  auto a = p.parse_line(
    R"({"tags":{"service":"api","region":"eu"},"value":12.5,"ts":1764190000123,"metric":"m","extra":[1,{"x":null}]})",
    now, out);
  auto b = p.parse_line(
    R"({"metric":"m","ts":1764190000123,"value":-3,"tags":{"region":"eu","service":"api"}}  )",
    now, out);
  REQUIRE(a.kind == line_kind::event);
  REQUIRE(b.kind == line_kind::event);
  REQUIRE(out.size() == 2);
  auto expected = make_series_key("m", {{"service", "api"}, {"region", "eu"}});
  CHECK(out.key(out.entries[0]) == expected);
  CHECK(out.key(out.entries[1]) == expected);
  CHECK(out.entries[0].hash == series_hash(expected));
  CHECK(out.entries[0].ts == 1'764'190'000'123);
  CHECK(out.entries[0].value == 12.5);
  CHECK(out.entries[1].value == -3);
}

TEST_CASE("escapes, unicode and limits at the edge are accepted") {
  event_parser p;
  event_batch out;
  std::string key128(128, 'k');
  std::string tags = "{";
  for (int i = 0; i < 16; ++i)
    tags += (i ? "," : "") + std::string{"\"t"} + std::to_string(i) + "\":\"\"";
  tags += "}";
  for (auto line : {
         std::string{R"({"metric":"a\u002db","tags":{"city":"Zürich \"x\""}})"},
         R"({"metric":")" + std::string(200, 'm') + "\"}",
         R"({"metric":"m","tags":{")" + key128 + R"(":")" + key128 + "\"}}",
         R"({"metric":"m","tags":)" + tags + "}",
         std::string{R"({"metric":"m","ts":1764189000000,"value":1e300})"},
         std::string{"{\"metric\":\"m\"}\r"},
         std::string{R"({"metric":"A-z_0.9:/x","value":0})"},
       }) {
    auto r = p.parse_line(line, now, out);
    CHECK_MESSAGE(r.kind == line_kind::event, line, " -> ", r.error.message);
  }
  CHECK(series_metric(out.key(out.entries[0])) == "a-b");
}

TEST_CASE("blank lines") {
  event_parser p;
  event_batch out;
  for (auto line : {"", " ", "\r", " \t\r", "\n"})
    CHECK(p.parse_line(line, now, out).kind == line_kind::blank);
  CHECK(out.empty());
}

TEST_CASE("request lines are recognized by op") {
  event_parser p;
  event_batch out;
  auto r = p.parse_line(R"({"op":"query","metric":"m","id":7})", now, out);
  CHECK(r.kind == line_kind::request);
  CHECK(r.op == "query");
  r = p.parse_line(R"({"id":1,"op":"flush"})", now, out);
  CHECK(r.kind == line_kind::request);
  CHECK(r.op == "flush");
  r = p.parse_line(R"({"op":5})", now, out);
  CHECK(r.kind == line_kind::request);
  CHECK(r.op.empty());
  // Event validation does not apply to requests.
  r = p.parse_line(R"({"op":"ingest","metric":"bad metric!","ts":1.5})", now, out);
  CHECK(r.kind == line_kind::request);
  CHECK(out.empty());
  // ...but JSON validity does.
  r = p.parse_line(R"({"op":"ping",})", now, out);
  CHECK(r.kind == line_kind::error);
  CHECK(r.error.code == error_code::bad_request);
}

TEST_CASE("every validation error") {
  std::string deep = R"({"metric":"m","x":)" + std::string(100, '[')
                     + std::string(100, ']') + "}";
  std::string very_deep = R"({"metric":"m","x":)" + std::string(100000, '[')
                          + std::string(100000, ']') + "}";
  std::string many_tags = R"({"metric":"m","tags":{)";
  for (int i = 0; i < 17; ++i)
    many_tags += (i ? "," : "") + std::string{"\"t"} + std::to_string(i) + "\":\"v\"";
  many_tags += "}}";
  auto ec_bad = error_code::bad_request;
  auto ec_inv = error_code::invalid_event;
  bad_case cases[] = {
    {"bad JSON", R"({"metric":"m",)", ec_bad, "invalid JSON"},
    {"bad JSON 2", R"({"metric" "m"})", ec_bad, "invalid JSON"},
    {"unterminated", R"({"metric":"m)", ec_bad, "invalid JSON"},
    {"truncated", R"({"metric":"m")", ec_bad, "invalid JSON"},
    {"trailing garbage", R"({"metric":"m"} x)", ec_bad, "invalid JSON"},
    {"two objects", R"({"metric":"m"}{"metric":"n"})", ec_bad, "invalid JSON"},
    {"bad atom in unknown field", R"({"metric":"m","x":[tru]})", ec_bad, "invalid JSON"},
    {"array", R"([{"metric":"m"}])", ec_bad, "not a JSON object"},
    {"string", R"("metric")", ec_bad, "not a JSON object"},
    {"number", "42", ec_bad, "not a JSON object"},
    {"garbage", "hello world", ec_bad, ""},
    {"missing metric", R"({"value":1})", ec_inv, "missing \"metric\""},
    {"metric not string", R"({"metric":5})", ec_inv, "metric must be a string"},
    {"empty metric", R"({"metric":""})", ec_inv, "metric is empty"},
    {"bad metric chars", R"({"metric":"http latency"})", ec_inv, "invalid character ' '"},
    {"bad metric chars 2", R"({"metric":"m\u0000"})", ec_inv, "invalid character byte 0x00"},
    {"bad metric unicode", R"({"metric":"tempé"})", ec_inv, "invalid character"},
    {"too long metric", R"({"metric":")" + std::string(201, 'm') + "\"}", ec_inv,
     "longer than 200"},
    {"ts float", R"({"metric":"m","ts":1764190000000.5})", ec_inv, "must be an integer"},
    {"ts exponent", R"({"metric":"m","ts":1.7e12})", ec_inv, "must be an integer"},
    {"ts string", R"({"metric":"m","ts":"1764190000000"})", ec_inv, "got a string"},
    {"ts huge", R"({"metric":"m","ts":99999999999999999999})", ec_inv, "out of range"},
    {"ts huge negative", R"({"metric":"m","ts":-99999999999999999999})", ec_inv, "out of range"},
    {"ts too old", R"({"metric":"m","ts":0})", ec_inv, "older than"},
    {"ts in future", R"({"metric":"m","ts":1764190660000})", ec_inv, "in the future"},
    {"ts bad number", R"({"metric":"m","ts":12x})", ec_bad, "invalid JSON"},
    {"value NaN", R"({"metric":"m","value":NaN})", ec_bad, "invalid JSON"},
    {"value Infinity", R"({"metric":"m","value":Infinity})", ec_bad, "invalid JSON"},
    {"value string", R"({"metric":"m","value":"1"})", ec_inv, "value must be a number"},
    {"value null", R"({"metric":"m","value":null})", ec_inv, "value must be a number"},
    {"value 1e400", R"({"metric":"m","value":1e400})", ec_inv, "out of range"},
    {"value -1e400", R"({"metric":"m","value":-1e400})", ec_inv, "out of range"},
    {"tags not object", R"({"metric":"m","tags":["a","b"]})", ec_inv, "tags must be an object"},
    {"tags string", R"({"metric":"m","tags":"a=b"})", ec_inv, "tags must be an object"},
    {"tag value number", R"({"metric":"m","tags":{"a":1}})", ec_inv, "must have a string value"},
    {"tag value object", R"({"metric":"m","tags":{"a":{"b":"c"}}})", ec_inv, "must have a string value"},
    {"too many tags", many_tags, ec_inv, "more than 16 tags"},
    {"empty tag key", R"({"metric":"m","tags":{"":"v"}})", ec_inv, "must not be empty"},
    {"too long tag key", R"({"metric":"m","tags":{")" + std::string(129, 'k') + R"(":"v"}})",
     ec_inv, "longer than 128 bytes"},
    {"too long tag value", R"({"metric":"m","tags":{"k":")" + std::string(129, 'v') + R"("}})",
     ec_inv, "longer than 128 bytes"},
    {"duplicate tag key", R"({"metric":"m","tags":{"k":"a","k":"b"}})", ec_inv, "duplicate tag key"},
    {"invalid UTF-8", "{\"metric\":\"m\",\"tags\":{\"k\":\"\xff\xfe\"}}", ec_bad, "UTF-8"},
    {"invalid UTF-8 in unknown", "{\"metric\":\"m\",\"x\":\"\xc3\x28\"}", ec_bad, "UTF-8"},
    {"deep nesting", deep, ec_bad, "nested deeper"},
    {"very deep nesting", very_deep, ec_bad, "nested deeper"},
    {"nul byte", std::string("{\"metric\":\"m\"}\0", 15), ec_bad, "invalid JSON"},
  };
  event_parser p;
  event_batch out;
  for (auto& c : cases) {
    CAPTURE(c.name);
    auto r = p.parse_line(c.line, now, out);
    CHECK(r.kind == line_kind::error);
    CHECK(r.error.code == c.code);
    CHECK_MESSAGE(r.error.message.find(c.message) != std::string::npos,
                  r.error.message);
    CHECK(out.empty());
  }
  // The parser stays usable after errors.
  CHECK(p.parse_line(R"({"metric":"ok"})", now, out).kind == line_kind::event);
}

TEST_CASE("parse_event rejects op and blank") {
  event_parser p;
  event_batch out;
  auto r = p.parse_event(R"({"metric":"m","op":"ping"})", now, out);
  CHECK(r.kind == line_kind::error);
  CHECK(r.error.code == error_code::invalid_event);
  CHECK(p.parse_event("", now, out).kind == line_kind::error);
  CHECK(p.parse_event(R"({"metric":"m","value":2})", now, out).kind
        == line_kind::event);
  CHECK(out.size() == 1);
}

TEST_CASE("custom limits") {
  event_limits l;
  l.max_tags = 1;
  l.max_metric_length = 3;
  l.max_age = 1000;
  event_parser p{l};
  event_batch out;
  CHECK(p.parse_line(R"({"metric":"abcd"})", now, out).kind == line_kind::error);
  CHECK(p.parse_line(R"({"metric":"abc","tags":{"a":"1","b":"2"}})", now, out).kind
        == line_kind::error);
  CHECK(p.parse_line(R"({"metric":"abc","ts":1764189998000})", now, out).kind
        == line_kind::error);
  CHECK(p.parse_line(R"({"metric":"abc","ts":1764189999000})", now, out).kind
        == line_kind::event);
  CHECK(validate_metric("abc", l).empty());
  CHECK(!validate_metric("a b", l).empty());
}

TEST_CASE("long lines grow the buffer and stay correct") {
  event_parser p;
  event_batch out;
  std::string line = R"({"metric":"m","pad":")" + std::string(100000, 'x') + "\"}";
  CHECK(p.parse_line(line, now, out).kind == line_kind::event);
  CHECK(p.parse_line(R"({"metric":"n"})", now, out).kind == line_kind::event);
  CHECK(out.size() == 2);
}

}

TEST_SUITE("cqrs.event_parser.ingest") {

TEST_CASE("parse_ingest validates every element without a DOM") {
  event_parser p;
  event_batch out;
  const millis now = 1'764'190'000'000;
  auto r = p.parse_ingest(
    R"({"op":"ingest","id":{"a":[1,2]},"idempotency_key":"k1","events":[)"
    R"({"metric":"a","ts":1764189999000,"value":2,"tags":{"z":"1","b":"2"}},)"
    R"(17,{"metric":"bad metric"},{"metric":"b"}]})",
    now, out);
  REQUIRE(r.ok);
  CHECK(r.id == R"({"a":[1,2]})");
  CHECK(r.idempotency_key == "k1");
  CHECK(r.total == 4);
  REQUIRE(r.rejected.size() == 2);
  CHECK(r.rejected[0].first == 1);
  CHECK(r.rejected[0].second.code == error_code::invalid_event);
  CHECK(r.rejected[1].first == 2);
  REQUIRE(out.size() == 2);
  CHECK(out.key(out.entries[0]) == make_series_key("a", {{"b", "2"}, {"z", "1"}}));
  CHECK(out.entries[1].ts == now);
  CHECK(out.entries[1].value == 1);
}

TEST_CASE("parse_ingest request-level errors add nothing") {
  event_parser p;
  event_batch out;
  for (auto line : {R"({"op":"ingest"})", R"({"op":"ingest","events":{}})",
                    R"({"op":"ingest","events":[{"metric":"a"}],"idempotency_key":7})",
                    R"({"op":"ingest","events":[{"metric":"a"}],"idempotency_key":""})",
                    R"([1,2])", R"({"op":"ingest","events":[{"metric":"a"}]}x)",
                    "{\"op\":\"ingest\",\"events\":[{\"metric\":\"a\"}"}) {
    auto r = p.parse_ingest(line, 1'764'190'000'000, out);
    CHECK_MESSAGE(!r.ok, line);
    CHECK_MESSAGE(r.error.code == error_code::bad_request, line);
    CHECK_MESSAGE(out.empty(), line);
  }
  auto r = p.parse_ingest(R"({"id":5,"events":[]})", 0, out);
  CHECK(r.ok);
  CHECK(r.id == "5");
  CHECK(r.total == 0);
}

} // TEST_SUITE

TEST_SUITE("cqrs.event_parser") {
  TEST_CASE("an ingest whose event is malformed JSON is a bad request, not a crash") {
    // Found by tests/fuzz/fuzz_event_parser: simdjson abandons its iterator on
    // the malformed element and asking it for the end read a null parser.
    event_parser p;
    for (std::string line : {R"({"op":"ingest","events":[{"temric"1:"m"}]})",
                             R"({"op":"ingest","events":[{"metric":"m"},{"a":}]})"}) {
      CAPTURE(line);
      event_batch b;
      auto r = p.parse_ingest(line, 1'764'190'000'000, b);
      CHECK_FALSE(r.ok);
      CHECK(r.error.code == error_code::bad_request);
      CHECK(b.empty());
    }
    // A malformed element simdjson can still skip is rejected on its own.
    event_batch b;
    auto r = p.parse_ingest(
      R"({"op":"ingest","events":[{"metric":"m",},{"metric":"n"}],"idempotency_key":"k"})",
      1'764'190'000'000, b);
    if (r.ok) {
      REQUIRE(r.rejected.size() == 1);
      CHECK(r.rejected[0].first == 0);
      CHECK(b.size() == 1);
    } else {
      CHECK(r.error.code == error_code::bad_request);
    }
  }
}
