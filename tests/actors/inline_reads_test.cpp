// The Prometheus API's inline reads (actors/inline_reads.hpp) against a real
// node: the same series and points as the direct reads through the
// coordinator, a declined read while a partition holds its latch
// (actors/store_access.hpp) or the node is not ready, and reads that stay
// consistent while the partitions ingest. Real actor system, no sleeps.
#include "actors/inline_reads.hpp"
#include "actors/node.hpp"
#include "actors/query_coordinator.hpp"
#include "cqrs/series_key.hpp"
#include "cqrs/time.hpp"
#include "node_fixture.hpp"

#include <caf/actor_system.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cmath>
#include <chrono>
#include <future>
#include <map>
#include <set>
#include <sstream>
#include <thread>

using namespace cairn;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

using test::direct;
using test::system_fixture;

json ingest(actors::node& n, const std::vector<json>& events) {
  runtime::chunk c;
  c.data = json{{"op", "ingest"}, {"events", events}}.dump() + "\n";
  c.barrier = true;
  return json::parse(test::dispatch_and_wait(n, std::move(c)));
}

std::vector<json> lat_events(cqrs::millis from, int hosts, int per_host, int round = 0) {
  std::vector<json> events;
  for (int h = 0; h < hosts; ++h)
    for (int k = 0; k < per_host; ++k)
      events.push_back({{"metric", "lat"},
                        {"ts", from + (round * per_host + k) * 1000 + h},
                        {"value", h * 10 + k + 0.25},
                        {"tags", {{"host", "h" + std::to_string(h)},
                                  {"region", h % 2 == 0 ? "eu" : "us"}}}});
  return events;
}

/// Returns once every partition of `n` has started: a partition lists its
/// series in the node's index when it starts (actors/partition.cpp), and the
/// partitions no ingest reached may not have run yet on a loaded machine. A
/// series request asks each partition the index does not cover, so its
/// answer comes after they all started.
void wait_started(actors::node& n) {
  direct(n.coordinator(), {{"op", "series"}, {"metric", "lat"}});
}

} // namespace

