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
    case error_code::unknown_rule:
      return "unknown_rule";
    case error_code::rule_exists:
      return "rule_exists";
  }
  return "internal";
}

} // namespace cairn::cqrs
