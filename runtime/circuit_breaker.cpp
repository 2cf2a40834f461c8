#include "runtime/circuit_breaker.hpp"

#include <algorithm>

namespace cairn::runtime {

std::string_view to_string(breaker_state s) noexcept {
  switch (s) {
    case breaker_state::closed:
      return "closed";
    case breaker_state::open:
      return "open";
    case breaker_state::half_open:
      return "half-open";
  }
  return "unknown";
}

void circuit_breaker::move_to(breaker_state s) {
  if (s == state_)
    return;
  state_ = s;
  switch (s) {
    case breaker_state::closed:
      ++counters_.closed;
      break;
    case breaker_state::open:
      ++counters_.opened;
      break;
    case breaker_state::half_open:
      ++counters_.half_opened;
      break;
  }
}

void circuit_breaker::open(time_point now) {
  probe_in_flight_ = false;
  // The first opening uses the base timeout; every re-open without a
  // success in between doubles it, up to the cap.
  if (state_ == breaker_state::half_open)
    reset_ = std::min(opts_.max_reset, reset_ * 2);
  reopen_at_ = now + reset_;
  move_to(breaker_state::open);
}

breaker_state circuit_breaker::state(time_point now) {
  if (state_ == breaker_state::open && now >= reopen_at_)
    move_to(breaker_state::half_open);
  return state_;
}

bool circuit_breaker::allow(time_point now) {
  switch (state(now)) {
    case breaker_state::closed:
      return true;
    case breaker_state::open:
      ++counters_.rejected;
      return false;
    case breaker_state::half_open:
      if (probe_in_flight_) {
        ++counters_.rejected;
        return false;
      }
      probe_in_flight_ = true;
      return true;
  }
  return false;
}

void circuit_breaker::on_success(time_point) {
  ++counters_.successes;
  failures_ = 0;
  if (state_ != breaker_state::closed) {
    probe_in_flight_ = false;
    reset_ = opts_.base_reset;
    move_to(breaker_state::closed);
  }
}

void circuit_breaker::on_failure(time_point now) {
  ++counters_.failures;
  ++failures_;
  if (state_ == breaker_state::half_open
      || (state_ == breaker_state::closed
          && failures_ >= opts_.failure_threshold))
    open(now);
}

void circuit_breaker::trip(time_point now) {
  ++failures_;
  if (state_ == breaker_state::open) {
    return;
  }
  open(now);
}

} // namespace cairn::runtime
