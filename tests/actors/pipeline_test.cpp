// The actor pipeline without sockets: chunks go in through node::dispatch as
// the gateway would send them, replies come back through the connection
// context. Real actor system, no sleeps: every wait is on a reply.
#include "actors/messages.hpp"
#include "actors/node.hpp"
#include "actors/query_coordinator.hpp"
#include "runtime/journal.hpp"
#include "runtime/node_config.hpp"
#include "cqrs/series_key.hpp"
#include "cqrs/time.hpp"
#include "node_fixture.hpp"

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <future>
#include <random>
#include <sstream>

using namespace cairn;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

using test::system_fixture;

/// Sends `lines` as one chunk and returns the reply lines.
std::vector<json> roundtrip(actors::node& n, const std::vector<std::string>& lines,
                            uint64_t conn_id = 1) {
  runtime::chunk c;
  for (auto& l : lines)
    c.data += l + "\n";
  c.barrier = c.data.find("\"op\"") != std::string::npos;
  std::vector<json> out;
  std::istringstream in{test::dispatch_and_wait(n, std::move(c), conn_id)};
  for (std::string line; std::getline(in, line);)
    out.push_back(json::parse(line));
  return out;
}

std::string event(const std::string& metric, int64_t ts, double value,
                  const std::string& region) {
  return json{{"metric", metric},
              {"ts", ts},
              {"value", value},
              {"tags", {{"region", region}}}}
    .dump();
}

} // namespace

