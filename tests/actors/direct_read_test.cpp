// The coordinator's direct reads (actors/query_coordinator.hpp,
// direct_read): the same replies as the NDJSON pipeline, a query after its
// series request routed to the partitions holding the listed series, and
// every failure answered. Real actor system, no sleeps: every wait is on a
// reply.
#include "actors/messages.hpp"
#include "actors/node.hpp"
#include "actors/query_coordinator.hpp"
#include "cqrs/series_key.hpp"
#include "cqrs/time.hpp"
#include "node_fixture.hpp"
#include "runtime/journal.hpp"

#include <caf/actor_system.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <future>
#include <random>
#include <set>
#include <sstream>
#include <thread>

using namespace cairn;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

using test::direct;
using test::system_fixture;

/// The pipeline's reply lines for `reqs`, sent as one chunk.
std::vector<json> pipeline(actors::node& n, const std::vector<json>& reqs) {
  runtime::chunk c;
  for (auto& r : reqs)
    c.data += r.dump() + "\n";
  c.barrier = true;
  std::vector<json> out;
  std::istringstream in{test::dispatch_and_wait(n, std::move(c))};
  for (std::string line; std::getline(in, line);)
    out.push_back(json::parse(line));
  return out;
}

json series_req(const json& where) {
  return {{"op", "series"}, {"metric", "lat"}, {"where", where}, {"limit", 10000}};
}

json query_req(cqrs::millis from, const json& where) {
  return {{"op", "query"},   {"metric", "lat"},
          {"from", from},    {"to", from + 60'000},
          {"step", 1000},    {"aggs", {"count", "sum", "last"}},
          {"where", where},  {"group_by", {"host", "region"}}};
}

/// A partition that answers stats and nothing else of the reads.
actors::partition_actor spawn_silent(caf::actor_system& sys) {
  return sys.spawn([](actors::partition_actor::pointer self)
                     -> actors::partition_actor::behavior_type {
    return {
      [](actors::ingest_atom, cqrs::event_batch&, std::string&) { return uint64_t{0}; },
      [self](actors::query_atom, const actors::query_spec_ptr&) {
        return self->make_response_promise<cqrs::query_partial>();
      },
      [](actors::topk_atom, const actors::topk_spec_ptr&) { return cqrs::topk_partial{}; },
      [self](actors::series_atom, const actors::series_spec_ptr&) {
        return self->make_response_promise<cqrs::series_partial>();
      },
      [](actors::metrics_atom) { return cqrs::metrics_partial{}; },
      [](actors::stats_atom) { return actors::partition_stats{}; },
      [](actors::snapshot_atom) { return uint64_t{0}; },
      [](actors::tick_atom) {},
      [](actors::subscribe_atom, caf::actor&) {},
      [](actors::unsubscribe_atom, const caf::actor&) {},
      [](actors::close_atom) {},
      [](actors::journaled_atom, uint64_t, bool, std::string&) {},
      [](actors::snapshot_atom, uint64_t, bool, std::string&) {},
      [](actors::recovered_atom, actors::recovered_partition_ptr&) {},
      [](actors::handoff_atom, actors::handoff_request&) { return actors::handoff_reply{}; },
      [](actors::handoff_atom, uint64_t, bool, std::string&) {},
    };
  });
}

} // namespace

