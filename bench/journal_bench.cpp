// Benchmarks of the storage hot path: the journal record codec (one call per
// partition sub-batch of ~1000 events) and journal group commit.
//
//   ninja -C build journal_bench && ./build/bench/journal_bench
//
// BM_journal_append_always/threads:N runs N closed-loop clients, each
// appending one 1000-event record and waiting for its durable ack before the
// next: with group commit, N clients share fsyncs (see appends_per_fsync),
// so throughput grows with N while one client is bound by fsync latency.
#include "cqrs/journal_record.hpp"
#include "cqrs/series_key.hpp"
#include "runtime/journal.hpp"

#include <benchmark/benchmark.h>

#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <random>

using namespace cairn;

namespace {

cqrs::journal_record make_record(size_t events, size_t series) {
  std::mt19937_64 rng{42};
  std::vector<std::string> keys;
  for (size_t i = 0; i < series; ++i)
    keys.push_back(cqrs::make_series_key(
      "http.latency_ms",
      {{"service", "api-" + std::to_string(i % 10)},
       {"path", "/v1/items/" + std::to_string(i)}}));
  cqrs::journal_record rec;
  rec.accepted_at = 1'764'190'000'000;
  rec.idempotency_key = "client-1/request-12345";
  for (size_t i = 0; i < events; ++i) {
    const auto& key = keys[rng() % series];
    rec.events.add(key, cqrs::series_hash(key),
                   rec.accepted_at - static_cast<cqrs::millis>(rng() % 5000),
                   static_cast<double>(rng() % 100000) / 100.0);
  }
  return rec;
}

void BM_encode_record(benchmark::State& state) {
  auto rec = make_record(1000, static_cast<size_t>(state.range(0)));
  std::string out;
  for (auto _ : state) {
    out.clear();
    cqrs::encode_record(rec, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * 1000);
  state.SetBytesProcessed(state.iterations()
                          * static_cast<int64_t>(out.size()));
  state.counters["record_bytes"] = static_cast<double>(out.size());
}
BENCHMARK(BM_encode_record)->Arg(10)->Arg(100)->Arg(1000);

void BM_decode_record(benchmark::State& state) {
  auto rec = make_record(1000, static_cast<size_t>(state.range(0)));
  std::string bytes;
  cqrs::encode_record(rec, bytes);
  cqrs::journal_record back;
  for (auto _ : state) {
    auto r = cqrs::decode_record(bytes, back);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * 1000);
  state.SetBytesProcessed(state.iterations()
                          * static_cast<int64_t>(bytes.size()));
}
BENCHMARK(BM_decode_record)->Arg(10)->Arg(100)->Arg(1000);

void BM_crc32c(benchmark::State& state) {
  std::string data(static_cast<size_t>(state.range(0)), 'x');
  for (auto _ : state)
    benchmark::DoNotOptimize(cqrs::crc32c(data));
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_crc32c)->Arg(16 << 10);

// -- group commit -------------------------------------------------------------

std::unique_ptr<runtime::journal> shared_journal;
std::filesystem::path shared_dir;
std::string shared_record;

void BM_journal_append_always(benchmark::State& state) {
  if (state.thread_index() == 0) {
    auto pattern = (std::filesystem::temp_directory_path()
                    / "cairn-journal-bench-XXXXXX")
                     .string();
    if (mkdtemp(pattern.data()) == nullptr) {
      state.SkipWithError("mkdtemp failed");
      return;
    }
    shared_dir = pattern;
    runtime::journal_options opts;
    opts.sync = runtime::sync_mode::always;
    shared_journal = runtime::journal::open((shared_dir / "db").string(), opts);
    shared_record.clear();
    cqrs::encode_record(make_record(1000, 100), shared_record);
  }
  auto partition = static_cast<uint32_t>(state.thread_index());
  uint64_t seq = 0;
  std::mutex mtx;
  std::condition_variable cv;
  bool acked = false;
  for (auto _ : state) {
    acked = false;
    shared_journal->append(partition, ++seq, shared_record,
                           [&](bool, std::string) {
                             std::lock_guard<std::mutex> guard{mtx};
                             acked = true;
                             cv.notify_one();
                           });
    std::unique_lock<std::mutex> guard{mtx};
    cv.wait(guard, [&] { return acked; });
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations()
                          * static_cast<int64_t>(shared_record.size()));
  if (state.thread_index() == 0) {
    auto stats = shared_journal->stats();
    state.counters["appends_per_fsync"] =
      stats.fsyncs > 0 ? static_cast<double>(stats.appends)
                           / static_cast<double>(stats.fsyncs)
                       : 0.0;
    shared_journal.reset();
    std::error_code ec;
    std::filesystem::remove_all(shared_dir, ec);
  }
}
BENCHMARK(BM_journal_append_always)
  ->Threads(1)
  ->Threads(4)
  ->UseRealTime()
  ->MinTime(2.0);

} // namespace
