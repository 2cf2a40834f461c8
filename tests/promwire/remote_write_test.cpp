// promwire: remote_write bodies built here with the generated protobuf
// classes and snappy, as Prometheus builds them, decoded into events.
#include "promwire/remote_write.hpp"

#include "cqrs/series_key.hpp"

#include "remote.pb.h"

#include <doctest/doctest.h>
#include <snappy.h>

#include <bit>
#include <cmath>
#include <limits>

using namespace cairn;
using cqrs::millis;

namespace {

constexpr millis now = 1'764'190'000'000;

using labels = std::vector<std::pair<std::string, std::string>>;
using samples = std::vector<std::pair<double, millis>>;

void add_series(prometheus::WriteRequest& req, const labels& ls,
                const samples& ss) {
  auto* ts = req.add_timeseries();
  for (auto& [k, v] : ls) {
    auto* l = ts->add_labels();
    l->set_name(k);
    l->set_value(v);
  }
  for (auto& [v, t] : ss) {
    auto* s = ts->add_samples();
    s->set_value(v);
    s->set_timestamp(t);
  }
}

std::string body_of(const prometheus::WriteRequest& req) {
  std::string raw;
  REQUIRE(req.SerializeToString(&raw));
  std::string out;
  snappy::Compress(raw.data(), raw.size(), &out);
  return out;
}

struct decoded {
  promwire::remote_write_result r;
  cqrs::event_batch batch;
};

decoded decode(const std::string& body) {
  decoded d;
  d.r = promwire::decode_remote_write(body, now, cqrs::event_limits{}, d.batch);
  return d;
}

std::string metric_of(const cqrs::event_batch& b, size_t i) {
  return std::string{cqrs::series_metric(b.key(b.entries[i]))};
}

std::vector<cqrs::tag> tags_of(const cqrs::event_batch& b, size_t i) {
  std::vector<cqrs::tag> out;
  REQUIRE(cqrs::decode_series_tags(b.key(b.entries[i]), out));
  return out;
}

/// The bytes of a WriteRequest written by hand (no generated code): one
/// series {__name__="up", job="p"} with the sample (1.0, ts), field numbers
/// as in Prometheus' prompb/remote.proto and types.proto.
std::string hand_built(millis ts) {
  auto varint = [](std::string& out, uint64_t v) {
    while (v >= 0x80) {
      out += static_cast<char>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    out += static_cast<char>(v);
  };
  auto field = [&](std::string& out, int number, const std::string& bytes) {
    varint(out, static_cast<uint64_t>(number) << 3 | 2);
    varint(out, bytes.size());
    out += bytes;
  };
  auto label = [&](const std::string& k, const std::string& v) {
    std::string l;
    field(l, 1, k);
    field(l, 2, v);
    return l;
  };
  std::string sample;
  sample += static_cast<char>(1 << 3 | 1); // field 1, fixed64
  auto bits = std::bit_cast<uint64_t>(1.0);
  for (int i = 0; i < 8; ++i)
    sample += static_cast<char>((bits >> (8 * i)) & 0xff);
  varint(sample, 2 << 3 | 0); // field 2, varint
  varint(sample, static_cast<uint64_t>(ts));
  std::string series;
  field(series, 1, label("__name__", "up"));
  field(series, 1, label("job", "p"));
  field(series, 2, sample);
  std::string req;
  field(req, 1, series);
  std::string out;
  snappy::Compress(req.data(), req.size(), &out);
  return out;
}

} // namespace

TEST_SUITE("promwire.remote_write") {
  TEST_CASE("__name__ is the metric, labels are tags, ms timestamps, raw values") {
    prometheus::WriteRequest req;
    add_series(req,
               {{"__name__", "http_requests_total"},
                {"job", "api"},
                {"instance", "a:9090"}},
               {{10, now - 2000}, {13, now - 1000}});
    add_series(req, {{"__name__", "node:cpu:rate5m"}, {"mode", "idle"}},
               {{0.25, now}});
    auto d = decode(body_of(req));
    REQUIRE(d.r.ok);
    CHECK(d.r.series == 2);
    CHECK(d.r.samples == 3);
    CHECK(d.r.accepted == 3);
    CHECK(d.r.rejected == 0);
    REQUIRE(d.batch.size() == 3);
    CHECK(metric_of(d.batch, 0) == "http_requests_total");
    CHECK(tags_of(d.batch, 0)
          == std::vector<cqrs::tag>{{"instance", "a:9090"}, {"job", "api"}});
    CHECK(d.batch.entries[0].ts == now - 2000);
    CHECK(d.batch.entries[0].value == 10);
    CHECK(d.batch.entries[1].value == 13);
    CHECK(d.batch.entries[0].hash == d.batch.entries[1].hash);
    // Recording-rule names with ':' are valid Cairn metrics.
    CHECK(metric_of(d.batch, 2) == "node:cpu:rate5m");
    CHECK(d.batch.entries[2].value == 0.25);
  }

  TEST_CASE("a body written byte by byte decodes to the same event") {
    auto d = decode(hand_built(now - 5));
    REQUIRE(d.r.ok);
    REQUIRE(d.batch.size() == 1);
    CHECK(metric_of(d.batch, 0) == "up");
    CHECK(tags_of(d.batch, 0) == std::vector<cqrs::tag>{{"job", "p"}});
    CHECK(d.batch.entries[0].ts == now - 5);
    CHECK(d.batch.entries[0].value == 1.0);
  }

  TEST_CASE("an empty request (metadata only) is fine and adds nothing") {
    prometheus::WriteRequest req;
    auto d = decode(body_of(req));
    CHECK(d.r.ok);
    CHECK(d.r.samples == 0);
    CHECK(d.batch.empty());
  }

  TEST_CASE("undecodable bodies are errors that add nothing") {
    for (std::string body : {std::string{}, std::string{"hello"},
                             std::string{"\xff\xff\xff\xff\xff\xff"}}) {
      auto d = decode(body);
      CHECK_FALSE(d.r.ok);
      CHECK_FALSE(d.r.error.empty());
      CHECK(d.batch.empty());
    }
    // Valid snappy around bytes that are no WriteRequest.
    std::string junk = "\x0a\xff\xff\xff\x0f garbage", out;
    snappy::Compress(junk.data(), junk.size(), &out);
    auto d = decode(out);
    CHECK_FALSE(d.r.ok);
    CHECK(d.r.error.find("protobuf") != std::string::npos);
    // Uncompressed protobuf (a sender that forgot snappy).
    prometheus::WriteRequest req;
    add_series(req, {{"__name__", "up"}}, {{1, now}});
    std::string raw;
    REQUIRE(req.SerializeToString(&raw));
    CHECK_FALSE(decode(raw).r.ok);
    // Every truncation of a valid body fails cleanly or decodes a prefix.
    auto body = body_of(req);
    for (size_t n = 0; n < body.size(); ++n) {
      auto t = decode(body.substr(0, n));
      CHECK(t.batch.size() <= 1);
    }
  }

  TEST_CASE("a snappy header announcing a huge body is refused before expanding") {
    std::string body;
    uint64_t claimed = uint64_t{1} << 31;
    while (claimed >= 0x80) {
      body += static_cast<char>((claimed & 0x7f) | 0x80);
      claimed >>= 7;
    }
    body += static_cast<char>(claimed);
    body += "xx";
    auto d = decode(body);
    CHECK_FALSE(d.r.ok);
    CHECK(d.r.error.find("expands") != std::string::npos);
  }

  TEST_CASE("invalid series and samples are counted; the rest is stored") {
    prometheus::WriteRequest req;
    add_series(req, {{"job", "nameless"}}, {{1, now}, {2, now}});
    add_series(req, {{"__name__", "bad name"}}, {{1, now}});
    add_series(req, {{"__name__", "ok"}, {"a", "1"}, {"a", "2"}}, {{1, now}});
    add_series(req, {{"__name__", "ok"}, {"job", std::string(200, 'x')}},
               {{1, now}});
    add_series(req, {{"__name__", "ok"}},
               {{std::numeric_limits<double>::quiet_NaN(), now},
                {std::numeric_limits<double>::infinity(), now},
                {1, now - 100LL * 24 * 3600 * 1000},
                {1, now + 3600 * 1000},
                {42, now}});
    auto d = decode(body_of(req));
    REQUIRE(d.r.ok);
    CHECK(d.r.samples == 10);
    CHECK(d.r.rejected == 9);
    CHECK(d.r.accepted == 1);
    REQUIRE(d.batch.size() == 1);
    CHECK(d.batch.entries[0].value == 42);
    REQUIRE(d.r.problems.size() == 8);
    CHECK(d.r.problems[0].message.find("__name__") != std::string::npos);
    CHECK(d.r.problems[1].message.find("invalid character") != std::string::npos);
    CHECK(d.r.problems[2].message.find("duplicate label") != std::string::npos);
    CHECK(d.r.problems[3].message.find("longer than") != std::string::npos);
    CHECK(d.r.problems[4].message.find("finite") != std::string::npos);
    for (auto& p : d.r.problems)
      CHECK(p.code == cqrs::error_code::invalid_event);
  }

  TEST_CASE("problems are listed up to the limit and counted beyond it") {
    prometheus::WriteRequest req;
    for (int i = 0; i < 50; ++i)
      add_series(req, {{"__name__", "bad name"}}, {{1, now}});
    cqrs::event_batch batch;
    auto r = promwire::decode_remote_write(body_of(req), now,
                                           cqrs::event_limits{}, batch, 10);
    CHECK(r.rejected == 50);
    CHECK(r.problems.size() == 10);
  }

  TEST_CASE("stale markers are skipped without being errors") {
    auto stale = std::bit_cast<double>(uint64_t{0x7ff0000000000002});
    CHECK(std::isnan(stale));
    CHECK(promwire::is_stale_marker(stale));
    CHECK_FALSE(promwire::is_stale_marker(std::numeric_limits<double>::quiet_NaN()));
    prometheus::WriteRequest req;
    add_series(req, {{"__name__", "up"}}, {{1, now - 1000}, {stale, now}});
    auto d = decode(body_of(req));
    CHECK(d.r.stale == 1);
    CHECK(d.r.rejected == 0);
    CHECK(d.batch.size() == 1);
  }

  TEST_CASE("empty label values are dropped, as Prometheus does") {
    prometheus::WriteRequest req;
    add_series(req, {{"__name__", "up"}, {"env", ""}, {"job", "j"}}, {{1, now}});
    auto d = decode(body_of(req));
    REQUIRE(d.batch.size() == 1);
    CHECK(tags_of(d.batch, 0) == std::vector<cqrs::tag>{{"job", "j"}});
  }

  TEST_CASE("label bytes that are not UTF-8 are a tag value like any other") {
    prometheus::WriteRequest req;
    add_series(req, {{"__name__", "up"}, {"job", "\xc3\x28"}}, {{1, now}});
    auto d = decode(body_of(req));
    REQUIRE(d.batch.size() == 1);
    CHECK(tags_of(d.batch, 0) == std::vector<cqrs::tag>{{"job", "\xc3\x28"}});
  }
}
