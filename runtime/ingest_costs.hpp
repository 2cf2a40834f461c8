// ingest_costs: the ingest path's cost budget, kept while the node runs
// (docs/architecture.md, "Ingest cost budget"; docs/protocol.md, `stats`).
//
// Each stage of the path counts the CPU time its thread spent on it
// (CLOCK_THREAD_CPUTIME_ID: time the thread waited for a core is not in it)
// and the events that went through, so ns/event is one division away:
//
//   read     TCP I/O threads: reads, TLS, line cutting, replies
//   parse    parser actors: NDJSON and line-protocol lines parsed and validated
//   split    parser actors: events split by partition, sent on
//   route    ingestor: local batches to partitions, others to their owners
//   encode   partitions: journal records encoded and queued
//   write    journal thread: LevelDB group commits (fsync waits excluded)
//   apply    partitions: events applied to the store
//
// A stage is timed per chunk or batch (hundreds of events), never per
// event. A thread CPU clock read is a system call (665 ns on the 2-vCPU VM
// of docs/benchmarks.md), so the partitions' stages time one batch in a few
// (stage_timer's `sample`): a few ns per event in all.
// The counters are the metrics `cairn_ingest_stage_seconds_total{stage}`
// and `cairn_ingest_stage_events_total{stage}`; updates are lock-free.
#pragma once

#include "runtime/metrics.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>
#include <vector>

namespace cairn::runtime {

enum class ingest_stage : uint8_t {
  read,
  parse,
  split,
  route,
  encode,
  write,
  apply,
};

inline constexpr size_t ingest_stage_count = 7;

std::string_view to_string(ingest_stage s) noexcept;

/// The calling thread's CPU time in nanoseconds.
int64_t thread_cpu_ns() noexcept;

class ingest_costs {
public:
  /// Registers the two counter families in `metrics`.
  explicit ingest_costs(metrics_registry& metrics);

  /// Counts `ns` of CPU and `events` for stage `s`.
  void add(ingest_stage s, int64_t ns, uint64_t events) noexcept {
    auto i = static_cast<size_t>(s);
    ns_[i]->fetch_add(ns, std::memory_order_relaxed);
    events_[i]->fetch_add(static_cast<int64_t>(events),
                          std::memory_order_relaxed);
  }

  /// A sampled scope's figures (stage_timer): `ns` for its `events`, or
  /// ns < 0 if this run was not timed. The events are counted; a timed run
  /// also counts the CPU of the untimed runs before it on this thread,
  /// estimated at the ns per event of all timed runs of the thread so far.
  /// The sampling state is per thread, shared by the instances of one
  /// process (one node per process).
  void add_sampled(ingest_stage s, int64_t ns, uint64_t events) noexcept;

  /// Sets stage `s` to totals read elsewhere (a collect hook: the I/O
  /// threads' CPU clocks).
  void set(ingest_stage s, int64_t ns, uint64_t events) noexcept {
    auto i = static_cast<size_t>(s);
    ns_[i]->store(ns, std::memory_order_relaxed);
    events_[i]->store(static_cast<int64_t>(events), std::memory_order_relaxed);
  }

  struct total {
    ingest_stage stage;
    int64_t ns;
    uint64_t events;
    /// ns / events, 0 without events.
    double ns_per_event() const noexcept {
      return events == 0 ? 0.0
                         : static_cast<double>(ns) / static_cast<double>(events);
    }
  };
  /// Every stage, in path order.
  std::vector<total> totals() const;

private:
  std::array<std::atomic<int64_t>*, ingest_stage_count> ns_{};
  std::array<std::atomic<int64_t>*, ingest_stage_count> events_{};
};

/// Times one scope of stage `s` on the calling thread and counts the
/// events count() was given; a null `costs` times nothing. Reading a
/// thread's CPU clock is a system call (~0.2-0.7 us): a scope run for a
/// few hundred events may time only one in `sample` of its runs (per thread
/// and stage), and the CPU of the runs in between is estimated from it
/// (ingest_costs::add_sampled). Events are always counted exactly.
class stage_timer {
public:
  stage_timer(ingest_costs* costs, ingest_stage s, uint64_t events = 0,
              uint32_t sample = 1) noexcept;
  ~stage_timer();
  stage_timer(const stage_timer&) = delete;
  stage_timer& operator=(const stage_timer&) = delete;

  void count(uint64_t events) noexcept { events_ += events; }
  /// Leaves `ns` (timed as another stage within this scope) out.
  void exclude(int64_t ns) noexcept {
    if (start_ >= 0)
      start_ += ns;
  }

private:
  ingest_costs* costs_;
  ingest_stage stage_;
  uint64_t events_;
  int64_t start_ = -1; ///< -1: this run is not timed
};

} // namespace cairn::runtime
