// Shared by the actor tests that drive a real node without sockets: an
// actor system configured like cairn-node's, and one chunk sent through
// node::dispatch with its reply text awaited (no sleeps: every wait is on a
// reply).
#pragma once

#include "actors/messages.hpp"
#include "actors/node.hpp"
#include "actors/query_coordinator.hpp"
#include "runtime/connection_context.hpp"
#include "runtime/node_config.hpp"

#include <caf/actor_system.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>

namespace cairn::test {

struct system_fixture {
  runtime::node_config cfg;
  std::unique_ptr<caf::actor_system> sys;

  explicit system_fixture(size_t partitions = 4) {
    actors::register_message_types(cfg);
    cfg.partitions = partitions;
    cfg.set("scheduler.max-threads", size_t{2});
    sys = std::make_unique<caf::actor_system>(cfg);
  }
};

/// Dispatches `c` on a connection of its own (id `conn_id`) and returns
/// the chunk's reply text once it completed; the context's counters are
/// left in `*ctx_out` if given.
inline std::string
dispatch_and_wait(actors::node& n, runtime::chunk c, uint64_t conn_id = 1,
                  std::shared_ptr<runtime::connection_context>* ctx_out
                  = nullptr) {
  using namespace std::chrono_literals;
  auto done = std::make_shared<std::promise<std::string>>();
  auto result = done->get_future();
  auto ctx = std::make_shared<runtime::connection_context>(
    conn_id, "test", [done](uint64_t, std::string text) {
      done->set_value(std::move(text));
    });
  c.conn = ctx;
  n.dispatch(std::move(c));
  REQUIRE(result.wait_for(10s) == std::future_status::ready);
  if (ctx_out)
    *ctx_out = ctx;
  return result.get();
}

/// The reply of actors::direct_read(coordinator, req), waited for.
inline nlohmann::json direct(const caf::actor& coordinator, nlohmann::json req) {
  using namespace std::chrono_literals;
  auto done = std::make_shared<std::promise<nlohmann::json>>();
  auto result = done->get_future();
  actors::direct_read(coordinator, std::move(req), [done](nlohmann::json reply) {
    done->set_value(std::move(reply));
  });
  REQUIRE(result.wait_for(10s) == std::future_status::ready);
  return result.get();
}

} // namespace cairn::test
