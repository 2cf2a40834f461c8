// rate_limiter: token buckets per principal for events/s and requests/s
// (docs/protocol.md, "Rate limits"; docs/configuration.md, cairn.rate.*).
//
// Every principal (the JWT `sub`, else the client address) has one bucket
// per kind. A bucket holds up to rate x burst tokens and refills at `rate`
// per second. `take(n)` admits when the bucket holds min(n, capacity)
// tokens and then subtracts n (a batch larger than the bucket goes into
// debt, which later takes wait out), so the long-run rate is the configured
// one whatever the batch sizes. When the tokens are missing, a caller that
// can wait (the NDJSON port, which then stops reading the connection) is
// told how long, up to `max_delay`; past that, or for a caller that cannot
// wait, the take is refused with the time after which it would pass. A
// refused take costs nothing.
//
// The rate of a principal is the largest one configured for any of its
// scopes; scopes without one of their own use the default; 0 = unlimited.
//
// Thread-safe: one mutex, taken once per chunk of events and once per
// request (never per event). The clock is passed in (tests advance it).
#pragma once

#include "runtime/auth/principal.hpp"

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace cairn::runtime {

enum class rate_kind : uint8_t { events, requests };

struct rate_options {
  /// Defaults for every principal (per second; 0 = unlimited).
  double events_per_sec = 0;
  double requests_per_sec = 0;
  /// Per scope, indexed ingest, query, admin (0 = not set: the default).
  double scope_events_per_sec[3] = {0, 0, 0};
  double scope_requests_per_sec[3] = {0, 0, 0};
  /// A bucket holds this much of its rate.
  std::chrono::milliseconds burst{1000};
  /// Longest wait a caller that may wait is given instead of a refusal.
  std::chrono::milliseconds max_delay{1000};
  /// Principals tracked; past it, idle ones (full buckets) are forgotten.
  size_t max_principals = 100000;
};

struct rate_decision {
  bool admitted = true;
  /// Admitted: wait this long before doing the work (0 = now).
  std::chrono::milliseconds delay{0};
  /// Refused: when the same take would pass without waiting.
  std::chrono::milliseconds retry_after{0};
};

/// One principal's counters (stats, /metrics).
struct rate_counters {
  std::string key;
  uint64_t events = 0;            ///< admitted
  uint64_t events_limited = 0;    ///< refused
  uint64_t requests = 0;          ///< admitted
  uint64_t requests_limited = 0;  ///< refused
  uint64_t delayed = 0;           ///< admitted takes that had to wait
};

class rate_limiter {
public:
  using clock = std::chrono::steady_clock;

  explicit rate_limiter(rate_options opts);

  /// True if any rate is configured (else take() always admits at once and
  /// only counts).
  bool enabled() const noexcept { return enabled_; }

  /// Takes `n` tokens of `kind` for `who` at `now`. `may_wait`: the caller
  /// can delay the work (returns a delay up to max_delay instead of a
  /// refusal).
  [[nodiscard]] rate_decision take(const auth::principal& who, rate_kind kind,
                                   uint64_t n, clock::time_point now,
                                   bool may_wait);

  /// The counters of every tracked principal, sorted by key.
  std::vector<rate_counters> counters() const;

  /// Prometheus text lines of the counters, labelled by principal
  /// (`cairn_rate_events_total{principal="..."}` ...), escaped.
  std::string render_prometheus() const;

  const rate_options& options() const noexcept { return opts_; }

private:
  struct bucket {
    double tokens = 0;
    clock::time_point at{};
    bool fresh = true;
  };
  struct entry {
    bucket events;
    bucket requests;
    clock::time_point last{};
    rate_counters counts;
  };

  double rate_of(const auth::principal& who, rate_kind kind) const noexcept;
  void forget_idle(clock::time_point now);

  rate_options opts_;
  bool enabled_ = false;
  mutable std::mutex mtx_;
  std::unordered_map<std::string, entry> entries_;
};

} // namespace cairn::runtime
