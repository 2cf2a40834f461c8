// store_access: reads of the partitions' stores from threads other than
// their actors' (the Prometheus API's inline reads, docs/prometheus-api.md
// "Latency"), without a message to the partition.
//
// Why: a single-series query_range spends most of its time handing the
// request from the HTTP I/O thread to a CAF worker and the answer back
// (a sleeping worker polls every 50 µs), not reading the store. A
// partition's store is still written by its actor only; every message the
// actor handles runs under the partition's latch (introspectable_actor's
// consume, via partition_state::consume_guard), and a reader on another
// thread only *tries* the latch: when the partition is busy the reader gets
// nothing and the caller takes the message path instead. So no I/O thread
// ever waits for an actor, and a partition waits at most for one read in
// progress (bounded by the caller's limits on what it reads inline).
//
// A partition attaches its store once it is recovered and detaches when it
// stops (its state's destructor, under the latch): readers never see a
// store being recovered, replaced or destroyed.
//
// Threading: attach/detach/writer on the partition's thread (the latch is
// recursive: a detach inside a handler is fine); try_read from any thread.
// No CAF.
#pragma once

#include "cqrs/series_store.hpp"

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace cairn::actors {

class store_access {
public:
  explicit store_access(uint32_t partitions);

  uint32_t partitions() const noexcept {
    return static_cast<uint32_t>(slots_.size());
  }

  /// The store of `partition` may be read from now on (out of range: ignored).
  void attach(uint32_t partition, const cqrs::series_store* store);

  /// No more reads of `partition`'s store; waits for a read in progress.
  void detach(uint32_t partition);

  /// What the partition holds while it handles a message: the latch, and
  /// the store_access itself (the handler may drop the last other owner).
  class writer_guard {
  public:
    writer_guard() = default;
    writer_guard(std::shared_ptr<store_access> owner, uint32_t partition);

  private:
    std::shared_ptr<store_access> owner_;
    std::unique_lock<std::recursive_mutex> lock_;  ///< released first
  };

  /// The partition's latch (blocks while another thread reads its store);
  /// an empty guard for a null `access` or an out-of-range partition.
  [[nodiscard]] static writer_guard writer(std::shared_ptr<store_access> access,
                                           uint32_t partition);

  /// Runs f(store) on the calling thread if `partition` is attached and its
  /// latch is free right now; returns false (f not called) otherwise. Never
  /// waits.
  template <class F>
  [[nodiscard]] bool try_read(uint32_t partition, F&& f) const {
    if (partition >= slots_.size())
      return false;
    auto& slot = *slots_[partition];
    std::unique_lock<std::recursive_mutex> lock{slot.latch, std::try_to_lock};
    if (!lock.owns_lock() || slot.store == nullptr)
      return false;
    f(*slot.store);
    return true;
  }

private:
  struct alignas(64) slot {
    mutable std::recursive_mutex latch;
    const cqrs::series_store* store = nullptr;
  };
  std::vector<std::unique_ptr<slot>> slots_;
};

} // namespace cairn::actors
