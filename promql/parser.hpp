// parser: PromQL text -> the syntax tree of promql/ast.hpp.
//
// Reads the whole PromQL grammar far enough to name what it does not
// support: an unsupported function, aggregation, operator, modifier or
// subquery fails with a bad_data problem such as "unsupported function:
// histogram_quantile" or "unsupported operator: +" (operators between two
// number literals are folded, so `1+1` is the scalar 2). Syntax errors say
// "parse error at char N: ...". Pure function; thread-safe.
#pragma once

#include "promql/ast.hpp"

#include <optional>
#include <string_view>
#include <variant>

namespace cairn::promql {

/// Parses `text` into an expression, or returns a bad_data problem.
[[nodiscard]] std::variant<expr, problem> parse(std::string_view text);

/// Parses a PromQL duration ("15s", "1m30s", "1h", "500ms", "2d", "1w",
/// "1y"). Returns nullopt for anything else or zero.
[[nodiscard]] std::optional<millis> parse_duration(std::string_view text);

/// Parses a selector alone (the match[] parameter of /api/v1/series, labels
/// and label values): an instant selector, nothing around it. Here the
/// metric name may be left out if some other matcher is given (`{job="x"}`).
[[nodiscard]] std::variant<selector, problem> parse_selector(std::string_view text);

} // namespace cairn::promql
