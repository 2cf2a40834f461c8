// instance: the state machine of one alert instance (a rule, or one group
// of a rule with group_by), docs/alerting.md "States".
//
//   inactive ──cond──▶ pending ──cond held `for`──▶ firing
//       ▲                 │ !cond                     │ !cond held
//       └─────────────────┘                           │ keep_firing_for
//   resolved ◀────────────────────────────────────────┘
//   resolved ──cond──▶ pending (or firing when `for` is 0)
//
// `step` is called at each evaluation with the window's observation and the
// evaluation time; it returns the transition it made, if any. "No data" (a
// window without events) is mapped by the rule's no_data policy. Pure
// values; no threads, no actors. The fields are what the state journal
// stores, so a restarted node continues an episode instead of re-firing.
#pragma once

#include "alerts/rule.hpp"

#include <cmath>
#include <cstdint>
#include <optional>
#include <string_view>

namespace cairn::alerts {

enum class alert_state : uint8_t { inactive, pending, firing, resolved };

std::string_view to_string(alert_state s) noexcept;
[[nodiscard]] std::optional<alert_state> state_from_string(std::string_view s);

/// What one evaluation saw.
struct observation {
  bool has_data = false;
  double value = NAN;
};

struct instance {
  alert_state state = alert_state::inactive;
  /// Start of the current pending/firing episode (condition first true).
  millis active_since = 0;
  /// When it fired (firing) / resolved (resolved).
  millis fired_at = 0;
  millis resolved_at = 0;
  /// The last evaluation at which the condition held.
  millis last_true = 0;
  /// The last evaluated value (NaN without data).
  double value = NAN;
  /// Firing episodes so far: part of every notification's idempotency key.
  uint64_t episode = 0;
  /// When the last firing notification was queued (repeat_interval).
  millis last_notified = 0;
  /// Evaluations so far (not journaled).
  uint64_t evaluations = 0;
};

struct transition {
  alert_state from = alert_state::inactive;
  alert_state to = alert_state::inactive;
};

/// Timing of a rule the state machine needs.
struct timing {
  millis for_ms = 0;
  millis keep_firing_for = 0;
  no_data_policy no_data = no_data_policy::ok;
  comparator op = comparator::gt;
  double threshold = 0;
};

inline timing timing_of(const rule& r) {
  return {r.for_ms, r.keep_firing_for, r.no_data, r.op, r.threshold};
}

/// Advances `x` by one evaluation at `now`. Returns the transition made, or
/// nullopt if the state did not change.
std::optional<transition> step(instance& x, const timing& t,
                               const observation& o, millis now);

} // namespace cairn::alerts
