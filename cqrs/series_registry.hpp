// series_registry: the series a node holds, for the cardinality guard
// (`cairn.limits.max-series`, docs/configuration.md).
//
// Partitions insert the hash of every series they create and erase the
// hashes of series eviction removes; parsers ask `admits(hash)` before they
// accept an event. Below the limit that is one relaxed atomic load; at the
// limit a shared lock and a hash lookup. Series are told apart by their
// 64-bit hash (series_hash): two keys with one hash would count once.
// Admission is checked before the partition applies the event, so series
// created concurrently can overshoot the limit by the new series in flight
// (at most the batches in flight), never more.
//
// Thread-safe: any thread may call any function.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <unordered_set>

namespace cairn::cqrs {

class series_registry {
public:
  /// `limit` = 0: no limit.
  explicit series_registry(uint64_t limit = 0) : limit_(limit) {}

  uint64_t limit() const noexcept { return limit_; }
  uint64_t size() const noexcept {
    return size_.load(std::memory_order_relaxed);
  }

  /// True if an event of the series with `hash` may be applied: the series
  /// exists, or the node holds fewer than limit() series.
  bool admits(uint64_t hash) const {
    if (limit_ == 0 || size() < limit_)
      return true;
    std::shared_lock lock{mtx_};
    return hashes_.count(hash) != 0;
  }

  void insert(uint64_t hash) {
    std::unique_lock lock{mtx_};
    if (hashes_.insert(hash).second)
      size_.fetch_add(1, std::memory_order_relaxed);
  }

  void erase(uint64_t hash) {
    std::unique_lock lock{mtx_};
    if (hashes_.erase(hash) != 0)
      size_.fetch_sub(1, std::memory_order_relaxed);
  }

  /// True at most once per `period_ms` (the guard's log line); `now_ms` is
  /// the caller's wall clock.
  bool should_log(int64_t now_ms, int64_t period_ms = 60000) {
    auto last = last_log_.load(std::memory_order_relaxed);
    return now_ms - last >= period_ms
           && last_log_.compare_exchange_strong(last, now_ms);
  }

  /// Events rejected by the guard so far (counted by the callers).
  std::atomic<uint64_t> rejected{0};

private:
  uint64_t limit_;
  std::atomic<uint64_t> size_{0};
  std::atomic<int64_t> last_log_{INT64_MIN / 2};
  mutable std::shared_mutex mtx_;
  std::unordered_set<uint64_t> hashes_;
};

} // namespace cairn::cqrs
