// event_batch: many validated events in two flat arrays (the unit of ingest).
//
// Batches are what travels on every hop of the ingest path: one actor message
// carries one batch, never one event. Series keys are stored back to back in
// one string so that building a batch of N events makes O(1) allocations
// (amortized), not O(N). Not thread-safe; moved between actors.
#pragma once

#include "cqrs/time.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cairn::cqrs {

struct event_entry {
  uint64_t hash = 0;        ///< series_hash(key)
  uint32_t key_offset = 0;  ///< offset of the series key in event_batch::keys
  uint32_t key_length = 0;
  millis ts = 0;
  double value = 0;
};

struct event_batch {
  std::string keys;
  std::vector<event_entry> entries;

  void add(std::string_view key, uint64_t hash, millis ts, double value) {
    entries.push_back(event_entry{hash, static_cast<uint32_t>(keys.size()),
                                  static_cast<uint32_t>(key.size()), ts,
                                  value});
    keys.append(key);
  }

  std::string_view key(const event_entry& e) const noexcept {
    return std::string_view{keys}.substr(e.key_offset, e.key_length);
  }

  size_t size() const noexcept { return entries.size(); }
  bool empty() const noexcept { return entries.empty(); }
  void clear() noexcept {
    keys.clear();
    entries.clear();
  }
};

/// Splits `in` into one batch per partition (out.size() == partitions after
/// the call; empty batches for partitions without events).
void split_by_partition(const event_batch& in, uint32_t partitions,
                        std::vector<event_batch>& out);

} // namespace cairn::cqrs
