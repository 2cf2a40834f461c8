#include "actors/inline_reads.hpp"

#include "cqrs/time.hpp"

#include <chrono>

namespace cairn::actors {

inline_reads::inline_reads(settings_ptr settings) : settings_(std::move(settings)) {
  if (settings_ && settings_->metrics) {
    requests_ = &settings_->metrics->counter("cairn_requests_total",
                                             "Requests (lines with an op) handled");
    latency_ = &settings_->metrics->histogram(
      "cairn_query_latency_seconds", "Client reads from request to answer, by op",
      {{"op", "prometheus"}});
    auto help = "Prometheus API reads served inline (done) or declined because a "
                "partition was busy (busy)";
    done_ = &settings_->metrics->counter("cairn_prometheus_inline_reads_total", help,
                                         {{"result", "done"}});
    busy_ = &settings_->metrics->counter("cairn_prometheus_inline_reads_total", help,
                                         {{"result", "busy"}});
  }
}

bool inline_reads::ready() const {
  return settings_ && !settings_->cluster.enabled && settings_->series_index
         && settings_->stores
         && settings_->status.load() == node_status::ready;
}

bool inline_reads::series(const std::string& metric,
                          const std::vector<cqrs::tag>& where, size_t limit,
                          std::vector<inline_series>& out) const {
  if (!ready() || metric.empty())
    return false;
  std::vector<std::string> keys;
  auto covered = settings_->series_index->match(metric, where, limit + 1, keys);
  for (auto c : covered)
    if (!c)
      return false;  // a partition not attached (still recovering, stopped)
  if (requests_)
    requests_->fetch_add(1, std::memory_order_relaxed);
  out.clear();
  out.reserve(keys.size());
  for (auto& key : keys) {
    inline_series s;
    if (!cqrs::decode_series_tags(key, s.tags))
      return false;
    s.key = std::move(key);
    out.push_back(std::move(s));
  }
  return true;
}

inline_status inline_reads::read(const inline_read& r, std::vector<inline_points>& out,
                                 cqrs::problem& error) const {
  if (!ready())
    return inline_status::busy;
  auto start = std::chrono::steady_clock::now();
  // The spec the `query` op would build from the same request (the same
  // validation, the same segments), without the request object.
  auto parsed = cqrs::make_query(r.metric, r.from, r.to, r.step, r.align, r.aggs,
                                 cqrs::wall_clock_now(), settings_->tiers);
  if (auto* p = std::get_if<cqrs::problem>(&parsed)) {
    if (requests_)
      requests_->fetch_add(1, std::memory_order_relaxed);
    error = std::move(*p);
    return inline_status::error;
  }
  auto& spec = std::get<cqrs::query_spec>(parsed);
  out.assign(r.keys.size(), inline_points{});
  // Keys by partition, each partition read under its latch once.
  auto& stores = *settings_->stores;
  auto partitions = stores.partitions();
  std::vector<std::vector<size_t>> by_partition(partitions);
  for (size_t i = 0; i < r.keys.size(); ++i)
    by_partition[cqrs::partition_of(cqrs::series_hash(r.keys[i]), partitions)]
      .push_back(i);
  for (uint32_t p = 0; p < partitions; ++p) {
    if (by_partition[p].empty())
      continue;
    bool ordered = true;
    bool read = stores.try_read(p, [&](const cqrs::series_store& store) {
      for (auto i : by_partition[p]) {
        auto found = store.query_series(r.keys[i], spec, out[i].finals, out[i].values);
        if (found == cqrs::series_store::series_read::unordered)
          ordered = false;
      }
    });
    if (!read || !ordered) {
      if (busy_)
        busy_->fetch_add(1, std::memory_order_relaxed);
      return inline_status::busy;
    }
  }
  if (requests_)
    requests_->fetch_add(1, std::memory_order_relaxed);
  if (done_)
    done_->fetch_add(1, std::memory_order_relaxed);
  if (latency_)
    latency_->observe(std::chrono::steady_clock::now() - start);
  return inline_status::done;
}

} // namespace cairn::actors
