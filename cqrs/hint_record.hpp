// hint_record: one entry of the hinted-handoff queue — the events a node
// accepted for partitions of an unreachable peer, with the idempotency key
// under which the peer applies them exactly once on redelivery.
//
// Encoding (docs/cluster.md, "Hinted handoff"): version byte 1, varint key
// length + key bytes, varint item count, then per item: varint partition,
// varint length + one journal record (cqrs/journal_record, checksummed)
// holding the batch. Pure functions, safe from any thread.
#pragma once

#include "cqrs/event_batch.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cairn::cqrs {

struct hint_record {
  std::string key;
  std::vector<uint32_t> partitions;
  std::vector<event_batch> batches;  ///< batches[i] for partitions[i]

  /// Approximate bytes held (for the queue's bound).
  size_t bytes() const noexcept;
};

void encode_hint(const hint_record& h, std::string& out);

/// Decodes `in` into `out`; false on malformed or corrupt input.
[[nodiscard]] bool decode_hint(std::string_view in, hint_record& out);

} // namespace cairn::cqrs
