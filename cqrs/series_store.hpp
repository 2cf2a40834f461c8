// series_store: the read-side projection of one partition.
//
// Maps series keys to their tiers of buckets and answers the partial queries
// of query.hpp. Applying events is the projection's `apply(state, event)`;
// it is deterministic, so snapshot + replay equals full replay. Eviction by
// retention is a separate, explicit step driven by the owner's clock.
//
// Single writer: owned by one partition actor; not thread-safe.
#pragma once

#include "cqrs/bucket.hpp"
#include "cqrs/ddsketch.hpp"
#include "cqrs/event_batch.hpp"
#include "cqrs/query.hpp"
#include "cqrs/series_key.hpp"
#include "cqrs/tier.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace cairn::cqrs {

class series_store {
public:
  series_store(tier_set tiers, ddsketch_mapping mapping);
  ~series_store();
  series_store(series_store&&) noexcept;
  series_store& operator=(series_store&&) noexcept;

  // -- write side -------------------------------------------------------------

  /// Adds every event of `batch` to every tier of its series (creating the
  /// series on first sight). Events must be validated already.
  void apply(const event_batch& batch);

  /// Adds one validated event.
  void apply(std::string_view key, millis ts, double value);

  /// Drops buckets whose start is older than now - retention of their tier,
  /// and series left without buckets. Returns the number of buckets dropped.
  size_t evict(millis now);

  // -- read side --------------------------------------------------------------

  void query(const query_spec& q, query_partial& out) const;
  void topk(const topk_spec& q, topk_partial& out) const;
  void series(const series_spec& q, series_partial& out) const;
  void metrics(metrics_partial& out) const;

  // -- properties -------------------------------------------------------------

  size_t series_count() const noexcept;
  size_t bucket_count() const noexcept;
  uint64_t events_applied() const noexcept;
  const tier_set& tiers() const noexcept;
  const ddsketch_mapping& mapping() const noexcept;

  // -- persistence ------------------------------------------------------------

  /// Appends a versioned binary encoding of the whole state to `out`.
  void encode(std::string& out) const;

  /// Replaces the state with one decoded from `in`. Returns false (state
  /// unchanged) on a version mismatch or malformed input.
  [[nodiscard]] bool decode(std::string_view in);

  /// Same series with the same buckets (used by snapshot/replay tests).
  friend bool operator==(const series_store& x, const series_store& y);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace cairn::cqrs
