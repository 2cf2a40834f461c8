// Line protocol and remote_write chunks through the real parser pool and
// ingestor (node::dispatch), as the /write, /api/v1/write routes and the
// influx TCP port send them; then queried back with the NDJSON query op.
#include "actors/messages.hpp"
#include "actors/node.hpp"
#include "actors/write_routes.hpp"
#include "node_fixture.hpp"
#include "cqrs/influx_parser.hpp"
#include "runtime/http_server.hpp"
#include "runtime/node_config.hpp"
#include "runtime/tcp_client.hpp"

#include "remote.pb.h"

#include <caf/actor_system.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <snappy.h>

#include <chrono>
#include <future>
#include <sstream>

using namespace cairn;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

using test::system_fixture;

struct answer {
  std::vector<json> replies;
  uint64_t accepted = 0;
  uint64_t rejected = 0;
};

/// Sends one chunk and waits for its completion.
answer roundtrip(actors::node& n, runtime::chunk c) {
  std::shared_ptr<runtime::connection_context> ctx;
  auto text = test::dispatch_and_wait(n, std::move(c), 7, &ctx);
  answer a;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);)
    a.replies.push_back(json::parse(line));
  a.accepted = ctx->accepted.load();
  a.rejected = ctx->rejected.load();
  return a;
}

runtime::chunk influx_chunk(std::string data, cqrs::influx_precision p,
                            bool replies = true) {
  runtime::chunk c;
  c.data = std::move(data);
  c.format = runtime::chunk_format::influx;
  c.precision = static_cast<uint8_t>(p);
  c.replies = replies;
  return c;
}

json query(actors::node& n, const std::string& metric, int64_t from,
           int64_t to, const std::string& step) {
  runtime::chunk c;
  c.data = json{{"op", "query"},
                {"metric", metric},
                {"from", from},
                {"to", to},
                {"step", step},
                {"aggs", {"count", "sum", "last"}},
                {"group_by", {"host"}}}
             .dump()
           + "\n";
  c.barrier = true;
  auto a = roundtrip(n, std::move(c));
  REQUIRE(a.replies.size() == 1);
  return a.replies[0];
}

std::string remote_write_body(int64_t ts, bool with_invalid) {
  prometheus::WriteRequest req;
  auto* t = req.add_timeseries();
  auto* l = t->add_labels();
  l->set_name("__name__");
  l->set_value("up");
  auto* s = t->add_samples();
  s->set_value(1);
  s->set_timestamp(ts);
  if (with_invalid)
    req.add_timeseries()->add_samples()->set_value(2); // no __name__
  std::string raw, body;
  REQUIRE(req.SerializeToString(&raw));
  snappy::Compress(raw.data(), raw.size(), &body);
  return body;
}

struct http_answer {
  int status = 0;
  json body;
};

/// One POST on a fresh connection (Connection: close, read to EOF).
http_answer post(uint16_t port, const std::string& target,
                 const std::string& body, const std::string& headers = {}) {
  test::tcp_client c{port};
  c.send("POST " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
         + headers + "Content-Length: " + std::to_string(body.size())
         + "\r\n\r\n" + body);
  c.wait_eof(10s);
  const auto& text = c.rest();
  http_answer a;
  if (text.size() > 12)
    a.status = std::stoi(text.substr(9, 3));
  if (auto p = text.find("\r\n\r\n"); p != std::string::npos && p + 4 < text.size())
    a.body = json::parse(text.substr(p + 4), nullptr, false);
  return a;
}

} // namespace