TEST_SUITE("actors.pipeline") {

TEST_CASE("events, flush and a grouped query answer in order") {
  system_fixture f;
  auto settings = actors::make_node_settings(f.cfg);
  actors::node n{*f.sys, settings};
  auto now = cqrs::wall_clock_now();
  auto base = cqrs::align_down(now - 120'000, 60'000);
  std::vector<std::string> lines;
  double eu_sum = 0;
  for (int i = 0; i < 1000; ++i) {
    auto region = i % 2 == 0 ? "eu" : "us";
    double v = i;
    if (i % 2 == 0)
      eu_sum += v;
    lines.push_back(event("m", base + i, v, region));
  }
  lines.push_back(R"({"metric":"m","value":"x"})");
  lines.push_back(R"({"op":"flush","id":1})");
  lines.push_back(json{{"op", "query"},
                       {"id", 2},
                       {"metric", "m"},
                       {"from", base},
                       {"to", base + 60'000},
                       {"step", "1m"},
                       {"aggs", {"count", "sum", "min", "max"}},
                       {"group_by", {"region"}}}
                    .dump());
  auto replies = roundtrip(n, lines);
  REQUIRE(replies.size() == 3);
  CHECK(replies[0]["line"] == 1001);
  CHECK(replies[0]["error"]["code"] == "invalid_event");
  CHECK(replies[1]["id"] == 1);
  CHECK(replies[1]["accepted"] == 1000);
  CHECK(replies[1]["rejected"] == 1);
  auto& q = replies[2];
  CHECK(q["id"] == 2);
  REQUIRE(q["series"].size() == 2);
  CHECK(q["series"][0]["tags"]["region"] == "eu");
  auto& p = q["series"][0]["points"][0];
  CHECK(p["t"] == base);
  CHECK(p["count"] == 500);
  CHECK(p["sum"].get<double>() == eu_sum);
  CHECK(p["min"].get<double>() == 0);
  CHECK(p["max"].get<double>() == 998);
  n.shutdown();
}

TEST_CASE("an idempotency key is applied once") {
  system_fixture f;
  auto settings = actors::make_node_settings(f.cfg);
  actors::node n{*f.sys, settings};
  auto now = cqrs::wall_clock_now();
  json events = json::array();
  for (int i = 0; i < 50; ++i)
    events.push_back(json::parse(event("k", now - 1000 - i, 1, "r" + std::to_string(i % 7))));
  json req{{"op", "ingest"}, {"events", events}, {"idempotency_key", "batch-1"}};
  auto first = roundtrip(n, {req.dump()});
  auto second = roundtrip(n, {req.dump()});
  REQUIRE(first.size() == 1);
  REQUIRE(second.size() == 1);
  CHECK(first[0]["accepted"] == 50);
  CHECK_FALSE(first[0].contains("duplicate"));
  CHECK(second[0]["duplicate"] == true);
  auto q = roundtrip(n, {json{{"op", "query"}, {"metric", "k"}, {"from", "-5m"},
                              {"step", "5m"}, {"aggs", {"count"}}}
                           .dump()});
  int64_t total = 0;
  for (auto& s : q[0]["series"])
    for (auto& p : s["points"])
      total += p["count"].get<int64_t>();
  CHECK(total == 50);
  n.shutdown();
}

TEST_CASE("a persistent node recovers what it acknowledged") {
  auto dir = std::filesystem::temp_directory_path()
             / ("cairn-pipeline-" + std::to_string(std::random_device{}()));
  auto now = cqrs::wall_clock_now();
  std::vector<std::string> lines;
  for (int i = 0; i < 3000; ++i)
    lines.push_back(event("p", now - 5000 - i, i % 10, i % 3 == 0 ? "a" : "b"));
  lines.push_back(R"({"op":"flush"})");
  auto query = json{{"op", "query"}, {"metric", "p"}, {"from", "-10m"},
                    {"step", "10m"}, {"aggs", {"count", "sum"}}}
                 .dump();
  // A persistent node on `dir`, waited for until its recovery is done.
  auto run_node = [&dir](auto body) {
    system_fixture f;
    auto settings = actors::make_node_settings(f.cfg);
    settings->journal = runtime::journal::open(dir.string());
    actors::node n{*f.sys, settings};
    for (int i = 0; i < 500 && settings->status != actors::node_status::ready; ++i)
      std::this_thread::sleep_for(10ms);
    REQUIRE(settings->status == actors::node_status::ready);
    body(n);
    n.shutdown();
  };
  json before;
  run_node([&](actors::node& n) {
    auto r = roundtrip(n, lines);
    REQUIRE(r.size() == 1);
    CHECK(r[0]["accepted"] == 3000);
    before = roundtrip(n, {query})[0];
  });
  run_node([&](actors::node& n) {
    auto after = roundtrip(n, {query})[0];
    CHECK(after["series"] == before["series"]);
    int64_t total = 0;
    for (auto& p : after["series"][0]["points"])
      total += p["count"].get<int64_t>();
    CHECK(total == 3000);
  });
  std::filesystem::remove_all(dir);
}

TEST_CASE("a partition that does not answer makes the query partial") {
  system_fixture f{1};
  auto settings = actors::make_node_settings(f.cfg);
  settings->query_timeout = 300ms;
  settings->status = actors::node_status::ready;
  auto good = actors::spawn_partition(*f.sys, 0, settings);
  // A partition that takes every query and never answers it.
  auto silent = f.sys->spawn([](actors::partition_actor::pointer self)
                               -> actors::partition_actor::behavior_type {
    auto never = [self](auto&&...) {
      return self->make_response_promise<cqrs::query_partial>();
    };
    return {
      [](actors::ingest_atom, cqrs::event_batch&, std::string&) { return uint64_t{0}; },
      [never](actors::query_atom, const actors::query_spec_ptr& q) { return never(q); },
      [](actors::topk_atom, const actors::topk_spec_ptr&) { return cqrs::topk_partial{}; },
      [](actors::series_atom, const actors::series_spec_ptr&) { return cqrs::series_partial{}; },
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
  auto coordinator = actors::spawn_query_coordinator(*f.sys, settings,
                                                     {good, silent});
  caf::scoped_actor self{*f.sys};
  std::string reply;
  self->request(coordinator, 5s, actors::query_atom::value,
                std::string{R"({"op":"query","metric":"m","from":"-1m"})"})
    .receive([&](std::string& r) { reply = std::move(r); },
             [&](caf::error& err) { FAIL("query failed: " << to_string(err)); });
  auto j = json::parse(reply);
  CHECK(j["ok"] == true);
  CHECK(j["partial"] == true);
  CHECK(j["missing_partitions"] == json::array({1}));
  self->send_exit(good, caf::exit_reason::user_shutdown);
  self->send_exit(silent, caf::exit_reason::user_shutdown);
  self->send_exit(coordinator, caf::exit_reason::user_shutdown);
}

TEST_CASE("a partition publishes closed buckets to its subscribers") {
  system_fixture f{1};
  auto settings = actors::make_node_settings(f.cfg);
  settings->live_grace = 50;
  settings->status = actors::node_status::ready;
  auto part = actors::spawn_partition(*f.sys, 3, settings);
  caf::scoped_actor self{*f.sys};
  caf::actor me = caf::actor_cast<caf::actor>(self);
  self->send(part, actors::subscribe_atom::value, me);
  // Two events in a window that ended already, one in the open window.
  auto now = cqrs::wall_clock_now();
  auto closed_start = now - now % 1000 - 1000;
  cqrs::event_batch batch;
  auto key = cqrs::make_series_key("m", {{"region", "eu"}});
  batch.add(key, cqrs::series_hash(key), closed_start + 10, 1.0);
  batch.add(key, cqrs::series_hash(key), closed_start + 20, 2.0);
  self->request(part, 5s, actors::ingest_atom::value, batch, std::string{})
    .receive([](uint64_t n) { CHECK(n == 2); },
             [](caf::error& err) { FAIL("ingest: " << to_string(err)); });
  // The next close pass (<= 1 s + grace) publishes the 1 s bucket.
  bool got = false;
  for (int i = 0; i < 5 && !got; ++i)
    self->receive(
      [&](actors::closed_atom, const actors::closed_batch_ptr& b) {
        CHECK(b->partition == 3);
        for (auto& c : b->buckets)
          if (c.tier == 0 && c.start == closed_start) {
            CHECK(c.key == key);
            CHECK(c.value.count == 2);
            CHECK(c.value.sum == 3.0);
            CHECK_FALSE(c.correction);
            got = true;
          }
      },
      caf::after(3s) >> [&] { i = 5; });
  CHECK(got);
  // A late event for it comes again as a correction.
  cqrs::event_batch late;
  late.add(key, cqrs::series_hash(key), closed_start + 30, 4.0);
  self->request(part, 5s, actors::ingest_atom::value, late, std::string{})
    .receive([](uint64_t) {}, [](caf::error& err) { FAIL(to_string(err)); });
  bool corrected = false;
  for (int i = 0; i < 5 && !corrected; ++i)
    self->receive(
      [&](actors::closed_atom, const actors::closed_batch_ptr& b) {
        for (auto& c : b->buckets)
          if (c.tier == 0 && c.start == closed_start) {
            CHECK(c.correction);
            CHECK(c.value.count == 3);
            corrected = true;
          }
      },
      caf::after(3s) >> [&] { i = 5; });
  CHECK(corrected);
  // Unsubscribed: nothing more arrives.
  self->send(part, actors::unsubscribe_atom::value, me);
  cqrs::event_batch more;
  more.add(key, cqrs::series_hash(key), closed_start + 40, 8.0);
  self->request(part, 5s, actors::ingest_atom::value, more, std::string{})
    .receive([](uint64_t) {}, [](caf::error& err) { FAIL(to_string(err)); });
  bool quiet = true;
  self->receive(
    [&](actors::closed_atom, const actors::closed_batch_ptr&) { quiet = false; },
    caf::after(1500ms) >> [] {});
  CHECK(quiet);
  self->send_exit(part, caf::exit_reason::user_shutdown);
}

} // TEST_SUITE
