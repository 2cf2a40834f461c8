// Tiers: tumbling event-time windows of one resolution, kept for a retention.
//
// A `tier_set` is the node's ordered list of tiers, finest first, parsed from
// config entries like "1s:15m". Immutable after construction; safe to share
// between threads.
#pragma once

#include "cqrs/time.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cairn::cqrs {

struct tier_spec {
  /// Bucket width in ms (> 0).
  millis resolution = 0;
  /// How long buckets are kept, in ms (>= resolution).
  millis retention = 0;
  /// Display name: the resolution as written by format_duration, e.g. "1s".
  std::string name;
};

/// Parses "RES:RETENTION", e.g. "1s:15m". Returns nullopt on bad syntax, a
/// zero resolution, or a retention shorter than the resolution.
[[nodiscard]] std::optional<tier_spec> parse_tier(std::string_view text);

class tier_set {
public:
  tier_set() = default;

  /// Builds a set from specs; sorts finest first. Throws std::invalid_argument
  /// if `specs` is empty, if two tiers share a resolution, or if a coarser
  /// resolution is not a multiple of a finer one (configuration error).
  explicit tier_set(std::vector<tier_spec> specs);

  /// Parses config strings like {"1s:15m","1m:2d"}; throws
  /// std::invalid_argument with a readable message on any bad entry.
  static tier_set parse(const std::vector<std::string>& texts);

  const std::vector<tier_spec>& tiers() const noexcept { return tiers_; }
  size_t size() const noexcept { return tiers_.size(); }
  const tier_spec& operator[](size_t i) const { return tiers_[i]; }

  /// The longest retention of all tiers.
  millis max_retention() const noexcept;

  /// Index of the tier serving a query starting at `from`: the finest tier
  /// whose retention covers `from` (now - retention <= from); the coarsest
  /// tier if none does.
  size_t select(millis from, millis now) const noexcept;

private:
  std::vector<tier_spec> tiers_;
};

} // namespace cairn::cqrs
