#include "cqrs/influx_parser.hpp"

#include "cqrs/series_key.hpp"

#include <doctest/doctest.h>

#include <cmath>

using namespace cairn::cqrs;

namespace {

constexpr millis now = 1'764'190'000'000;

struct parsed {
  influx_line line;
  event_batch batch;
};

parsed parse(std::string_view text, influx_precision p = influx_precision::ns) {
  influx_parser parser;
  parsed out;
  out.line = parser.parse_line(text, now, p, out.batch);
  return out;
}

std::string metric_of(const event_batch& b, size_t i) {
  return std::string{series_metric(b.key(b.entries[i]))};
}

std::vector<tag> tags_of(const event_batch& b, size_t i) {
  std::vector<tag> out;
  REQUIRE(decode_series_tags(b.key(b.entries[i]), out));
  return out;
}

} // namespace

TEST_SUITE("cqrs.influx_parser") {
  TEST_CASE("one event per numeric field, tags sorted, ns to ms") {
    auto r = parse("cpu,host=a,region=eu usage=12.5,idle=3i,up=true 1764190000123456789");
    CHECK(r.line.problems.empty());
    REQUIRE(r.line.events == 3);
    CHECK(metric_of(r.batch, 0) == "cpu.usage");
    CHECK(metric_of(r.batch, 1) == "cpu.idle");
    CHECK(metric_of(r.batch, 2) == "cpu.up");
    CHECK(r.batch.entries[0].value == 12.5);
    CHECK(r.batch.entries[1].value == 3);
    CHECK(r.batch.entries[2].value == 1);
    CHECK(r.batch.entries[0].ts == 1764190000123);
    CHECK(tags_of(r.batch, 0) == std::vector<tag>{{"host", "a"}, {"region", "eu"}});
    // The same series key as the NDJSON event with these fields.
    CHECK(r.batch.key(r.batch.entries[0])
          == make_series_key("cpu.usage", {{"region", "eu"}, {"host", "a"}}));
  }

  TEST_CASE("a series seen before gets the key a new parser gives it") {
    // The key cache answers by (metric, measurement and tags as sent):
    // lines that share the text but not the field, or the field but not
    // the text, are other series.
    const std::vector<std::string> lines = {
      "cpu,host=a,dc=x user=1,sys=2 1764189000000000000",
      "cpu,host=a,dc=x user=3 1764189001000000000",
      "cpu,host=a,dc=x idle=4",
      "cpu,dc=x,host=a user=5",
      "cpu,host=a,dc=x b@d=6",
      "cpu,host=a,dc=x user=7 1",
      "cpu,host=a,dc=y user=8",
      "cpu\,x,host=a,dc=x user=9",
    };
    influx_parser warm;
    for (int round = 0; round < 2; ++round)
      for (auto& text : lines) {
        CAPTURE(text);
        event_batch got;
        auto r = warm.parse_line(text, now, influx_precision::ns, got);
        auto fresh = parse(text);
        CHECK(r.events == fresh.line.events);
        REQUIRE(r.problems.size() == fresh.line.problems.size());
        for (size_t i = 0; i < r.problems.size(); ++i)
          CHECK(r.problems[i].message == fresh.line.problems[i].message);
        REQUIRE(got.size() == fresh.batch.size());
        for (size_t i = 0; i < got.size(); ++i) {
          CHECK(got.key(got.entries[i]) == fresh.batch.key(fresh.batch.entries[i]));
          CHECK(got.entries[i].hash == fresh.batch.entries[i].hash);
          CHECK(got.entries[i].value == fresh.batch.entries[i].value);
        }
      }
  }

  TEST_CASE("precisions, no timestamp, negative timestamps floor") {
    CHECK(parse("m v=1 1764190000", influx_precision::s).batch.entries[0].ts
          == 1764190000000);
    CHECK(parse("m v=1 1764190000123", influx_precision::ms).batch.entries[0].ts
          == 1764190000123);
    CHECK(parse("m v=1 1764190000123999", influx_precision::us).batch.entries[0].ts
          == 1764190000123);
    CHECK(parse("m v=1").batch.entries[0].ts == now);
    CHECK(parse_influx_precision("u") == influx_precision::us);
    CHECK(parse_influx_precision("n") == influx_precision::ns);
    CHECK(parse_influx_precision("") == influx_precision::ns);
    CHECK_FALSE(parse_influx_precision("h"));
    // Floor, not truncation, below zero (checked with wide limits).
    influx_parser wide{event_limits{std::numeric_limits<millis>::max() / 2,
                                    10 * 60 * 1000, 200, 16, 128}};
    event_batch b;
    auto l = wide.parse_line("m v=1 -1", now, influx_precision::ns, b);
    REQUIRE(l.events == 1);
    CHECK(b.entries[0].ts == -1);
  }

  TEST_CASE("escaping rules of the spec") {
    auto r = parse(R"(my\ meas\,x,ta\=g\ k=v\,a\ l\=ue fi\ eld\=1=2 1764190000000000000)");
    // measurement "my meas,x" has characters a metric cannot have
    CHECK(r.line.events == 0);
    REQUIRE(r.line.problems.size() == 1);
    CHECK(r.line.problems[0].code == error_code::invalid_event);
    auto ok = parse(R"(meas,ta\=g\ k=v\,a\ l\=ue fld=2 1764190000000000000)");
    REQUIRE(ok.line.events == 1);
    CHECK(tags_of(ok.batch, 0) == std::vector<tag>{{"ta=g k", "v,a l=ue"}});
    // A backslash before anything else stays.
    auto keep = parse(R"(meas,k=a\b v=1)");
    REQUIRE(keep.line.events == 1);
    CHECK(tags_of(keep.batch, 0) == std::vector<tag>{{"k", "a\\b"}});
  }

  TEST_CASE("string fields are reported, the line's other fields count") {
    auto r = parse(R"(sys uptime=12i,format="1 day, \"x\" 3:04",load=0.5)");
    CHECK(r.line.events == 2);
    REQUIRE(r.line.problems.size() == 1);
    CHECK(r.line.problems[0].code == error_code::invalid_event);
    CHECK(r.line.problems[0].message.find("string") != std::string::npos);
    CHECK(metric_of(r.batch, 1) == "sys.load");
  }

  TEST_CASE("integer, unsigned and boolean forms") {
    auto r = parse("m a=-5i,b=18446744073709551615u,c=F,d=TRUE,e=1e3,f=-0.25");
    REQUIRE(r.line.events == 6);
    CHECK(r.batch.entries[0].value == -5);
    CHECK(r.batch.entries[1].value == 18446744073709551615.0);
    CHECK(r.batch.entries[2].value == 0);
    CHECK(r.batch.entries[3].value == 1);
    CHECK(r.batch.entries[4].value == 1000);
    CHECK(r.batch.entries[5].value == -0.25);
  }

  TEST_CASE("malformed lines add nothing and say why") {
    for (auto text : {"m", "m,", "m,k v=1", "m,k= v=1", "m v", "m v=", "m =1",
                      "m v=abc", "m v=1x", "m v=1i2", "m v=-1u", "m v=\"open",
                      "m v=1 12ab", "m v=1 1 2", ",k=v v=1", "m v=nan", "m v=inf",
                      "m v=1e400"}) {
      CAPTURE(text);
      auto r = parse(text);
      CHECK(r.line.events == 0);
      REQUIRE(r.line.problems.size() >= 1);
      CHECK(r.batch.empty());
    }
    CHECK(parse("m,k= v=1").line.problems[0].code == error_code::invalid_event);
    CHECK(parse("m v=abc").line.problems[0].code == error_code::bad_request);
  }

  TEST_CASE("the NDJSON limits apply") {
    std::string many = "m";
    for (int t = 0; t < 17; ++t)
      many += ",k" + std::to_string(t) + "=v";
    many += " v=1";
    CHECK(parse(many).line.events == 0);
    CHECK(parse("m,k=" + std::string(129, 'x') + " v=1").line.events == 0);
    CHECK(parse("m,k=a,k=b v=1").line.problems[0].message.find("duplicate")
          != std::string::npos);
    // Ten minutes ahead at most; the longest retention back at most.
    CHECK(parse("m v=1 " + std::to_string((now + 11 * 60 * 1000) * 1'000'000LL))
            .line.events == 0);
    CHECK(parse("m v=1 " + std::to_string(now - 91LL * 24 * 3600 * 1000),
                influx_precision::ms).line.events == 0);
    CHECK(parse("m" + std::string(200, 'x') + " v=1").line.events == 0);
  }

  TEST_CASE("blank lines and comments are not content") {
    CHECK_FALSE(parse("").line.content);
    CHECK_FALSE(parse("   ").line.content);
    CHECK_FALSE(parse("# a comment v=1").line.content);
    auto crlf = parse("m v=1 1764190000000000000\r");
    CHECK(crlf.line.events == 1);
  }
}
