// http_api: the Prometheus HTTP API endpoints a Cairn node serves under
// /api/v1/ (docs/prometheus-api.md): query, query_range, labels, label
// values, series, metadata and status/buildinfo.
//
// GET parameters come from the query string; POST also reads an
// application/x-www-form-urlencoded body (both are percent-decoded and
// merged, as Prometheus does). Replies are the Prometheus JSON envelope:
// {"status":"success","data":...[,"warnings":[...]]} or
// {"status":"error","errorType":...,"error":...} with the HTTP status of
// the error type. Cairn is reached through the `cairn_call` given at
// construction (see promql/engine.hpp for its threading contract).
// handle() may be called from any thread, concurrently; `reply` is called
// exactly once, from the calling thread or a reply's thread.
#pragma once

#include "promql/engine.hpp"

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cairn::promql {

struct api_options {
  engine_options engine;
  /// Wall-clock now in epoch ms (the default of `time`, the tier choice).
  std::function<millis()> now;
  /// Cairn's version, shown as buildinfo's revision.
  std::string cairn_version = "0.1.0";
};

struct api_request {
  std::string method;  ///< GET, POST, ...
  std::string path;    ///< e.g. /api/v1/query
  std::string query;   ///< raw query string (percent-encoded)
  std::string body;
  std::string content_type;
};

struct api_response {
  int status = 200;
  std::string body;  ///< JSON
};

/// Form parameters: name -> values in order (match[] repeats).
using form_params = std::map<std::string, std::vector<std::string>>;

/// Decodes `a=1&b=x%20y+z` into `params` (appending). Returns false on a
/// bad percent escape.
[[nodiscard]] bool decode_form(std::string_view text, form_params& params);

/// A Prometheus time parameter: unix seconds ("1764190000.5") or RFC3339
/// ("2026-12-01T21:00:00.5Z", "...+01:00"), as epoch ms.
[[nodiscard]] std::optional<millis> parse_time(std::string_view text);

/// A step or timeout: float seconds ("15", "0.5") or a PromQL duration
/// ("15s", "1m30s"), as ms (> 0).
[[nodiscard]] std::optional<millis> parse_step(std::string_view text);

/// Formats a sample value as Prometheus does: shortest round-trip decimal
/// without exponent, "NaN", "+Inf", "-Inf".
std::string format_value(double v);

/// Renders a query's value as the success envelope.
std::string render_value(const query_value& v);

/// Renders an error envelope.
std::string render_problem(const problem& p);

class prometheus_api {
public:
  prometheus_api(api_options opts, cairn_call call);

  void handle(const api_request& req, std::function<void(api_response)> reply) const;

private:
  void query(const form_params& params, bool range,
             std::function<void(api_response)> reply) const;
  void series(const form_params& params, int what, std::string label,
              std::function<void(api_response)> reply) const;

  api_options opts_;
  cairn_call call_;
};

} // namespace cairn::promql
