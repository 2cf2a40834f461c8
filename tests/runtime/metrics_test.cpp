#include "runtime/metrics.hpp"

#include <doctest/doctest.h>

#include <thread>
#include <vector>

using cairn::runtime::metrics_registry;

TEST_SUITE("runtime.metrics") {

TEST_CASE("Prometheus text format with HELP and TYPE, in registration order") {
  metrics_registry reg;
  auto& accepted = reg.counter("cairn_events_accepted_total", "Events accepted");
  auto& open = reg.gauge("cairn_connections_open", "Open client connections");
  accepted += 42;
  open.store(3);
  CHECK(reg.render_prometheus()
        == "# HELP cairn_events_accepted_total Events accepted\n"
           "# TYPE cairn_events_accepted_total counter\n"
           "cairn_events_accepted_total 42\n"
           "# HELP cairn_connections_open Open client connections\n"
           "# TYPE cairn_connections_open gauge\n"
           "cairn_connections_open 3\n");
}

TEST_CASE("registering twice returns the same value; snapshot") {
  metrics_registry reg;
  auto& a = reg.counter("x_total", "x");
  auto& b = reg.counter("x_total", "x again");
  CHECK(&a == &b);
  // References stay valid while more entries are added.
  for (int i = 0; i < 100; ++i)
    reg.gauge("g" + std::to_string(i), "g");
  a += 5;
  auto snap = reg.snapshot();
  REQUIRE(snap.size() == 101);
  CHECK(snap[0] == std::pair<std::string, int64_t>{"x_total", 5});
}

TEST_CASE("help text is escaped") {
  metrics_registry reg;
  reg.gauge("g", "line one\nback\\slash");
  CHECK(reg.render_prometheus().find("# HELP g line one\\nback\\\\slash\n")
        == 0);
}

TEST_CASE("concurrent updates are not lost") {
  metrics_registry reg;
  auto& c = reg.counter("c_total", "c");
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i)
        c.fetch_add(1, std::memory_order_relaxed);
    });
  for (auto& t : ts)
    t.join();
  CHECK(c.load() == 40000);
}

} // TEST_SUITE
