// store_memory: the compact store's memory for a history, without a node.
//
// Fills one series_store per partition the way a node holding history
// would be filled in real time (docs/benchmarks.md, "Memory"): SERIES
// series, RATE events per series per second for HISTORY seconds, integer
// lognormal values, the clock advancing with the events and a seal pass
// every second. Then prints the store's own accounting and the heap in use
// (mallinfo2), so a layout change can be judged in seconds, not in a
// five-minute node fill.
//
//   build/bench/store_memory [series=10000] [rate=1] [history=3600] [partitions=8]
#ifndef STORE_MEMORY_NO_POOL
#include "cqrs/detail/stream_pool.hpp"
#endif
#include "cqrs/series_key.hpp"
#include "cqrs/series_store.hpp"
#include "cqrs/tier.hpp"

#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

using namespace cairn::cqrs;

int main(int argc, char** argv) {
  auto arg = [&](int i, long fallback) {
    return argc > i ? std::atol(argv[i]) : fallback;
  };
  long series = arg(1, 10000), rate = arg(2, 1), history = arg(3, 3600);
  long partitions = arg(4, 8);
  auto tiers = tier_set::parse({"1s:15m", "1m:2d", "1h:90d"});
  std::vector<series_store> stores;
  for (long p = 0; p < partitions; ++p)
    stores.emplace_back(tiers, ddsketch_mapping{0.01});
  std::vector<std::string> keys;
  const char* regions[] = {"eu", "us", "ap", "sa"};
  for (long i = 0; i < series; ++i) {
    keys.push_back(make_series_key("bench.m" + std::to_string(i % 10),
                                   {{"host", "h" + std::to_string(i)},
                                    {"region", regions[i % 4]}}));
  }
  std::mt19937_64 rng{42};
  std::lognormal_distribution<double> values{3.0, 0.8};
  std::uniform_int_distribution<int> jitter{0, 99};
  auto start = std::chrono::steady_clock::now();
  const millis t0 = 1'700'000'000'000;
  uint64_t events = 0;
  for (long s = 0; s < history; ++s) {
    millis now = t0 + s * 1000;
    for (auto& st : stores)
      st.set_clock(now);
    for (long i = 0; i < series; ++i)
      for (long r = 0; r < rate; ++r) {
        auto ts = now + (r * 1000 / rate) + jitter(rng) / rate;
        stores[series_hash(keys[i]) % partitions].apply(
          keys[i], ts, std::max(1.0, std::round(values(rng))));
        ++events;
      }
    for (auto& st : stores) {
      (void) st.seal(now + 1000);
      (void) st.evict(now + 1000);
    }
  }
  for (auto& st : stores)
    (void) st.seal(t0 + history * 1000 + 10'000);
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now()
                                            - start)
                .count();
  store_memory total;
  total.sealed_buckets.assign(tiers.size(), 0);
  total.sealed_bytes.assign(tiers.size(), 0);
  for (auto& st : stores) {
    auto m = st.memory();
    total.open_buckets += m.open_buckets;
    total.open_bytes += m.open_bytes;
    total.dictionary_bytes += m.dictionary_bytes;
    for (size_t t = 0; t < tiers.size(); ++t) {
      total.sealed_buckets[t] += m.sealed_buckets[t];
      total.sealed_bytes[t] += m.sealed_bytes[t];
    }
  }
  malloc_trim(0);
#ifndef STORE_MEMORY_NO_POOL
  detail::stream_pool_trim();
#endif
  auto mi = mallinfo2();
  std::printf("events %llu in %.1f s (%.0f ns/event)\n",
              static_cast<unsigned long long>(events), secs,
              secs * 1e9 / static_cast<double>(events));
  std::printf("open buckets %llu: %.1f MB (%.0f B each)\n",
              static_cast<unsigned long long>(total.open_buckets),
              total.open_bytes / 1e6,
              total.open_buckets ? double(total.open_bytes) / double(total.open_buckets) : 0.0);
  for (size_t t = 0; t < tiers.size(); ++t)
    std::printf("sealed %s: %llu buckets, %.1f MB (%.2f B each)\n",
                tiers[t].name.c_str(),
                static_cast<unsigned long long>(total.sealed_buckets[t]),
                total.sealed_bytes[t] / 1e6,
                total.sealed_buckets[t] ? double(total.sealed_bytes[t]) / double(total.sealed_buckets[t]) : 0.0);
  std::printf("dictionary %.1f MB\n", total.dictionary_bytes / 1e6);
  long rss_pages = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    long size = 0;
    if (std::fscanf(f, "%ld %ld", &size, &rss_pages) != 2)
      rss_pages = 0;
    std::fclose(f);
  }
#ifndef STORE_MEMORY_NO_POOL  // built against a library without the pool
  auto pool = detail::stream_pool_usage();
  std::printf("stream pool %.1f MB from the system, %.1f MB in use\n",
              pool.system_bytes / 1e6, pool.used_bytes / 1e6);
#endif
  std::printf("RSS %.1f MB\n", rss_pages * 4096.0 / 1e6);
  std::printf("heap in use %.1f MB (arena %.1f MB, mmap %.1f MB)\n",
              double(mi.uordblks + mi.hblkhd) / 1e6, double(mi.arena) / 1e6,
              double(mi.hblkhd) / 1e6);
}
