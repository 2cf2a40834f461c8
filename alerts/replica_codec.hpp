// replica_codec: the bodies of the alert replication messages between the
// alert managers of a cluster (docs/alerting.md, "Cluster"; the message is
// actors/messages.hpp's alert_peer_msg).
//
//   digest   body "1 <uptime ms>" when the sender evaluates rules (its
//            start-up hold is over), "0 <uptime ms>" while it holds;
//            `digest` = replica_set::digest()
//   stamps   JSON [[key, clock, origin], …] of every covered item
//   pull     JSON [key, …]: send me these items
//   items    JSON [{"k","c","o","d","v","at"}, …] (v: the item's JSON text)
//   buckets  binary: varint count, then per bucket varint key length, key,
//            svarint start, byte correction, cqrs::encode_bucket
//   done     JSON [instance key, notice key]: every receiver had it
//
// Pure functions; no threads, no actors. Decoders return false on
// malformed input.
#pragma once

#include "alerts/replica.hpp"
#include "cqrs/series_store.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cairn::alerts {

enum class peer_kind : uint8_t {
  digest = 1,
  stamps = 2,
  pull = 3,
  items = 4,
  buckets = 5,
  done = 6,
};

std::string encode_items(const std::vector<const replica_item*>& items);
[[nodiscard]] bool decode_items(std::string_view in,
                                std::vector<replica_item>& out);

std::string encode_stamps(const replica_set& s);
[[nodiscard]] bool
decode_stamps(std::string_view in,
              std::vector<std::pair<std::string, stamp>>& out);

std::string encode_keys(const std::vector<std::string>& keys);
[[nodiscard]] bool decode_keys(std::string_view in,
                               std::vector<std::string>& out);

/// Closed buckets (their tier is not sent: the finest tier's only).
void encode_buckets(const std::vector<const cqrs::closed_bucket*>& buckets,
                    std::string& out);
[[nodiscard]] bool decode_buckets(std::string_view in,
                                  std::vector<cqrs::closed_bucket>& out);

} // namespace cairn::alerts
