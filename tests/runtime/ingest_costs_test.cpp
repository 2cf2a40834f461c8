#include "runtime/detail/io_threads.hpp"
#include "runtime/ingest_costs.hpp"

#include <boost/asio/post.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>

using cairn::runtime::ingest_costs;
using cairn::runtime::ingest_stage;
using cairn::runtime::metrics_registry;
using cairn::runtime::stage_timer;
using cairn::runtime::thread_cpu_ns;

namespace {

/// Burns about `ms` of CPU on the calling thread.
void burn(int ms) {
  auto until = thread_cpu_ns() + int64_t{ms} * 1'000'000;
  volatile uint64_t x = 0;
  while (thread_cpu_ns() < until)
    for (int i = 0; i < 1000; ++i)
      x = x + static_cast<uint64_t>(i);
}

double value(const metrics_registry& reg, const std::string& series) {
  for (auto& [name, v] : reg.snapshot())
    if (name == series)
      return v;
  FAIL("no series " << series);
  return -1;
}

} // namespace

TEST_SUITE("runtime.ingest_costs") {

TEST_CASE("a thread's CPU clock counts work, not sleep") {
  auto before = thread_cpu_ns();
  std::this_thread::sleep_for(std::chrono::milliseconds{60});
  auto slept = thread_cpu_ns() - before;
  CHECK(slept < 20'000'000);
  before = thread_cpu_ns();
  burn(30);
  CHECK(thread_cpu_ns() - before >= 30'000'000);
}

TEST_CASE("stages add up per stage, in path order, as metrics") {
  metrics_registry reg;
  ingest_costs costs{reg};
  costs.add(ingest_stage::parse, 3'000, 10);
  costs.add(ingest_stage::parse, 1'000, 10);
  costs.add(ingest_stage::apply, 500, 0);
  costs.add(ingest_stage::apply, 0, 5);
  costs.set(ingest_stage::read, 9'000, 30);
  costs.set(ingest_stage::read, 8'000, 40); // set replaces
  auto t = costs.totals();
  REQUIRE(t.size() == cairn::runtime::ingest_stage_count);
  const char* order[] = {"read", "parse", "split", "route", "encode", "write", "apply"};
  for (size_t i = 0; i < t.size(); ++i)
    CHECK(to_string(t[i].stage) == order[i]);
  CHECK(t[0].ns == 8'000);
  CHECK(t[0].events == 40);
  CHECK(t[0].ns_per_event() == doctest::Approx(200));
  CHECK(t[1].ns == 4'000);
  CHECK(t[1].events == 20);
  CHECK(t[1].ns_per_event() == doctest::Approx(200));
  CHECK(t[2].ns_per_event() == 0); // no events: 0, not NaN
  CHECK(t[6].ns_per_event() == doctest::Approx(100));
  CHECK(value(reg, R"(cairn_ingest_stage_seconds_total{stage="parse"})")
        == doctest::Approx(4e-6));
  CHECK(value(reg, R"(cairn_ingest_stage_events_total{stage="read"})") == 40);
  auto text = reg.render_prometheus();
  CHECK(text.find("# TYPE cairn_ingest_stage_seconds_total counter") != std::string::npos);
}

TEST_CASE("a stage timer counts its scope's CPU and events, less what it excludes") {
  metrics_registry reg;
  ingest_costs costs{reg};
  {
    stage_timer t{&costs, ingest_stage::parse, 2};
    burn(20);
    t.count(3);
    auto inner = thread_cpu_ns();
    burn(20);
    t.exclude(thread_cpu_ns() - inner);
  }
  auto parse = costs.totals()[1];
  CHECK(parse.events == 5);
  CHECK(parse.ns >= 20'000'000);
  CHECK(parse.ns < 35'000'000); // the excluded 20 ms are not in it
  {
    stage_timer none{nullptr, ingest_stage::apply, 7}; // times nothing
    none.count(1);
  }
  CHECK(costs.totals()[6].events == 0);
}

TEST_CASE("a sampled timer counts every event and estimates the untimed runs' CPU") {
  metrics_registry reg;
  ingest_costs costs{reg};
  for (int i = 0; i < 8; ++i) {
    stage_timer t{&costs, ingest_stage::apply, 10, 4};
    burn(5);
    t.exclude(1); // harmless on an untimed run
  }
  auto apply = costs.totals()[6];
  CHECK(apply.events == 80);
  // Two timed runs (the 4th and the 8th), each standing for four: ~40 ms.
  CHECK(apply.ns >= 36'000'000);
  CHECK(apply.ns < 60'000'000);
  // A run after the 8th is untimed again: its events count, its CPU waits
  // for the next timed run.
  {
    stage_timer t{&costs, ingest_stage::apply, 10, 4};
    burn(5);
  }
  CHECK(costs.totals()[6].events == 90);
  CHECK(costs.totals()[6].ns == apply.ns);
}

TEST_CASE("I/O threads' CPU: counted while they run, kept after the join") {
  boost::asio::io_context ioc;
  cairn::runtime::detail::io_threads threads;
  CHECK(threads.cpu_ns() == 0);
  threads.start(ioc, 2, "test");
  std::atomic<int> done{0};
  for (int i = 0; i < 2; ++i)
    boost::asio::post(ioc, [&] {
      burn(30);
      ++done;
    });
  while (done < 2)
    std::this_thread::sleep_for(std::chrono::milliseconds{2});
  auto running = threads.cpu_ns();
  CHECK(running >= 60'000'000);
  threads.run_out();
  auto joined = threads.cpu_ns();
  CHECK(joined >= running);
  CHECK(threads.cpu_ns() == joined); // no clock of a joined thread is read
}

}