TEST_SUITE("actors.direct_read") {

TEST_CASE("direct reads answer what the pipeline answers") {
  system_fixture f{8};
  auto settings = actors::make_node_settings(f.cfg);
  actors::node n{*f.sys, settings};
  auto from = cqrs::align_down(cqrs::wall_clock_now() - 120'000, 60'000);
  // 40 series over the 8 partitions, a few events each.
  std::vector<json> events;
  std::set<uint32_t> parts;
  for (int h = 0; h < 40; ++h) {
    auto host = "h" + std::to_string(h);
    auto region = h % 2 == 0 ? "eu" : "us";
    parts.insert(cqrs::partition_of(
      cqrs::series_hash(cqrs::make_series_key("lat", {{"host", host}, {"region", region}})),
      8));
    for (int k = 0; k < 5; ++k)
      events.push_back({{"metric", "lat"},
                        {"ts", from + k * 7000 + h},
                        {"value", h * 10 + k + 0.25},
                        {"tags", {{"host", host}, {"region", region}}}});
  }
  REQUIRE(parts.size() > 1);  // the selectors below span partitions
  auto ack = pipeline(n, {json{{"op", "ingest"}, {"events", events}}});
  REQUIRE(ack[0]["ok"] == true);
  REQUIRE(ack[0]["accepted"] == 200);

  for (auto where : {json{{"host", "h7"}}, json{{"region", "eu"}}, json::object(),
                     json{{"host", "nope"}}}) {
    CAPTURE(where.dump());
    auto want = pipeline(n, {series_req(where), query_req(from, where)});
    REQUIRE(want.size() == 2);
    // A batch: the query waits for the series request and is routed.
    auto got = direct(n.coordinator(), json::array({series_req(where),
                                                    query_req(from, where)}));
    REQUIRE(got.is_array());
    REQUIRE(got.size() == 2);
    CHECK(got[0] == want[0]);
    CHECK(got[1] == want[1]);
    // One request: one reply object, every partition asked.
    CHECK(direct(n.coordinator(), query_req(from, where)) == want[1]);
    CHECK(direct(n.coordinator(), series_req(where)) == want[0]);
  }
  auto one = direct(n.coordinator(), query_req(from, {{"host", "h7"}}));
  REQUIRE(one["series"].size() == 1);
  CHECK(one["series"][0]["points"].size() == 5);
  CHECK(one["partial"] == false);

  // A query after a series request for other series is not routed by it.
  auto mixed = direct(n.coordinator(),
                      json::array({series_req({{"host", "h1"}}),
                                   query_req(from, {{"host", "h2"}})}));
  REQUIRE(mixed[1]["series"].size() == 1);
  CHECK(mixed[1]["series"][0]["tags"]["host"] == "h2");
  n.shutdown();
}

TEST_CASE("direct reads answer bad requests, a node not ready and a dead coordinator") {
  system_fixture f{2};
  auto settings = actors::make_node_settings(f.cfg);
  actors::node n{*f.sys, settings};
  auto bad = direct(n.coordinator(), json::array({json{{"op", "ping"}}, json(3),
                                                  json{{"op", "query"}},
                                                  json{{"metric", "lat"}}}));
  REQUIRE(bad.size() == 4);
  for (auto& r : bad) {
    CHECK(r["ok"] == false);
    CHECK(r["error"]["code"] == "bad_request");
  }
  CHECK(bad[0]["error"]["message"] == "op 'ping' is not a read of the coordinator");
  CHECK(bad[1]["error"]["message"] == "request is not a JSON object");
  // A failed series request still lets the query behind it answer.
  auto pair = direct(n.coordinator(),
                     json::array({json{{"op", "series"}, {"metric", "lat"}, {"limit", -1}},
                                  json{{"op", "query"}, {"metric", "lat"}, {"from", "-1m"}}}));
  REQUIRE(pair.size() == 2);
  CHECK(pair[1]["ok"] == true);
  CHECK(direct(n.coordinator(), json::array()) == json::array());

  settings->status = actors::node_status::recovering;
  auto r = direct(n.coordinator(), series_req(json::object()));
  CHECK(r["error"]["code"] == "unavailable");
  CHECK(r["error"]["message"] == "node is recovering");
  settings->status = actors::node_status::ready;

  auto none = direct(caf::actor{}, json::array({series_req(json::object()),
                                                query_req(0, json::object())}));
  REQUIRE(none.size() == 2);
  CHECK(none[0]["error"]["code"] == "unavailable");
  CHECK(none[1]["error"]["code"] == "unavailable");
  auto coordinator = n.coordinator();
  n.shutdown();
  caf::scoped_actor self{*f.sys};
  self->wait_for(coordinator);
  // Stopped: the message is dropped, the reply still comes.
  auto gone = direct(coordinator, series_req(json::object()));
  CHECK(gone["error"]["code"] == "unavailable");
}

TEST_CASE("a routed query also asks the partitions that missed the series request") {
  system_fixture f{1};
  auto settings = actors::make_node_settings(f.cfg);
  settings->query_timeout = 300ms;
  settings->status = actors::node_status::ready;
  auto good = actors::spawn_partition(*f.sys, 0, settings);
  auto silent = spawn_silent(*f.sys);
  auto coordinator = actors::spawn_query_coordinator(*f.sys, settings, {good, silent});
  auto from = cqrs::align_down(cqrs::wall_clock_now() - 120'000, 60'000);
  auto got = direct(coordinator, json::array({series_req({{"host", "h7"}}),
                                              query_req(from, {{"host", "h7"}})}));
  REQUIRE(got.size() == 2);
  CHECK(got[0]["ok"] == true);
  CHECK(got[0]["partial"] == true);
  CHECK(got[0]["missing_partitions"] == json::array({1}));
  // Partition 1 listed nothing, yet the query asked it (and says so).
  CHECK(got[1]["ok"] == true);
  CHECK(got[1]["partial"] == true);
  CHECK(got[1]["missing_partitions"] == json::array({1}));
  // Scatters started at different times share one delayed message: each
  // still ends at its own deadline, and every one is answered.
  std::vector<std::future<json>> pending;
  for (int i = 0; i < 5; ++i) {
    auto done = std::make_shared<std::promise<json>>();
    pending.push_back(done->get_future());
    actors::direct_read(coordinator, query_req(from, {{"host", "h7"}}),
                        [done](json reply) { done->set_value(std::move(reply)); });
    std::this_thread::sleep_for(50ms);
  }
  for (auto& r : pending) {
    REQUIRE(r.wait_for(10s) == std::future_status::ready);
    auto reply = r.get();
    CHECK(reply["partial"] == true);
    CHECK(reply["missing_partitions"] == json::array({1}));
  }
  caf::anon_send_exit(good, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(silent, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(coordinator, caf::exit_reason::user_shutdown);
}

TEST_CASE("series requests are answered from the node's series index") {
  system_fixture f{8};
  auto settings = actors::make_node_settings(f.cfg);
  actors::node n{*f.sys, settings};
  auto& index = *settings->series_index;
  auto from = cqrs::align_down(cqrs::wall_clock_now() - 120'000, 60'000);
  auto ingest = [&](int first, int count) {
    std::vector<json> events;
    for (int h = first; h < first + count; ++h)
      events.push_back({{"metric", "lat"},
                        {"ts", from + h},
                        {"value", h},
                        {"tags", {{"host", "h" + std::to_string(h)},
                                  {"region", h % 2 == 0 ? "eu" : "us"}}}});
    auto ack = pipeline(n, {json{{"op", "ingest"}, {"events", events}}});
    REQUIRE(ack[0]["accepted"] == count);
  };
  ingest(0, 30);
  std::vector<std::string> keys;
  auto covered = index.match("lat", {}, 1000, keys);
  CHECK(std::count(covered.begin(), covered.end(), true) == 8);
  CHECK(keys.size() == 30);
  auto check_same = [&](const json& where) {
    CAPTURE(where.dump());
    auto want = pipeline(n, {series_req(where), query_req(from, where)});
    auto got = direct(n.coordinator(), json::array({series_req(where),
                                                    query_req(from, where)}));
    CHECK(got[0] == want[0]);
    CHECK(got[1] == want[1]);
    CHECK(got[0]["partial"] == false);
    return got[0]["series"].size();
  };
  CHECK(check_same({{"host", "h7"}}) == 1);
  CHECK(check_same({{"region", "eu"}}) == 15);
  CHECK(check_same(json::object()) == 30);
  // A series created by a write is listed once the write is acknowledged.
  ingest(30, 1);
  CHECK(check_same({{"host", "h30"}}) == 1);
  CHECK(index.size() == 31);
  auto few = series_req(json::object());
  few["limit"] = 4;
  auto truncated = direct(n.coordinator(), few);
  CHECK(truncated == pipeline(n, {few})[0]);
  CHECK(truncated["truncated"] == true);
  CHECK(truncated["series"].size() == 4);

  // A stopped partition leaves the index: it is asked (and missed) instead.
  auto victim = cqrs::partition_of(
    cqrs::series_hash(cqrs::make_series_key("lat", {{"host", "h7"}, {"region", "us"}})), 8);
  auto dead = n.partitions()[victim];
  caf::anon_send_exit(dead, caf::exit_reason::user_shutdown);
  {
    caf::scoped_actor self{*f.sys};
    self->wait_for(dead);
  }
  keys.clear();
  covered = index.match("lat", {}, 1000, keys);
  CHECK_FALSE(covered[victim]);
  CHECK(std::count(covered.begin(), covered.end(), true) == 7);
  auto got = direct(n.coordinator(), json::array({series_req({{"host", "h7"}}),
                                                  query_req(from, {{"host", "h7"}})}));
  CHECK(got[0]["ok"] == true);
  CHECK(got[0]["series"].size() == 0);
  CHECK(got[0]["partial"] == true);
  CHECK(got[0]["missing_partitions"] == json::array({victim}));
  CHECK(got[1]["partial"] == true);
  CHECK(got[1]["missing_partitions"] == json::array({victim}));
  n.shutdown();
}

TEST_CASE("a persistent node's index lists its recovered series") {
  auto dir = std::filesystem::temp_directory_path()
             / ("cairn-direct-" + std::to_string(std::random_device{}()));
  auto from = cqrs::align_down(cqrs::wall_clock_now() - 120'000, 60'000);
  auto run_node = [&dir](auto body) {
    system_fixture f{4};
    auto settings = actors::make_node_settings(f.cfg);
    settings->journal = runtime::journal::open(dir.string());
    actors::node n{*f.sys, settings};
    for (int i = 0; i < 500 && settings->status != actors::node_status::ready; ++i)
      std::this_thread::sleep_for(10ms);
    REQUIRE(settings->status == actors::node_status::ready);
    body(n, *settings->series_index);
    n.shutdown();
  };
  json before;
  run_node([&](actors::node& n, cqrs::series_index& index) {
    std::vector<json> events;
    for (int h = 0; h < 20; ++h)
      events.push_back({{"metric", "lat"}, {"ts", from + h}, {"value", h},
                        {"tags", {{"host", "h" + std::to_string(h)}}}});
    auto ack = pipeline(n, {json{{"op", "ingest"}, {"events", events}},
                            json{{"op", "flush"}}});
    REQUIRE(ack[0]["accepted"] == 20);
    CHECK(index.size() == 20);
    before = direct(n.coordinator(), series_req(json::object()));
    CHECK(before["series"].size() == 20);
  });
  run_node([&](actors::node& n, cqrs::series_index& index) {
    // Every partition attached once recovered, with what it recovered. The
    // node is ready once the recovered states are sent; a request through
    // the partitions returns after each has taken its own (a loaded machine
    // showed the index before that).
    (void) direct(n.coordinator(), series_req(json::object()));
    std::vector<std::string> keys;
    auto covered = index.match("lat", {}, 1000, keys);
    CHECK(std::count(covered.begin(), covered.end(), true) == 4);
    CHECK(keys.size() == 20);
    CHECK(direct(n.coordinator(), series_req(json::object())) == before);
    CHECK(pipeline(n, {series_req(json::object())})[0] == before);
  });
  std::filesystem::remove_all(dir);
}

} // TEST_SUITE
