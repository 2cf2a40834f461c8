#include "runtime/ingest_costs.hpp"

#include <time.h>

#include <algorithm>

namespace cairn::runtime {

std::string_view to_string(ingest_stage s) noexcept {
  static constexpr std::string_view names[ingest_stage_count]
    = {"read", "parse", "split", "route", "encode", "write", "apply"};
  return names[static_cast<size_t>(s)];
}

int64_t thread_cpu_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

ingest_costs::ingest_costs(metrics_registry& metrics) {
  for (size_t i = 0; i < ingest_stage_count; ++i) {
    metric_labels labels{{"stage", std::string{to_string(static_cast<ingest_stage>(i))}}};
    ns_[i] = &metrics.counter("cairn_ingest_stage_seconds_total",
                              "CPU time spent on a stage of the ingest path "
                              "(docs/architecture.md, \"Ingest cost budget\")",
                              labels, 1'000'000'000);
    events_[i] = &metrics.counter("cairn_ingest_stage_events_total",
                                  "Events that went through a stage of the "
                                  "ingest path",
                                  labels);
  }
}

namespace {

/// Per thread and stage: runs since the last timed one and their events,
/// and the sums over the timed runs so far.
struct untimed {
  uint32_t runs = 0;
  uint64_t events = 0;
  double timed_ns = 0;
  double timed_events = 0;
};
thread_local std::array<untimed, ingest_stage_count> untimed_runs{};

bool sample_now(ingest_stage s, uint32_t every) noexcept {
  if (every <= 1)
    return true;
  auto& u = untimed_runs[static_cast<size_t>(s)];
  return ++u.runs >= every;
}

} // namespace

void ingest_costs::add_sampled(ingest_stage s, int64_t ns,
                               uint64_t events) noexcept {
  auto& u = untimed_runs[static_cast<size_t>(s)];
  if (ns < 0) {
    u.events += events;
    add(s, 0, events);
    return;
  }
  // The untimed runs' events at the ns per event of all timed runs of
  // this thread so far (a ratio of sums: a small batch's fixed cost,
  // divided by its few events, would overstate a mean of ratios).
  u.timed_ns += static_cast<double>(ns);
  u.timed_events += static_cast<double>(events);
  auto estimate = ns;
  if (u.events > 0 && u.timed_events > 0)
    estimate += static_cast<int64_t>(u.timed_ns * static_cast<double>(u.events)
                                     / u.timed_events);
  u.runs = 0;
  u.events = 0;
  add(s, estimate, events);
}

stage_timer::stage_timer(ingest_costs* costs, ingest_stage s, uint64_t events,
                         uint32_t sample) noexcept
  : costs_(costs), stage_(s), events_(events) {
  if (costs_ && sample_now(s, sample))
    start_ = thread_cpu_ns();
}

stage_timer::~stage_timer() {
  if (!costs_)
    return;
  costs_->add_sampled(stage_, start_ < 0 ? -1 : std::max<int64_t>(thread_cpu_ns() - start_, 0),
                      events_);
}

std::vector<ingest_costs::total> ingest_costs::totals() const {
  std::vector<total> out;
  out.reserve(ingest_stage_count);
  for (size_t i = 0; i < ingest_stage_count; ++i)
    out.push_back(total{static_cast<ingest_stage>(i),
                        ns_[i]->load(std::memory_order_relaxed),
                        static_cast<uint64_t>(
                          events_[i]->load(std::memory_order_relaxed))});
  return out;
}

} // namespace cairn::runtime
