// Micro-benchmarks of the domain hot paths: event parsing, projection
// updates and a typical dashboard query. Run with --benchmark_min_time=0.2.
#include "cqrs/event_parser.hpp"
#include "cqrs/influx_parser.hpp"
#include "cqrs/series_store.hpp"

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <random>

using namespace cairn::cqrs;

namespace {

/// Heap allocations by operator new in this process (the apply benchmarks
/// report them per event: issue 14 wants none on the steady path).
std::atomic<uint64_t> allocations{0};

} // namespace

void* operator new(std::size_t n) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n))
    return p;
  throw std::bad_alloc{};
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

constexpr millis base_ts = 1'764'190'000'000;

tier_set bench_tiers() { return tier_set::parse({"1s:15m", "1m:2d", "1h:90d"}); }

/// Realistic event lines: 4 tags, mixed values, increasing timestamps.
std::vector<std::string> event_lines(size_t n) {
  std::mt19937_64 rng{1};
  std::lognormal_distribution<double> latency{3, 1};
  const char* services[] = {"api", "web", "auth", "billing"};
  const char* regions[] = {"eu-west-1", "us-east-1", "ap-south-1"};
  const char* paths[] = {"/api/v1/items", "/api/v1/users", "/login", "/health"};
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    char buf[512];
    snprintf(buf, sizeof buf,
             R"({"metric":"http.latency_ms","ts":%lld,"value":%.3f,)"
             R"("tags":{"service":"%s","region":"%s","host":"host-%02d","path":"%s"}})",
             static_cast<long long>(base_ts + static_cast<millis>(i)),
             latency(rng), services[rng() % 4], regions[rng() % 3],
             static_cast<int>(rng() % 50), paths[rng() % 4]);
    out.emplace_back(buf);
  }
  return out;
}