TEST_SUITE("actors.write_formats") {

TEST_CASE("HTTP statuses: 204 stored, 400 bad, 503 while the node is not ready") {
  system_fixture f;
  auto settings = actors::make_node_settings(f.cfg);
  actors::node n{*f.sys, settings};
  runtime::metrics_registry metrics;
  runtime::http_server_options opts;
  opts.port = 0;
  runtime::http_server http{opts, metrics,
                            [](std::string, runtime::http_server::reply_fn r) {
                              r(404, "{}");
                            }};
  actors::add_write_routes(http, [&n](runtime::chunk c) {
    n.dispatch(std::move(c));
  });
  http.start();
  auto port = http.port();
  auto now = cqrs::wall_clock_now();
  const std::string snappy = "Content-Encoding: snappy\r\n";
  CHECK(post(port, "/write?precision=ms", "m v=1 " + std::to_string(now)).status
        == 204);
  auto bad = post(port, "/write", "m v=1\nm v=\n");
  CHECK(bad.status == 400);
  CHECK(bad.body["lines"][0]["line"] == 2);
  CHECK(post(port, "/api/v1/write", remote_write_body(now, true), snappy).status
        == 204);
  CHECK(post(port, "/api/v1/write", "junk", snappy).status == 400);
  settings->status = actors::node_status::recovering;
  auto lp = post(port, "/write?precision=ms", "m v=1 " + std::to_string(now));
  CHECK(lp.status == 503);
  CHECK(lp.body["error"]["code"] == "unavailable");
  // Invalid samples beside the unavailable ones must not turn the answer
  // into a 400: Prometheus would drop the batch instead of retrying it.
  auto rw = post(port, "/api/v1/write", remote_write_body(now, true), snappy);
  CHECK(rw.status == 503);
  CHECK(rw.body["error"]["code"] == "unavailable");
  settings->status = actors::node_status::ready;
  http.stop();
  n.shutdown();
}


TEST_CASE("line protocol: stored fields count, problems name their lines") {
  system_fixture f;
  auto settings = actors::make_node_settings(f.cfg);
  actors::node n{*f.sys, settings};
  auto base = cqrs::align_down(cqrs::wall_clock_now() - 120'000, 60'000);
  auto s = std::to_string(base / 1000);
  auto data = "cpu,host=a usage=1.5,n=3i " + s + "\n"       // line 1
              + "\n"                                         // 2: blank
              + "cpu,host=a usage=2.5 " + s + "\n"          // 3
              + "cpu,host=b usage=4,label=\"x\" " + s + "\n" // 4: string field
              + "cpu,host=b usage=\n"                       // 5: malformed
              + "cpu,host=b usage=t " + s + "\r\n";         // 6: bool, CRLF
  auto a = roundtrip(n, influx_chunk(data, cqrs::influx_precision::s));
  REQUIRE(a.replies.size() == 2);
  CHECK(a.replies[0]["line"] == 4);
  CHECK(a.replies[0]["error"]["code"] == "invalid_event");
  CHECK(a.replies[1]["line"] == 5);
  CHECK(a.replies[1]["error"]["code"] == "bad_request");
  CHECK(a.accepted == 5);
  CHECK(a.rejected == 2);
  auto q = query(n, "cpu.usage", base, base + 60'000, "1m");
  REQUIRE(q["series"].size() == 2);
  CHECK(q["series"][0]["tags"]["host"] == "a");
  CHECK(q["series"][0]["points"][0]["t"] == base);
  CHECK(q["series"][0]["points"][0]["count"] == 2);
  CHECK(q["series"][0]["points"][0]["sum"] == 4.0);
  CHECK(q["series"][1]["points"][0]["count"] == 2);
  CHECK(q["series"][1]["points"][0]["sum"] == 5.0); // 4 + true
  auto ints = query(n, "cpu.n", base, base + 60'000, "1m");
  REQUIRE(ints["series"].size() == 1);
  CHECK(ints["series"][0]["points"][0]["last"] == 3.0);
  n.shutdown();
}

TEST_CASE("line protocol: every precision lands on the same millisecond") {
  system_fixture f;
  auto settings = actors::make_node_settings(f.cfg);
  actors::node n{*f.sys, settings};
  auto base = cqrs::align_down(cqrs::wall_clock_now() - 120'000, 60'000);
  auto t = base + 1234;
  using p = cqrs::influx_precision;
  std::vector<std::pair<p, std::string>> cases{
    {p::ns, std::to_string(t) + "000000"},
    {p::us, std::to_string(t) + "000"},
    {p::ms, std::to_string(t)},
    {p::s, std::to_string(t / 1000)}};
  int i = 0;
  for (auto& [prec, ts] : cases) {
    auto line = "prec,host=h" + std::to_string(i++) + " v=1 " + ts + "\n";
    auto a = roundtrip(n, influx_chunk(line, prec));
    CHECK(a.replies.empty());
    CHECK(a.accepted == 1);
  }
  auto q = query(n, "prec.v", base, base + 60'000, "1s");
  REQUIRE(q["series"].size() == 4);
  // 1s buckets: ns, us and ms keep base + 1234, seconds floor to base + 1000.
  for (int h = 0; h < 4; ++h) {
    CHECK(q["series"][h]["points"][0]["t"] == base + 1000);
    CHECK(q["series"][h]["points"][0]["count"] == 1);
  }
  n.shutdown();
}

TEST_CASE("line protocol without replies (the TCP port) completes silently") {
  system_fixture f;
  auto settings = actors::make_node_settings(f.cfg);
  actors::node n{*f.sys, settings};
  auto a = roundtrip(n, influx_chunk("m v=1\nbroken\nm v=\"s\"\n",
                                     cqrs::influx_precision::ns, false));
  CHECK(a.replies.empty());
  CHECK(a.accepted == 1);
  CHECK(a.rejected == 2);
  auto text = settings->metrics->render_prometheus();
  CHECK(text.find("cairn_influx_rejected_total 2") != std::string::npos);
  n.shutdown();
}

TEST_CASE("remote_write: samples stored, problems summarized") {
  system_fixture f;
  auto settings = actors::make_node_settings(f.cfg);
  actors::node n{*f.sys, settings};
  auto base = cqrs::align_down(cqrs::wall_clock_now() - 120'000, 60'000);
  prometheus::WriteRequest req;
  auto* ts = req.add_timeseries();
  auto label = [](prometheus::TimeSeries* t, const char* k, const char* v) {
    auto* l = t->add_labels();
    l->set_name(k);
    l->set_value(v);
  };
  label(ts, "__name__", "reqs_total");
  label(ts, "host", "a");
  for (int i = 0; i < 5; ++i) {
    auto* s = ts->add_samples();
    s->set_value(100 + i);
    s->set_timestamp(base + i * 1000);
  }
  auto* bad = req.add_timeseries();
  label(bad, "host", "nameless");
  bad->add_samples()->set_value(1);
  std::string raw, body;
  REQUIRE(req.SerializeToString(&raw));
  snappy::Compress(raw.data(), raw.size(), &body);
  runtime::chunk c;
  c.data = body;
  c.format = runtime::chunk_format::remote_write;
  auto a = roundtrip(n, std::move(c));
  REQUIRE(a.replies.size() == 1);
  CHECK(a.replies[0]["ok"] == true);
  CHECK(a.replies[0]["accepted"] == 5);
  CHECK(a.replies[0]["rejected"] == 1);
  CHECK(a.replies[0]["errors"].size() == 1);
  CHECK(a.accepted == 5);
  auto q = query(n, "reqs_total", base, base + 60'000, "1m");
  REQUIRE(q["series"].size() == 1);
  CHECK(q["series"][0]["points"][0]["count"] == 5);
  CHECK(q["series"][0]["points"][0]["last"] == 104.0);

  runtime::chunk junk;
  junk.data = "not snappy";
  junk.format = runtime::chunk_format::remote_write;
  auto j = roundtrip(n, std::move(junk));
  REQUIRE(j.replies.size() == 1);
  CHECK(j.replies[0]["ok"] == false);
  CHECK(j.replies[0]["error"]["code"] == "bad_request");
  n.shutdown();
}

TEST_CASE("query_param decodes and finds parameters") {
  CHECK(actors::query_param("db=x&precision=ms", "precision") == "ms");
  CHECK(actors::query_param("precision=ms", "db") == std::nullopt);
  CHECK(actors::query_param("", "db") == std::nullopt);
  CHECK(actors::query_param("org=my+org&bucket=a%2Fb", "org") == "my org");
  CHECK(actors::query_param("org=my+org&bucket=a%2Fb", "bucket") == "a/b");
  CHECK(actors::query_param("flag&x=1", "flag") == "");
  CHECK(actors::query_param("p=%zz%4", "p") == "%zz%4");
}

}
