// The parser's request routing. A valid op must never be answered
// `unknown_op`, whatever the node status is and however it changes while
// requests are handled (the recovering -> ready switch once let a valid
// ingest fall through to `unknown_op`).
#include "actors/messages.hpp"
#include "actors/node.hpp"
#include "actors/parser.hpp"
#include "cqrs/protocol_op.hpp"
#include "runtime/node_config.hpp"

#include <caf/actor_system.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <sstream>
#include <thread>

using namespace cairn;
using nlohmann::json;
using namespace std::chrono_literals;

TEST_SUITE("actors.parser") {

TEST_CASE("protocol ops round-trip through their names") {
  for (auto op : cqrs::all_protocol_ops) {
    auto name = cqrs::to_string(op);
    REQUIRE(cqrs::from_string(name).has_value());
    CHECK(*cqrs::from_string(name) == op);
    CHECK(cqrs::known_ops().find(std::string{name}) != std::string::npos);
  }
  CHECK_FALSE(cqrs::from_string("Ingest").has_value());
  CHECK_FALSE(cqrs::from_string("").has_value());
  CHECK(cqrs::known_ops().rfind("ping, flush, ingest", 0) == 0);
}

TEST_CASE("every known op is routed, in every node status") {
  using actors::request_route;
  for (auto status : {actors::node_status::recovering, actors::node_status::ready,
                      actors::node_status::stopping}) {
    CAPTURE(to_string(status));
    for (auto op : cqrs::all_protocol_ops) {
      CAPTURE(cqrs::to_string(op));
      auto r = actors::route_request(cqrs::to_string(op), status);
      CHECK(r != request_route::unknown_op);
      CHECK(r != request_route::bad_request);
    }
    auto ingest = actors::route_request("ingest", status);
    CHECK(ingest == (status == actors::node_status::ready
                       ? request_route::ingest
                       : request_route::unavailable));
    CHECK(actors::route_request("ping", status) == request_route::ping);
    CHECK(actors::route_request("stats", status) == request_route::coordinator);
    CHECK(actors::route_request("subscribe", status)
          == (status == actors::node_status::ready ? request_route::live
                                                   : request_route::unavailable));
    CHECK(actors::route_request("unsubscribe", status) == request_route::live);
    CHECK(actors::route_request("alert.create", status) == request_route::alerts);
    CHECK(actors::route_request("alert.history", status) == request_route::alerts);
    CHECK(actors::route_request("nope", status) == request_route::unknown_op);
    CHECK(actors::route_request("", status) == request_route::bad_request);
  }
}

TEST_CASE("ingest while the status flips is answered ok or unavailable") {
  runtime::node_config cfg;
  actors::register_message_types(cfg);
  cfg.partitions = 2;
  cfg.set("scheduler.max-threads", size_t{2});
  caf::actor_system sys{cfg};
  auto settings = actors::make_node_settings(cfg);
  actors::node n{sys, settings};
  // Flip recovering <-> ready as fast as possible while requests run.
  std::atomic<bool> stop{false};
  std::thread flipper{[&] {
    while (!stop.load()) {
      settings->status = actors::node_status::recovering;
      settings->status = actors::node_status::ready;
    }
  }};
  auto now = cqrs::wall_clock_now();
  constexpr int rounds = 400;
  constexpr int per_chunk = 20;
  int ok = 0;
  int unavailable = 0;
  std::vector<std::string> unexpected;
  for (int round = 0; round < rounds; ++round) {
    auto done = std::make_shared<std::promise<std::string>>();
    auto result = done->get_future();
    auto ctx = std::make_shared<runtime::connection_context>(
      static_cast<uint64_t>(round + 1), "test",
      [done](uint64_t, std::string text) { done->set_value(std::move(text)); });
    runtime::chunk c;
    c.conn = ctx;
    for (int i = 0; i < per_chunk; ++i)
      c.data += json{{"op", "ingest"},
                     {"id", i},
                     {"idempotency_key",
                      "k" + std::to_string(round) + "-" + std::to_string(i)},
                     {"events", {{{"metric", "flip"}, {"ts", now}, {"value", 1}}}}}
                  .dump()
                + "\n";
    c.barrier = true;
    n.dispatch(std::move(c));
    REQUIRE(result.wait_for(10s) == std::future_status::ready);
    std::istringstream in{result.get()};
    int lines = 0;
    for (std::string line; std::getline(in, line); ++lines) {
      auto reply = json::parse(line);
      if (reply["ok"] == true)
        ++ok;
      else if (reply["error"]["code"] == "unavailable")
        ++unavailable;
      else
        unexpected.push_back(line);
    }
    CHECK(lines == per_chunk);
  }
  stop = true;
  flipper.join();
  settings->status = actors::node_status::ready;
  MESSAGE("ok ", ok, ", unavailable ", unavailable);
  CHECK(unexpected.empty());
  if (!unexpected.empty())
    MESSAGE("first unexpected reply: ", unexpected.front());
  CHECK(ok + unavailable == rounds * per_chunk);
  n.shutdown();
}

} // TEST_SUITE
