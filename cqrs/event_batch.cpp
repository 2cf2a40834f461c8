#include "cqrs/event_batch.hpp"

#include "cqrs/series_key.hpp"

#include <utility>
#include <vector>

namespace cairn::cqrs {

void split_by_partition(const event_batch& in, uint32_t partitions,
                        std::vector<event_batch>& out) {
  out.resize(partitions);
  for (auto& b : out)
    b.clear();
  if (partitions == 0)
    return;
  // Size every output once: the callers move the batches away, so each
  // call starts from empty buffers, and growing them event by event was
  // the parser's main source of malloc/free.
  thread_local std::vector<std::pair<size_t, size_t>> sizes;  // events, key bytes
  thread_local std::vector<uint32_t> owner;  // partition of each event
  sizes.assign(partitions, {0, 0});
  owner.resize(in.entries.size());
  for (size_t i = 0; i < in.entries.size(); ++i) {
    const auto& e = in.entries[i];
    owner[i] = partition_of(e.hash, partitions);
    auto& [events, bytes] = sizes[owner[i]];
    ++events;
    bytes += e.key_length;
  }
  for (uint32_t p = 0; p < partitions; ++p) {
    out[p].entries.reserve(sizes[p].first);
    out[p].keys.reserve(sizes[p].second);
  }
  for (size_t i = 0; i < in.entries.size(); ++i) {
    const auto& e = in.entries[i];
    out[owner[i]].add(in.key(e), e.hash, e.ts, e.value);
  }
}

} // namespace cairn::cqrs