TEST_SUITE("actors.inline_reads") {

TEST_CASE("inline reads answer what the direct reads answer") {
  system_fixture f{8};
  auto settings = actors::make_node_settings(f.cfg);
  actors::node n{*f.sys, settings};
  auto from = cqrs::align_down(cqrs::wall_clock_now() - 120'000, 60'000);
  REQUIRE(ingest(n, lat_events(from, 40, 20))["accepted"] == 800);
  wait_started(n);
  actors::inline_reads reads{settings};
  size_t compared = 0;
  for (auto where : {json{{"host", "h7"}}, json{{"region", "eu"}}, json::object(),
                     json{{"host", "nope"}}}) {
    CAPTURE(where.dump());
    std::vector<cqrs::tag> tags;
    for (auto& [k, v] : where.items())
      tags.emplace_back(k, v.get<std::string>());
    std::vector<actors::inline_series> listed;
    REQUIRE(reads.series("lat", tags, 10000, listed));
    auto want = direct(n.coordinator(), {{"op", "series"}, {"metric", "lat"},
                                         {"where", where}, {"limit", 10000}});
    REQUIRE(want["ok"] == true);
    std::set<std::map<std::string, std::string>> want_tags, got_tags;
    for (auto& s : want["series"])
      want_tags.insert(s["tags"].get<std::map<std::string, std::string>>());
    for (auto& s : listed)
      got_tags.insert({s.tags.begin(), s.tags.end()});
    CHECK(got_tags == want_tags);

    // Points: the direct query grouped by every key, one group per series.
    actors::inline_read r{"lat", {}, from, from + 60'000, 15'000, 3'000,
                          {"count", "sum", "last", "p50"}};
    for (auto& s : listed)
      r.keys.push_back(s.key);
    std::vector<actors::inline_points> out;
    cqrs::problem err;
    REQUIRE(reads.read(r, out, err) == actors::inline_status::done);
    REQUIRE(out.size() == listed.size());
    auto q = direct(n.coordinator(),
                    {{"op", "query"}, {"metric", "lat"}, {"from", r.from},
                     {"to", r.to}, {"step", r.step}, {"align", *r.align},
                     {"aggs", r.aggs}, {"where", where},
                     {"group_by", {"host", "region"}}});
    REQUIRE(q["ok"] == true);
    std::map<std::map<std::string, std::string>, json> by_tags;
    for (auto& g : q["series"])
      by_tags[g["tags"].get<std::map<std::string, std::string>>()] = g["points"];
    for (size_t i = 0; i < listed.size(); ++i) {
      json points = json::array();
      auto& o = out[i];
      for (size_t j = 0; j < o.finals.size(); ++j) {
        json p = {{"t", o.finals[j].t}, {"count", o.finals[j].count}};
        for (size_t a = 1; a < r.aggs.size(); ++a) {
          auto v = o.values[j * r.aggs.size() + a];
          p[r.aggs[a]] = std::isnan(v) ? json(nullptr) : json(v);
        }
        points.push_back(p);
      }
      std::map<std::string, std::string> t{listed[i].tags.begin(), listed[i].tags.end()};
      CHECK(points == by_tags[t]);
      CHECK(points.size() == 3);  // from-12s, from+3s, from+18s (align 3 s)
      ++compared;
    }
  }
  CHECK(compared == 1 + 20 + 40);

  // A key that is not (or no longer) a series: no points.
  actors::inline_read gone{"lat", {cqrs::make_series_key("lat", {{"host", "x"}})},
                           from, from + 60'000, 15'000, std::nullopt, {"last"}};
  std::vector<actors::inline_points> out;
  cqrs::problem err;
  REQUIRE(reads.read(gone, out, err) == actors::inline_status::done);
  REQUIRE(out.size() == 1);
  CHECK(out[0].finals.empty());
  // An invalid query: the query op's error.
  gone.step = 1500;
  CHECK(reads.read(gone, out, err) == actors::inline_status::error);
  CHECK(err.code == cqrs::error_code::bad_request);
}

TEST_CASE("inline reads decline while a partition is busy or the node is not ready") {
  system_fixture f{4};
  auto settings = actors::make_node_settings(f.cfg);
  actors::node n{*f.sys, settings};
  auto from = cqrs::align_down(cqrs::wall_clock_now() - 120'000, 60'000);
  REQUIRE(ingest(n, lat_events(from, 1, 10))["accepted"] == 10);
  wait_started(n);
  actors::inline_reads reads{settings};
  std::vector<actors::inline_series> listed;
  REQUIRE(reads.series("lat", {{"host", "h0"}}, 10, listed));
  REQUIRE(listed.size() == 1);
  actors::inline_read r{"lat", {listed[0].key}, from, from + 60'000, 1000,
                        std::nullopt, {"last"}};
  auto p = cqrs::partition_of(cqrs::series_hash(listed[0].key), 4);
  std::vector<actors::inline_points> out;
  cqrs::problem err;
  REQUIRE(reads.read(r, out, err) == actors::inline_status::done);
  CHECK(out[0].finals.size() == 10);
  {
    // The partition's latch held on another thread (as the partition holds
    // it while it handles a message): the read is declined, not waited for.
    std::promise<void> locked, release;
    std::thread holder([&] {
      auto guard = actors::store_access::writer(settings->stores, p);
      locked.set_value();
      release.get_future().wait();
    });
    locked.get_future().wait();
    CHECK(reads.read(r, out, err) == actors::inline_status::busy);
    release.set_value();
    holder.join();
  }
  CHECK(reads.read(r, out, err) == actors::inline_status::done);
  std::map<std::string, double> counters;
  for (auto& [name, value] : settings->metrics->snapshot())
    counters[name] = value;
  CHECK(counters["cairn_prometheus_inline_reads_total{result=\"busy\"}"] == 1);
  CHECK(counters["cairn_prometheus_inline_reads_total{result=\"done\"}"] == 2);
  // Not ready: neither call answers.
  settings->status = actors::node_status::stopping;
  CHECK_FALSE(reads.series("lat", {{"host", "h0"}}, 10, listed));
  CHECK(reads.read(r, out, err) == actors::inline_status::busy);
  settings->status = actors::node_status::ready;
  // A partition detached (stopped): declined.
  settings->stores->detach(p);
  CHECK(reads.read(r, out, err) == actors::inline_status::busy);
}

TEST_CASE("inline reads stay consistent while the partitions ingest") {
  // Every read sees whole batches: the count of a series never goes down
  // and ends at what was acknowledged.
  system_fixture f{4};
  auto settings = actors::make_node_settings(f.cfg);
  actors::node n{*f.sys, settings};
  auto from = cqrs::align_down(cqrs::wall_clock_now() - 600'000, 60'000);
  REQUIRE(ingest(n, lat_events(from, 4, 5))["accepted"] == 20);
  wait_started(n);
  actors::inline_reads reads{settings};
  std::vector<actors::inline_series> listed;
  REQUIRE(reads.series("lat", {}, 100, listed));
  REQUIRE(listed.size() == 4);
  actors::inline_read r{"lat", {}, from, from + 600'000, 60'000, std::nullopt,
                        {"count"}};
  for (auto& s : listed)
    r.keys.push_back(s.key);
  std::atomic<bool> stop{false};
  size_t done = 0, busy = 0, regressions = 0;
  std::thread reader([&] {
    std::vector<uint64_t> last(r.keys.size(), 0);
    std::vector<actors::inline_points> out;
    cqrs::problem err;
    while (!stop.load()) {
      auto st = reads.read(r, out, err);
      if (st != actors::inline_status::done) {
        ++busy;
        continue;
      }
      ++done;
      for (size_t i = 0; i < out.size(); ++i) {
        uint64_t c = 0;
        for (auto& fp : out[i].finals)
          c += fp.count;
        if (c < last[i])
          ++regressions;
        last[i] = c;
      }
    }
  });
  int rounds = 40;
  for (int k = 1; k <= rounds; ++k)
    REQUIRE(ingest(n, lat_events(from, 4, 5, k))["accepted"] == 20);
  stop = true;
  reader.join();
  CHECK(regressions == 0);
  CHECK(done > 0);
  std::vector<actors::inline_points> out;
  cqrs::problem err;
  REQUIRE(reads.read(r, out, err) == actors::inline_status::done);
  for (auto& o : out) {
    uint64_t c = 0;
    for (auto& fp : o.finals)
      c += fp.count;
    CHECK(c == 5u * (rounds + 1));
  }
  MESSAGE(done << " inline reads done, " << busy << " declined during ingest");
}

}
