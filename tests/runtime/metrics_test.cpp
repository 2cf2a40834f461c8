#include "runtime/metrics.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <stdexcept>
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
  CHECK(snap[0] == std::pair<std::string, double>{"x_total", 5});
}

TEST_CASE("the series of a family render together, labels escaped") {
  metrics_registry reg;
  auto& ok = reg.counter("events_total", "Events", {{"result", "accepted"}});
  reg.gauge("other", "Other").store(7);
  auto& bad = reg.counter("events_total", "Events", {{"result", "rejected"}});
  auto& odd = reg.counter("events_total", "Events",
                          {{"result", "a\"b\\c\nd"}});
  ok += 2;
  bad += 1;
  odd += 3;
  CHECK(&reg.counter("events_total", "Events", {{"result", "accepted"}}) == &ok);
  CHECK(reg.render_prometheus()
        == "# HELP events_total Events\n"
           "# TYPE events_total counter\n"
           "events_total{result=\"accepted\"} 2\n"
           "events_total{result=\"rejected\"} 1\n"
           "events_total{result=\"a\\\"b\\\\c\\nd\"} 3\n"
           "# HELP other Other\n"
           "# TYPE other gauge\n"
           "other 7\n");
  auto snap = reg.snapshot();
  REQUIRE(snap.size() == 4);
  CHECK(snap[1].first == "events_total{result=\"rejected\"}");
  CHECK(snap[3] == std::pair<std::string, double>{"other", 7});
}

TEST_CASE("a name registered with two kinds is refused") {
  metrics_registry reg;
  reg.counter("x_total", "x");
  CHECK_THROWS_AS(reg.gauge("x_total", "x"), std::logic_error);
  CHECK_THROWS_AS(reg.histogram("x_total", "x"), std::logic_error);
}

TEST_CASE("a value kept in a finer unit renders in the stated one") {
  metrics_registry reg;
  reg.gauge("age_seconds", "Age", {}, 1000).store(1500);
  reg.counter("cpu_seconds_total", "CPU", {}, 1000000).store(2);
  auto text = reg.render_prometheus();
  CHECK(text.find("\nage_seconds 1.5\n") != std::string::npos);
  CHECK(text.find("\ncpu_seconds_total 2e-06\n") != std::string::npos);
  reg.gauge("tiny", "Tiny", {}, 1000000000).store(1);
  reg.gauge("start_seconds", "Start", {}, 1000).store(1796171105620);
  text = reg.render_prometheus();
  CHECK(text.find("\ntiny 1e-09\n") != std::string::npos);
  CHECK(text.find("\nstart_seconds 1796171105.62\n") != std::string::npos);
  CHECK(reg.snapshot()[0].second == doctest::Approx(1.5));
}

TEST_CASE("collect hooks run before a render and may register series") {
  metrics_registry reg;
  int runs = 0;
  reg.on_collect([&] {
    ++runs;
    reg.gauge("late", "Registered by the hook").store(runs);
  });
  CHECK(reg.render_prometheus().find("late 1\n") != std::string::npos);
  CHECK(reg.snapshot().back() == std::pair<std::string, double>{"late", 2});
}

TEST_CASE("latency histograms: cumulative buckets, sum, count, quantiles") {
  using namespace std::chrono_literals;
  metrics_registry reg;
  auto& h = reg.histogram("lat_seconds", "Latency", {{"op", "query"}});
  CHECK(h.quantile(0.99) == 0);
  h.observe(30us);   // <= 50 µs
  h.observe(700us);  // <= 1 ms
  h.observe(800us);  // <= 1 ms
  h.observe(20s);    // +Inf
  h.observe(-5ns);   // a clock step: counted as 0
  CHECK(h.count() == 5);
  CHECK(h.sum_seconds() == doctest::Approx(20.00153));
  auto text = reg.render_prometheus();
  CHECK(text.find("# TYPE lat_seconds histogram\n") != std::string::npos);
  CHECK(text.find("lat_seconds_bucket{op=\"query\",le=\"0.00005\"} 2\n")
        != std::string::npos);
  CHECK(text.find("lat_seconds_bucket{op=\"query\",le=\"0.0005\"} 2\n")
        != std::string::npos);
  CHECK(text.find("lat_seconds_bucket{op=\"query\",le=\"0.001\"} 4\n")
        != std::string::npos);
  CHECK(text.find("lat_seconds_bucket{op=\"query\",le=\"10\"} 4\n")
        != std::string::npos);
  CHECK(text.find("lat_seconds_bucket{op=\"query\",le=\"+Inf\"} 5\n")
        != std::string::npos);
  CHECK(text.find("lat_seconds_count{op=\"query\"} 5\n")
        != std::string::npos);
  CHECK(text.find("lat_seconds_sum{op=\"query\"} 20.00153") != std::string::npos);
  // The median (rank 2.5) falls in (0.5 ms, 1 ms], a quarter into it
  // (rank 2.5 of the 2 below and the 2 in it).
  CHECK(h.quantile(0.5) == doctest::Approx(0.000625));
  CHECK(h.quantile(0.99) == doctest::Approx(10.0));
  CHECK(reg.snapshot().empty());
  REQUIRE(reg.histograms().size() == 1);
  CHECK(reg.histograms()[0].series == "lat_seconds{op=\"query\"}");
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
