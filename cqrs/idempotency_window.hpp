// idempotency_window: the idempotency keys a partition applied recently.
//
// An ingest carrying an idempotency key is applied at most once: the
// partition checks `contains` before applying and `insert`s the key with the
// batch's journal record, so replay rebuilds the same set. The set is bounded
// both by count (oldest keys are forgotten first) and by time (keys inserted
// more than `window` ago are dropped by `expire`). It is persisted in
// snapshots through `encode`/`decode`.
//
// Deterministic: the state depends only on the sequence of calls and their
// `now` arguments (never on a clock), so snapshot + replay equals full replay.
// Insertion times are clamped to be non-decreasing (a clock stepping back
// cannot reorder expiry). Single writer: owned by one partition; not
// thread-safe.
#pragma once

#include "cqrs/time.hpp"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_set>

namespace cairn::cqrs {

class idempotency_window {
public:
  /// `max_keys` > 0 bounds the count; `window` > 0 bounds the age in ms
  /// (0 = no time bound).
  idempotency_window(size_t max_keys, millis window);

  idempotency_window(const idempotency_window&);
  idempotency_window& operator=(const idempotency_window&);
  idempotency_window(idempotency_window&&) noexcept;
  idempotency_window& operator=(idempotency_window&&) noexcept;
  ~idempotency_window();

  // -- queries ----------------------------------------------------------------

  /// True if `key` was inserted and is neither expired nor evicted yet. Call
  /// `expire(now)` first for an exact time bound.
  bool contains(std::string_view key) const;

  size_t size() const noexcept { return order_.size(); }
  bool empty() const noexcept { return order_.empty(); }
  size_t max_keys() const noexcept { return max_keys_; }
  millis window() const noexcept { return window_; }
  /// Approximate heap bytes held (keys, order, index).
  size_t memory_usage() const noexcept;

  // -- updates ----------------------------------------------------------------

  /// Remembers `key` as seen at `now` (no-op for an empty key or a key
  /// already present: its original time is kept). Evicts the oldest key if
  /// the count bound is exceeded.
  void insert(std::string key, millis now);

  /// Drops the keys inserted at or before `now - window`.
  void expire(millis now);

  void clear();

  // -- persistence ------------------------------------------------------------

  /// Appends a versioned encoding of the keys and their times to `out`.
  void encode(std::string& out) const;

  /// Replaces the keys with those decoded from `in`, then applies this
  /// window's count bound (the bounds are configuration, not state). Returns
  /// false (state unchanged) on malformed input or an unknown version.
  [[nodiscard]] bool decode(std::string_view in);

  /// Same keys with the same times in the same order.
  friend bool operator==(const idempotency_window& x,
                         const idempotency_window& y);

private:
  struct entry {
    std::string key;
    millis at;
  };

  void rebuild_index();
  void pop_oldest();

  size_t max_keys_;
  millis window_;
  /// Keys in insertion order; a deque never moves its elements on
  /// push_back/pop_front, so the views in `index_` stay valid.
  std::deque<entry> order_;
  std::unordered_set<std::string_view> index_;
};

} // namespace cairn::cqrs
