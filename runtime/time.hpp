// Time and duration parsing shared by config, queries and validation.
// Lives in runtime/ because config parsing needs it; cqrs/ re-exports it.
//
// All times are integer epoch milliseconds (`millis`). Pure functions, safe
// to call from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cairn::runtime {

using millis = int64_t;

/// Parses a duration: plain digits are milliseconds ("1500"), otherwise a
/// number followed by one unit of ms, s, m, h, d, w ("10s", "15m", "90d").
/// Returns nullopt for anything else, for negative or overflowing values.
[[nodiscard]] std::optional<millis> parse_duration(std::string_view text);

/// Formats a duration with the largest unit that divides it exactly, e.g.
/// 60000 -> "1m", 1500 -> "1500ms", 0 -> "0ms".
std::string format_duration(millis d);

/// Parses a point in time of a request: "now", a relative "-15m" (relative to
/// `now`), "now-15m", or integer epoch milliseconds as a string of digits.
/// Returns nullopt if `text` is none of these.
[[nodiscard]] std::optional<millis> parse_time(std::string_view text,
                                               millis now);

/// Floors `t` to a multiple of `res` (also for negative `t`). `res` > 0.
constexpr millis align_down(millis t, millis res) noexcept {
  auto q = t / res;
  if (t % res != 0 && t < 0)
    --q;
  return q * res;
}

/// Returns the current wall-clock time in epoch milliseconds.
millis wall_clock_now() noexcept;

} // namespace cairn::runtime
