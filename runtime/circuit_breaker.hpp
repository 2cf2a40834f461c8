// circuit_breaker: the closed / open / half-open state machine guarding one
// remote peer.
//
// closed: calls go through; `failure_threshold` consecutive failures (errors
// or timeouts) open the breaker. open: calls fail fast until the reset
// timeout expires; the timeout starts at `base_reset` and doubles on every
// re-open, capped at `max_reset`. half-open: exactly one call (the probe) is
// let through; its success closes the breaker (and resets the backoff), its
// failure re-opens it. Time is passed in by the caller, so the machine is
// deterministic and testable without sleeping. Not thread-safe: owned by one
// actor.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

namespace cairn::runtime {

enum class breaker_state : uint8_t { closed, open, half_open };

/// "closed", "open" or "half-open".
std::string_view to_string(breaker_state s) noexcept;

struct breaker_options {
  uint32_t failure_threshold = 3;
  std::chrono::milliseconds base_reset{500};
  std::chrono::milliseconds max_reset{10000};
};

struct breaker_counters {
  uint64_t successes = 0;
  uint64_t failures = 0;
  uint64_t rejected = 0;  ///< calls refused while open / probe in flight
  uint64_t opened = 0;    ///< transitions to open
  uint64_t half_opened = 0;
  uint64_t closed = 0;    ///< transitions back to closed
};

class circuit_breaker {
public:
  using clock = std::chrono::steady_clock;
  using time_point = clock::time_point;

  explicit circuit_breaker(breaker_options opts = {}) : opts_(opts) {}

  /// Current state; an open breaker whose reset timeout expired at `now`
  /// moves to half-open first.
  breaker_state state(time_point now);

  /// Asks to make a call at `now`. True if the call may go out (closed, or
  /// the single half-open probe); false = fail fast (counted as rejected).
  [[nodiscard]] bool allow(time_point now);

  /// Counts a call the caller refused itself because the breaker is not
  /// closed, without taking the half-open probe slot: only the code that
  /// reports a call's outcome may take it (allow), or the slot is held by a
  /// call nobody will ever report.
  void note_rejected() noexcept { ++counters_.rejected; }

  /// True while the half-open probe is out.
  bool probe_in_flight() const noexcept { return probe_in_flight_; }

  /// Reports the outcome of an allowed call.
  void on_success(time_point now);
  void on_failure(time_point now);

  /// Forces the breaker open at `now` (e.g. the peer's connection died).
  void trip(time_point now);

  /// When an open breaker allows its probe.
  time_point reopen_at() const noexcept { return reopen_at_; }

  /// The reset timeout the next opening would use.
  std::chrono::milliseconds current_reset() const noexcept { return reset_; }

  uint32_t consecutive_failures() const noexcept { return failures_; }
  const breaker_counters& counters() const noexcept { return counters_; }

  /// The state without advancing time (for reporting).
  breaker_state raw_state() const noexcept { return state_; }

private:
  void move_to(breaker_state s);
  void open(time_point now);

  breaker_options opts_;
  breaker_state state_ = breaker_state::closed;
  uint32_t failures_ = 0;
  bool probe_in_flight_ = false;
  std::chrono::milliseconds reset_{opts_.base_reset};
  time_point reopen_at_{};
  breaker_counters counters_;
};

} // namespace cairn::runtime
