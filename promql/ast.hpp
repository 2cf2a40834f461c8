// The PromQL subset Cairn answers, as a syntax tree (docs/prometheus-api.md,
// "Supported PromQL").
//
// An expression is a number, an instant or range vector selector, a call of
// one of the *_over_time / rate / increase functions on a range selector, or
// a sum/avg/min/max/count aggregation of an instant-vector expression.
// Everything else is rejected by the parser with a bad_data problem naming
// the unsupported part. Pure values; no threads, no actors, no CAF.
#pragma once

#include <cstdint>
#include <memory>
#include <regex>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace cairn::promql {

/// Milliseconds (epoch times and durations).
using millis = int64_t;

/// A Prometheus API error type with its HTTP status (docs/prometheus-api.md,
/// "Errors").
enum class error_type : uint8_t {
  /// The request cannot be answered as written (HTTP 400).
  bad_data,
  /// The query failed while running (HTTP 422).
  execution,
  /// The node cannot answer now, worth retrying (HTTP 503).
  unavailable,
  /// A Cairn request timed out (HTTP 503).
  timeout,
  /// Unknown API endpoint (HTTP 404).
  not_found,
  /// A defect on Cairn's side (HTTP 500).
  internal,
};

/// The errorType string of the Prometheus API.
std::string_view to_string(error_type t) noexcept;

/// The HTTP status of an error of type `t`.
int http_status(error_type t) noexcept;

/// An error a client can cause (or see), rendered as
/// {"status":"error","errorType":...,"error":message}.
struct problem {
  error_type type = error_type::bad_data;
  std::string message;
};

enum class match_op : uint8_t { equal, not_equal, regex, not_regex };

/// One label matcher of a selector. Regexes are matched like Prometheus's:
/// anchored at both ends (the whole value must match), here with
/// std::regex's ECMAScript grammar.
struct label_matcher {
  std::string name;
  match_op op = match_op::equal;
  std::string value;
  std::shared_ptr<const std::regex> re;  ///< for regex / not_regex

  /// Whether a series whose label `name` has `v` ("" when absent) matches.
  bool matches(std::string_view v) const;
};

/// `metric{matchers}` or `metric{matchers}[range]`. The metric name (also
/// given as __name__="...") is required.
struct selector {
  std::string metric;
  /// Matchers on labels other than __name__, in the order written.
  std::vector<label_matcher> matchers;
  millis range = 0;  ///< 0: an instant selector
};

enum class function : uint8_t {
  sum_over_time,
  avg_over_time,
  min_over_time,
  max_over_time,
  count_over_time,
  last_over_time,
  quantile_over_time,
  rate,
  increase,
};

std::string_view to_string(function f) noexcept;

enum class aggregation : uint8_t { sum, avg, min, max, count };

std::string_view to_string(aggregation a) noexcept;

struct expr;

struct number_expr {
  double value = 0;
};

/// f(arg) or quantile_over_time(phi, arg): arg is a range selector.
struct call_expr {
  function fn = function::sum_over_time;
  double phi = 0;  ///< quantile_over_time only
  selector arg;
};

/// op by (labels) (inner) / op without (labels) (inner).
struct aggregate_expr {
  aggregation op = aggregation::sum;
  bool without = false;
  std::vector<std::string> labels;
  std::shared_ptr<const expr> inner;
};

struct expr {
  std::variant<number_expr, selector, call_expr, aggregate_expr> node;
};

/// The selector an expression reads (every supported expression but a
/// number reads exactly one), or nullptr.
const selector* selector_of(const expr& e) noexcept;

} // namespace cairn::promql
