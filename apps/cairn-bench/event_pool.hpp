// Pre-generated event text for cairn-bench.
//
// Generating JSON per event would cost the bench as much CPU as the node
// spends parsing it. Instead each connection builds, once, a pool of
// distinct event lines (or ingest requests) back to back in one buffer and
// sends slices of it over and over. Timestamps are written as fixed-width
// 13-digit epoch milliseconds so they can be refreshed in place
// (`patch_timestamps`, about once a second) without moving any bytes.
//
// Shape (`pool_shape`): by default event times are "now" (plus a jitter that
// keeps them in the current second) and values are latency-like (lognormal,
// median ~20). The realistic shape spreads event times uniformly over the
// last `ts_spread_ms` (every second's sends touch buckets all over the last
// minute) and values log-uniformly over `value_decades` decades
// (1 .. 10^decades). The ages are drawn once, but each refresh hands them
// to the events shifted by a stride, so that a series' lateness changes
// from second to second as a real late source's does (with fixed ages a
// series would see the same few ages forever, which the store's learned
// lateness absorbs; docs/architecture.md, "Compact store").
//
// Series: event k of connection c belongs to series
// s = (c + k * connections) mod K, whose metric is "bench.m<s%10>" and whose
// tags are {"host":"h<s/10>","region":<one of 4 by s/10>}: K distinct series
// over all connections.
//
// Threading: a pool is owned and used by one writer thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cairn::bench {

struct pool_shape {
  /// 0: event time = now; else uniform in (now - ts_spread_ms, now].
  uint32_t ts_spread_ms = 0;
  /// 0: lognormal latency-like values; else log-uniform in [1, 10^N).
  uint32_t value_decades = 0;
};

class event_pool {
public:
  // -- construction -----------------------------------------------------------

  /// Builds `events` fire-and-forget event lines, one unit per line.
  static event_pool event_lines(size_t events, uint32_t conn, uint32_t conns,
                                uint64_t series, uint64_t seed,
                                pool_shape shape = {});

  /// Builds ingest requests of `batch` events each ({"op":"ingest",...}),
  /// one unit per request, about `events` events in total.
  static event_pool ingest_requests(size_t events, size_t batch, uint32_t conn,
                                    uint32_t conns, uint64_t series,
                                    uint64_t seed, pool_shape shape = {});

  // -- access -------------------------------------------------------------------

  /// Number of units (lines or requests) in the pool.
  size_t units() const noexcept {
    return unit_end_.size();
  }

  /// Events per unit: 1 for event lines, the batch size for requests.
  size_t events_per_unit() const noexcept {
    return events_per_unit_;
  }

  /// The text of units [first, first + n), each ending in '\n'.
  /// Requires first + n <= units().
  std::string_view slice(size_t first, size_t n) const noexcept {
    size_t begin = first == 0 ? 0 : unit_end_[first - 1];
    size_t end = unit_end_[first + n - 1];
    return {buffer_.data() + begin, end - begin};
  }

  /// Average bytes per event, for reporting.
  double bytes_per_event() const noexcept;

  /// Rewrites every timestamp to `now_ms` plus its per-event jitter
  /// (0..99 ms), capped at the last millisecond of `now_ms`'s second so the
  /// events land in the current 1 s bucket; with a ts spread, to `now_ms`
  /// minus an age of the pool (another one at each call). Cheap: 13 digits
  /// per event, no reallocation.
  void patch_timestamps(int64_t now_ms) noexcept;

  /// Metric and tags of series `s`, as used in the pool (for queries).
  static std::string metric_of(uint64_t s);
  static std::string host_of(uint64_t s);
  static std::string region_of(uint64_t s);

private:
  /// Draws the value, jitter and age of the next event and appends it.
  template <class Rng>
  void append_next(Rng& rng, uint64_t s);
  void append_event(uint64_t s, double value, uint16_t jitter);

  std::string buffer_;
  std::vector<uint32_t> unit_end_;   // end offset of each unit
  std::vector<uint32_t> ts_offset_;  // where each 13-digit ts starts
  std::vector<uint8_t> jitter_ms_;   // per event
  std::vector<uint32_t> age_ms_;     // per event, with a ts spread only
  size_t age_shift_ = 0;             // event i takes age_ms_[(i + shift) % n]
  pool_shape shape_;
  size_t events_per_unit_ = 1;
};

} // namespace cairn::bench