void BM_parse_line(benchmark::State& state) {
  auto lines = event_lines(4096);
  event_parser parser;
  event_batch batch;
  size_t i = 0, bytes = 0;
  for (auto _ : state) {
    auto& line = lines[i++ & 4095];
    bytes += line.size();
    auto r = parser.parse_line(line, base_ts + 1000, batch);
    benchmark::DoNotOptimize(r.kind);
    if (batch.size() == 1024)
      batch.clear();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK(BM_parse_line);

/// The same events as line protocol (ns timestamps, what Telegraf sends):
/// http,host=..,path=..,region=..,service=.. latency_ms=V TS.
void BM_parse_influx_line(benchmark::State& state) {
  std::vector<std::string> lines;
  for (auto& json_line : event_lines(4096)) {
    auto j = nlohmann::json::parse(json_line);
    std::string l = "http";
    for (auto& [k, v] : j["tags"].items())
      l += "," + k + "=" + v.get<std::string>();
    char buf[128];
    snprintf(buf, sizeof buf, " latency_ms=%.3f %lld000000",
             j["value"].get<double>(), j["ts"].get<long long>());
    lines.push_back(l + buf);
  }
  influx_parser parser;
  event_batch batch;
  size_t i = 0, bytes = 0;
  for (auto _ : state) {
    auto& line = lines[i++ & 4095];
    bytes += line.size();
    auto r = parser.parse_line(line, base_ts + 1000, influx_precision::ns, batch);
    benchmark::DoNotOptimize(r.events);
    if (batch.size() == 1024)
      batch.clear();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK(BM_parse_influx_line);

/// Batches of 10000 events over `series` series, 1 s of event time each.
void BM_apply(benchmark::State& state) {
  auto num_series = static_cast<size_t>(state.range(0));
  std::vector<std::string> keys;
  for (size_t s = 0; s < num_series; ++s)
    keys.push_back(make_series_key("http.latency_ms",
                                   {{"host", "host-" + std::to_string(s)},
                                    {"service", "api"}}));
  std::mt19937_64 rng{2};
  std::lognormal_distribution<double> latency{3, 1};
  constexpr size_t batch_size = 10000;
  event_batch batch;
  std::vector<double> values(batch_size);
  for (auto& v : values)
    v = latency(rng);
  series_store store{bench_tiers(), ddsketch_mapping{0.01}};
  millis t0 = base_ts;
  int64_t round = 0;
  uint64_t allocs = 0;
  for (auto _ : state) {
    state.PauseTiming();
    batch.clear();
    for (size_t i = 0; i < batch_size; ++i) {
      auto& k = keys[(i * 7919) % num_series];
      batch.add(k, series_hash(k), t0 + static_cast<millis>(i / 10), values[i]);
    }
    t0 += 1000;
    if (++round % 64 == 0)
      store.evict(t0);
    state.ResumeTiming();
    auto before = allocations.load(std::memory_order_relaxed);
    store.apply(batch);
    allocs += allocations.load(std::memory_order_relaxed) - before;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch_size));
  state.counters["allocs_per_event"] =
    static_cast<double>(allocs) / static_cast<double>(state.iterations() * batch_size);
  state.counters["buckets"] = static_cast<double>(store.bucket_count());
}
BENCHMARK(BM_apply)->Arg(100)->Arg(10000);

/// Keys of `n` series over 10 metrics and n / 10 hosts.
std::vector<std::string> spread_keys(size_t n) {
  std::vector<std::string> keys;
  for (size_t s = 0; s < n; ++s)
    keys.push_back(make_series_key("bench.m" + std::to_string(s % 10),
                                   {{"host", "h" + std::to_string(s / 10)},
                                    {"region", "eu"}}));
  return keys;
}

/// The realistic shape of issue 14 at a partition: batches of 512 events
/// over `series` series, event times uniform over the last minute, values
/// over five decades, the clock at 1 M events/s and the node's seal pass
/// once a second. Each event lands in a cold series, tier and bucket.
void BM_apply_spread(benchmark::State& state) {
  auto num_series = static_cast<size_t>(state.range(0));
  auto keys = spread_keys(num_series);
  std::mt19937_64 rng{3};
  std::uniform_int_distribution<millis> lateness{0, 60'000};
  std::uniform_real_distribution<double> decade{0, 5};
  constexpr size_t batch_size = 512;
  event_batch batch;
  series_store store{bench_tiers(), ddsketch_mapping{0.01}};
  millis now = base_ts;
  int64_t round = 0;
  uint64_t allocs = 0;
  for (auto _ : state) {
    state.PauseTiming();
    batch.clear();
    for (size_t i = 0; i < batch_size; ++i) {
      auto& k = keys[rng() % num_series];
      batch.add(k, series_hash(k), now - lateness(rng),
                std::pow(10.0, decade(rng)));
    }
    // 1 M events/s: a millisecond of wall clock per two batches.
    if (++round % 2 == 0)
      ++now;
    if (round % 2000 == 0) {
      store.seal(now);
      store.evict(now);
    }
    store.set_clock(now);
    state.ResumeTiming();
    auto before = allocations.load(std::memory_order_relaxed);
    store.apply(batch);
    allocs += allocations.load(std::memory_order_relaxed) - before;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch_size));
  state.counters["allocs_per_event"] =
    static_cast<double>(allocs) / static_cast<double>(state.iterations() * batch_size);
  state.counters["open"] = static_cast<double>(store.bucket_count());
}
BENCHMARK(BM_apply_spread)->Arg(1000)->Arg(10000)->MinTime(3);

/// Many series at a low rate, each event late by a random 0-60 s: one
/// event per series per second of the store's clock, batches of 100 series,
/// the node's seal pass (and retention) once a second, all timed. A series
/// then sees its largest lateness rarely, its learned hold decays between,
/// and many events land in windows already sealed: the reopen and re-seal
/// path (bucket_block::merge) is what this measures. Arg: series.
void BM_apply_late(benchmark::State& state) {
  auto num_series = static_cast<size_t>(state.range(0));
  auto keys = spread_keys(num_series);
  std::mt19937_64 rng{5};
  std::uniform_int_distribution<millis> lateness{0, 60'000};
  std::uniform_real_distribution<double> decade{0, 5};
  series_store store{bench_tiers(), ddsketch_mapping{0.01}};
  millis now = base_ts;
  event_batch batch;
  auto one_second = [&] {
    for (size_t first = 0; first < num_series; first += 100) {
      batch.clear();
      for (size_t s = first; s < std::min(num_series, first + 100); ++s)
        batch.add(keys[s], series_hash(keys[s]), now - lateness(rng),
                  std::pow(10.0, decade(rng)));
      now += static_cast<millis>(100'000 / num_series);
      store.set_clock(now);
      store.apply(batch);
    }
    store.seal(now);
    store.evict(now);
  };
  for (int warm = 0; warm < 180; ++warm) // holds and blocks settle
    one_second();
  auto allocs = allocations.load();
  for (auto _ : state)
    one_second();
  auto events = static_cast<double>(state.iterations() * num_series);
  state.SetItemsProcessed(static_cast<int64_t>(events));
  state.counters["allocs_per_event"] =
    static_cast<double>(allocations.load() - allocs) / events;
}
BENCHMARK(BM_apply_late)->Arg(1000)->Unit(benchmark::kMillisecond)->MinTime(3);

/// A store of 1000 series holding 10 minutes of data (one event per series
/// per second), and a 5-minute, 1 s-step query of one of its series.
struct query_fixture {
  tier_set tiers = bench_tiers();
  series_store store{tiers, ddsketch_mapping{0.01}};
  millis now = base_ts + 600'000;
  query_spec q;

  query_fixture() {
    std::mt19937_64 rng{3};
    std::lognormal_distribution<double> latency{3, 1};
    event_batch batch;
    for (millis t = base_ts; t < now; t += 1000) {
      batch.clear();
      for (int s = 0; s < 1000; ++s) {
        auto k = make_series_key("http.latency_ms",
                                 {{"host", "host-" + std::to_string(s)}});
        batch.add(k, series_hash(k), t + s % 1000, latency(rng));
      }
      store.apply(batch);
    }
    auto req = nlohmann::json::parse(
      R"({"op":"query","metric":"http.latency_ms","from":"-5m",)"
      R"("aggs":["count","avg","p99"],"where":{"host":"host-42"}})");
    q = std::get<query_spec>(parse_query(req, now, tiers));
  }
};

/// Arg finals: as the coordinator asks (the series is its own group, so
/// its points are finalised in the store), else in sketch form.
void BM_query_5m(benchmark::State& state) {
  static query_fixture f;
  auto q = f.q;
  q.finals = state.range(0) != 0;
  for (auto _ : state) {
    query_partial p;
    f.store.query(q, p);
    benchmark::DoNotOptimize(p);
  }
}
BENCHMARK(BM_query_5m)->ArgName("finals")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

void BM_query_5m_render(benchmark::State& state) {
  static query_fixture f;
  size_t points = 0;
  for (auto _ : state) {
    query_partial p;
    f.store.query(f.q, p);
    nlohmann::json out;
    render_query(f.q, p, f.tiers, f.store.mapping(), {}, out);
    points = out["series"][0]["points"].size();
    benchmark::DoNotOptimize(out);
  }
  state.counters["points"] = static_cast<double>(points);
}
BENCHMARK(BM_query_5m_render)->Unit(benchmark::kMicrosecond);

/// The group-by query of issue 10 as the node runs it, minus the actors: 8
/// partition stores holding 1000 series (host=h0..h999), one event per series
/// per second over the last hour; `p99` by host at 1-minute steps. Partials
/// of all partitions, their merge and the reply text, in one thread (the
/// node spreads the partials over its cores).
struct groupby_fixture {
  tier_set tiers = bench_tiers();
  std::vector<series_store> stores;
  millis now = base_ts + 3'600'000 + 12'345;

  /// `sealed`: the stores run a clock as the node's partitions do, so all
  /// but the last seconds are sealed blocks when queried.
  explicit groupby_fixture(bool sealed = false) {
    for (int p = 0; p < 8; ++p)
      stores.emplace_back(tiers, ddsketch_mapping{0.01});
    std::mt19937_64 rng{3};
    std::lognormal_distribution<double> latency{3, 0.8};
    std::vector<std::string> keys;
    for (int s = 0; s < 1000; ++s)
      keys.push_back(make_series_key("q.lat", {{"host", "h" + std::to_string(s)}}));
    for (millis t = now - 3'600'000; t < now; t += 1000) {
      if (sealed)
        for (auto& st : stores)
          st.set_clock(t);
      for (auto& k : keys)
        stores[series_hash(k) % 8].apply(k, t + static_cast<millis>(rng() % 1000),
                                          latency(rng));
      if (t % 300'000 < 1000)
        for (auto& st : stores)
          st.evict(t);
    }
    for (auto& st : stores) {
      st.evict(now);
      if (sealed) { // the second pass seals what the first saw quiet
        st.seal(now);
        st.seal(now);
      }
    }
  }

  query_spec parse(const char* from, bool fine_tier) const {
    auto req = nlohmann::json::parse(R"({"op":"query","metric":"q.lat","step":"1m",)"
                                     R"("aggs":["p99"],"group_by":["host"]})");
    req["from"] = from;
    auto q = std::get<query_spec>(parse_query(req, now, tiers));
    if (fine_tier) { // what the tier chosen from `from` alone would read
      q.tier = tiers.select(q.from, now);
      q.segments.clear();
    }
    return q;
  }
};

const groupby_fixture& groupby() {
  static groupby_fixture f;
  return f;
}

const groupby_fixture& groupby_sealed() {
  static groupby_fixture f{true};
  return f;
}

/// The coordinator's path: points finalised in the stores where a group is
/// one series (query_spec::finals), unless `sketch_form` (the path before,
/// and that of partials for other nodes).
void run_groupby(benchmark::State& state, query_spec q, bool render,
                 bool sketch_form = false,
                 const groupby_fixture& f = groupby()) {
  q.finals = !sketch_form;
  size_t bytes = 0;
  for (auto _ : state) {
    query_partial merged;
    for (auto& st : f.stores) {
      query_partial part;
      st.query(q, part);
      merged.merge(std::move(part));
    }
    if (merged.collided)
      state.SkipWithError("groups collided");
    if (render) {
      std::string text;
      render_query_text(q, merged, f.tiers, f.stores[0].mapping(), {}, nullptr, text);
      bytes = text.size();
      benchmark::DoNotOptimize(text);
    }
    benchmark::DoNotOptimize(merged);
  }
  state.counters["reply_bytes"] = static_cast<double>(bytes);
}

void BM_groupby_5m(benchmark::State& state) {
  run_groupby(state, groupby().parse("-5m", state.range(0) != 0), true);
}
BENCHMARK(BM_groupby_5m)->ArgName("fine_tier")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

void BM_groupby_5m_partials(benchmark::State& state) {
  run_groupby(state, groupby().parse("-5m", false), false);
}
BENCHMARK(BM_groupby_5m_partials)->Unit(benchmark::kMillisecond);

void BM_groupby_1h(benchmark::State& state) {
  run_groupby(state, groupby().parse("-1h", false), true);
}
BENCHMARK(BM_groupby_1h)->Unit(benchmark::kMillisecond);

void BM_groupby_sketch_form(benchmark::State& state) {
  run_groupby(state, groupby().parse(state.range(0) != 0 ? "-1h" : "-5m", false),
              true, true);
}
BENCHMARK(BM_groupby_sketch_form)->ArgName("hour")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

/// As the node reads: from sealed blocks. Args: hour (else 5 minutes),
/// sketch_form (the path before finals).
void BM_groupby_sealed(benchmark::State& state) {
  auto& f = groupby_sealed();
  run_groupby(state, f.parse(state.range(0) != 0 ? "-1h" : "-5m", false), true,
              state.range(1) != 0, f);
}
BENCHMARK(BM_groupby_sealed)
  ->ArgNames({"hour", "sketch_form"})
  ->Args({0, 0})->Args({0, 1})->Args({1, 0})->Args({1, 1})
  ->Unit(benchmark::kMillisecond);

/// BM_groupby_sealed/hour:0 with `from` and `to` on minute boundaries: no
/// point has an edge of 1 s buckets, so against it the edges' cost shows.
void BM_groupby_sealed_aligned(benchmark::State& state) {
  auto& f = groupby_sealed();
  auto q = f.parse("-5m", false);
  auto to = f.now - f.now % 60'000;
  auto req = nlohmann::json::parse(R"({"op":"query","metric":"q.lat","step":"1m",)"
                                   R"("aggs":["p99"],"group_by":["host"]})");
  req["from"] = to - 300'000;
  req["to"] = to;
  run_groupby(state, std::get<query_spec>(parse_query(req, f.now, f.tiers)), true,
              false, f);
}
BENCHMARK(BM_groupby_sealed_aligned)->Unit(benchmark::kMillisecond);

void BM_groupby_1h_partials(benchmark::State& state) {
  run_groupby(state, groupby().parse("-1h", false), false);
}
BENCHMARK(BM_groupby_1h_partials)->Unit(benchmark::kMillisecond);

} // namespace
