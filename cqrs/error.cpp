#include "cqrs/error.hpp"

namespace cairn::cqrs {

std::string_view to_string(error_code code) noexcept {
  switch (code) {
    case error_code::bad_request:
      return "bad_request";
    case error_code::invalid_event:
      return "invalid_event";
    case error_code::unknown_op:
      return "unknown_op";
    case error_code::too_large:
      return "too_large";
    case error_code::rate_limited:
      return "rate_limited";
    case error_code::unauthorized:
      return "unauthorized";
    case error_code::unavailable:
      return "unavailable";
    case error_code::timeout:
      return "timeout";
    case error_code::internal:
      return "internal";
    case error_code::too_many_series:
      return "too_many_series";
    case error_code::too_many_subscriptions:
      return "too_many_subscriptions";
    case error_code::unknown_subscription:
      return "unknown_subscription";
    case error_code::forbidden:
      return "forbidden";
    case error_code::unknown_rule:
      return "unknown_rule";
    case error_code::rule_exists:
      return "rule_exists";
    case error_code::unknown_saga:
      return "unknown_saga";
    case error_code::saga_conflict:
      return "saga_conflict";
    case error_code::decommissioned:
      return "decommissioned";
  }
  return "internal";
}

bool from_string(std::string_view name, error_code& out) noexcept {
  for (auto i = 0; i <= static_cast<int>(last_error_code); ++i)
    if (to_string(static_cast<error_code>(i)) == name) {
      out = static_cast<error_code>(i);
      return true;
    }
  return false;
}

int http_status(error_code code) noexcept {
  switch (code) {
    case error_code::bad_request:
    case error_code::invalid_event:
    case error_code::unknown_op:
    case error_code::too_many_series:
    case error_code::too_many_subscriptions:
      return 400;
    case error_code::unauthorized:
      return 401;
    case error_code::forbidden:
      return 403;
    case error_code::unknown_subscription:
    case error_code::unknown_rule:
    case error_code::unknown_saga:
      return 404;
    case error_code::rule_exists:
    case error_code::saga_conflict:
      return 409;
    case error_code::too_large:
      return 413;
    case error_code::rate_limited:
      return 429;
    case error_code::unavailable:
    case error_code::decommissioned:
      return 503;
    case error_code::timeout:
      return 504;
    case error_code::internal:
      return 500;
  }
  return 500;
}

} // namespace cairn::cqrs
