// series_index: the series of a node's local partitions by metric, so that a
// read needing a selector's series does not ask every partition for them
// (the Prometheus API's `series` step, docs/prometheus-api.md, "Latency").
//
// Each partition *attaches* once its store is recovered (every series it
// holds, replacing whatever it had listed before), then tells the index
// about every series it creates and every series eviction removes,
// synchronously inside apply/evict: a series is listed before the first
// write to it is acknowledged. It *detaches* when it stops (its series are
// dropped). `add`/`remove` of a partition that is not attached are ignored,
// so the replay of a recovering partition costs nothing here. A reader
// uses the series of the attached partitions and must ask the others
// (match() says which are covered): a partition that never attaches (one
// still recovering, a remote one) is asked as before.
//
// Memory: one copy of each key and a map node per series (the figures in
// docs/prometheus-api.md).
//
// Thread-safe: writers (the partitions) take an exclusive lock, readers a
// shared one. No CAF.
#pragma once

#include "cqrs/series_key.hpp"

#include <cstdint>
#include <map>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace cairn::cqrs {

class series_index {
public:
  /// Partitions are 0 .. partitions - 1.
  explicit series_index(uint32_t partitions);

  uint32_t partitions() const noexcept { return partitions_; }

  /// Replaces the series of `partition` with `keys` and marks it attached.
  /// Returns a token for detach (a newer attach of the same partition makes
  /// older tokens void). Out-of-range partitions: ignored, token 0.
  uint64_t attach(uint32_t partition, const std::vector<std::string>& keys);

  /// Drops the series of `partition` and marks it not attached, if `token`
  /// is that of its latest attach.
  void detach(uint32_t partition, uint64_t token);

  /// A series created (`add`) or evicted (`remove`) by an attached partition.
  void add(uint32_t partition, std::string_view key);
  void remove(uint32_t partition, std::string_view key);

  /// Appends to `out`, in key order, the keys of attached partitions' series
  /// of `metric` (every metric if empty) that carry every tag of `where`; at
  /// most `limit` keys (the smallest). Returns, by partition, whether the
  /// answer covers it (it was attached), read under the same lock.
  std::vector<bool> match(std::string_view metric, const std::vector<tag>& where,
                          size_t limit, std::vector<std::string>& out) const;

  /// Number of series listed (tests, stats).
  size_t size() const;

private:
  struct entry {
    uint32_t partition = 0;
  };
  /// metric -> key -> owner. std::less<> for lookups by string_view.
  using keys_type = std::map<std::string, entry, std::less<>>;

  void erase_partition(uint32_t partition);

  uint32_t partitions_;
  mutable std::shared_mutex mtx_;
  std::map<std::string, keys_type, std::less<>> by_metric_;
  /// By partition: the token of its current attach, 0 = not attached.
  std::vector<uint64_t> attached_;
  uint64_t next_token_ = 1;
  size_t size_ = 0;
};

} // namespace cairn::cqrs
