#include "runtime/time.hpp"

#include <chrono>
#include <limits>

namespace cairn::runtime {

namespace {

constexpr millis max_millis = std::numeric_limits<millis>::max();

struct unit {
  std::string_view name;
  millis factor;
};

// Largest first: format_duration picks the first unit that divides exactly.
constexpr unit units[] = {
  {"w", 7LL * 24 * 3600 * 1000}, {"d", 24LL * 3600 * 1000},
  {"h", 3600LL * 1000},          {"m", 60LL * 1000},
  {"s", 1000},                   {"ms", 1},
};

/// Parses a non-empty run of ASCII digits; nullopt on anything else or on
/// overflow.
std::optional<millis> parse_digits(std::string_view text) {
  if (text.empty() || text.size() > 19)
    return std::nullopt;
  millis result = 0;
  for (char c : text) {
    if (c < '0' || c > '9')
      return std::nullopt;
    auto d = c - '0';
    if (result > (max_millis - d) / 10)
      return std::nullopt;
    result = result * 10 + d;
  }
  return result;
}

} // namespace

std::optional<millis> parse_duration(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9')
    ++digits;
  auto number = parse_digits(text.substr(0, digits));
  if (!number)
    return std::nullopt;
  auto suffix = text.substr(digits);
  if (suffix.empty())
    return number;
  for (auto& u : units) {
    if (suffix == u.name) {
      if (*number > max_millis / u.factor)
        return std::nullopt;
      return *number * u.factor;
    }
  }
  return std::nullopt;
}

std::string format_duration(millis d) {
  if (d == 0)
    return "0ms";
  if (d < 0) {
    if (d == std::numeric_limits<millis>::min())
      return std::to_string(d) + "ms";
    return "-" + format_duration(-d);
  }
  for (auto& u : units)
    if (d % u.factor == 0)
      return std::to_string(d / u.factor).append(u.name);
  return std::to_string(d) + "ms"; // unreachable: "ms" divides everything
}

std::optional<millis> parse_time(std::string_view text, millis now) {
  if (text.starts_with("now")) {
    text.remove_prefix(3);
    if (text.empty())
      return now;
    if (text.front() != '-' && text.front() != '+')
      return std::nullopt;
  }
  if (text.empty())
    return std::nullopt;
  if (text.front() == '-' || text.front() == '+') {
    auto d = parse_duration(text.substr(1));
    if (!d)
      return std::nullopt;
    millis result = 0;
    bool overflow = text.front() == '-'
                      ? __builtin_sub_overflow(now, *d, &result)
                      : __builtin_add_overflow(now, *d, &result);
    if (overflow)
      return std::nullopt;
    return result;
  }
  return parse_digits(text);
}

millis wall_clock_now() noexcept {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
    .count();
}

} // namespace cairn::runtime
