#include "cqrs/event_batch.hpp"

#include "cqrs/series_key.hpp"

namespace cairn::cqrs {

void split_by_partition(const event_batch& in, uint32_t partitions,
                        std::vector<event_batch>& out) {
  out.resize(partitions);
  for (auto& b : out)
    b.clear();
  if (partitions == 0)
    return;
  for (auto& e : in.entries)
    out[partition_of(e.hash, partitions)].add(in.key(e), e.hash, e.ts,
                                               e.value);
}

} // namespace cairn::cqrs
