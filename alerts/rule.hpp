// rule: an alert rule as a pure value, its validation and its JSON codec
// (docs/alerting.md, "Rules").
//
// A rule watches one metric (optionally filtered by exact tag matches and
// split by `group_by` tags into one instance per group), aggregates the
// finest tier's closed buckets over a sliding `window` with any query
// aggregation (count, sum, min, max, avg, last, rate, pNN) and compares the
// result with a threshold. Pure values; no threads, no actors.
#pragma once

#include "cqrs/error.hpp"
#include "cqrs/query.hpp"
#include "cqrs/series_key.hpp"
#include "cqrs/time.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace cairn::alerts {

using cqrs::millis;

enum class comparator : uint8_t { gt, ge, lt, le, eq, ne };

/// ">", ">=", "<", "<=", "==", "!=".
std::string_view to_string(comparator c) noexcept;

/// True if `value <c> threshold`.
bool holds(comparator c, double value, double threshold) noexcept;

/// What a window without any event means (rule option "no_data").
enum class no_data_policy : uint8_t {
  /// The condition is false: the instance resolves / stays inactive.
  ok,
  /// The condition is true: "no data" is itself an alert.
  alerting,
  /// Nothing changes: the instance keeps its state.
  keep,
};

std::string_view to_string(no_data_policy p) noexcept;

/// One webhook destination of a rule.
struct receiver {
  std::string url;  ///< http://host[:port]/path
  std::map<std::string, std::string> headers;
  /// If set, the body is signed: X-Cairn-Signature: sha256=<hex HMAC>.
  std::string secret;
  friend bool operator==(const receiver&, const receiver&) = default;
};

struct rule {
  std::string name;
  std::string metric;
  std::vector<cqrs::tag> where;       ///< exact matches, sorted by key
  std::vector<std::string> group_by;  ///< tag keys, sorted, unique
  cqrs::agg_spec agg;
  millis window = 0;
  comparator op = comparator::gt;
  double threshold = 0;
  millis for_ms = 0;           ///< pending this long before firing
  millis keep_firing_for = 0;  ///< firing this long after the condition ended
  no_data_policy no_data = no_data_policy::ok;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  std::string severity = "warning";
  std::vector<receiver> receivers;
  /// Notification grouping (Alertmanager semantics, docs/alerting.md).
  millis group_wait = 0;
  millis repeat_interval = 4LL * 3600 * 1000;
  /// Version of the rule: 1 on create, +1 on each update (set by the store).
  uint64_t version = 0;
};

/// Parses the "rule" object of alert.create / alert.update. On error the
/// problem is bad_request and its message names the field, e.g.
/// "rule.window: must be a duration such as \"5m\"". `finest_resolution`
/// (ms) bounds the window from below: it must be a positive multiple.
[[nodiscard]] std::variant<rule, cqrs::problem>
parse_rule(const nlohmann::json& j, millis finest_resolution);

/// The rule as the JSON that parse_rule reads back (plus "version").
nlohmann::json to_json(const rule& r);

/// True if the series with `tags` (sorted) matches the rule's `where`.
bool matches(const rule& r, const std::vector<cqrs::tag>& tags);

/// The group of a series: its values of the rule's `group_by` keys (empty
/// string for a missing tag), as tag pairs in group_by order.
std::vector<cqrs::tag> group_of(const rule& r,
                                const std::vector<cqrs::tag>& tags);

/// A stable text key for a group ("" without group_by; else
/// "k1=v1,k2=v2" with ',' '=' '\\' escaped).
std::string group_key(const std::vector<cqrs::tag>& group);

/// Replaces "{{value}}" by `value` (shortest round-trip text), "{{name}}"
/// by the rule name and "{{tag}}" / "{{labels.tag}}" by a group tag's
/// value; unknown placeholders are left as they are.
std::string render_template(std::string_view text, const rule& r,
                            double value,
                            const std::vector<cqrs::tag>& group);

} // namespace cairn::alerts
