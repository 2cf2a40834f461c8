#include "alerts/instance.hpp"

namespace cairn::alerts {

std::string_view to_string(alert_state s) noexcept {
  switch (s) {
    case alert_state::inactive:
      return "inactive";
    case alert_state::pending:
      return "pending";
    case alert_state::firing:
      return "firing";
    case alert_state::resolved:
      return "resolved";
  }
  return "?";
}

std::optional<alert_state> state_from_string(std::string_view s) {
  for (auto x : {alert_state::inactive, alert_state::pending,
                 alert_state::firing, alert_state::resolved})
    if (to_string(x) == s)
      return x;
  return std::nullopt;
}

std::optional<transition> step(instance& x, const timing& t,
                               const observation& o, millis now) {
  ++x.evaluations;
  x.value = o.has_data ? o.value : NAN;
  bool cond;
  if (o.has_data) {
    cond = holds(t.op, o.value, t.threshold);
  } else {
    switch (t.no_data) {
      case no_data_policy::keep:
        return std::nullopt;
      case no_data_policy::alerting:
        cond = true;
        break;
      default:
        cond = false;
        break;
    }
  }
  auto from = x.state;
  auto move = [&](alert_state to) -> std::optional<transition> {
    x.state = to;
    return transition{from, to};
  };
  auto fire = [&] {
    x.fired_at = now;
    ++x.episode;
    x.last_notified = 0;
    return move(alert_state::firing);
  };
  switch (x.state) {
    case alert_state::inactive:
    case alert_state::resolved:
      if (!cond)
        return std::nullopt;
      x.active_since = now;
      x.last_true = now;
      if (t.for_ms <= 0)
        return fire();
      return move(alert_state::pending);
    case alert_state::pending:
      if (!cond)
        return move(alert_state::inactive);
      x.last_true = now;
      if (now - x.active_since >= t.for_ms)
        return fire();
      return std::nullopt;
    case alert_state::firing:
      if (cond) {
        x.last_true = now;
        return std::nullopt;
      }
      if (now - x.last_true >= t.keep_firing_for) {
        x.resolved_at = now;
        return move(alert_state::resolved);
      }
      return std::nullopt;
  }
  return std::nullopt;
}

} // namespace cairn::alerts
