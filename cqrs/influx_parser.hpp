// Influx line protocol: `measurement[,k=v...] field=value[,field=value...] [ts]`
// turned into Cairn events (docs/integrations.md).
//
// One event per numeric field: metric `measurement.field`, the line's tags,
// the field's value (integers `12i` / `12u` and floats as numbers, booleans
// as 1 / 0), the timestamp converted from the request's precision to
// milliseconds (floor), or `now` without one. String fields are not stored:
// each is reported with a reason while the line's other fields count. The
// escaping rules of the spec apply (`\,` `\ ` in measurements; `\,` `\=`
// `\ ` in tag keys, tag values and field keys; `\"` `\\` in strings). Every
// event passes the same validation as an NDJSON event (metric characters,
// tag count and sizes, duplicate tag keys, time limits), with the same codes.
//
// Pure functions over one line; no allocation per event beyond the batch in
// the common case. One parser per thread (it keeps scratch buffers).
#pragma once

#include "cqrs/error.hpp"
#include "cqrs/event_batch.hpp"
#include "cqrs/event_parser.hpp"
#include "cqrs/key_cache.hpp"
#include "cqrs/series_key.hpp"
#include "cqrs/time.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cairn::cqrs {

/// Timestamp precision of a write (`precision=` of the HTTP API).
enum class influx_precision : uint8_t { ns, us, ms, s };

/// "ns", "n", "us", "u", "µs", "ms", "s"; nullopt for anything else.
std::optional<influx_precision> parse_influx_precision(std::string_view text);

/// What one line gave.
struct influx_line {
  /// Events appended to the batch (one per stored field).
  size_t events = 0;
  /// False for a blank or comment line.
  bool content = true;
  /// Why fields or the whole line were not stored (invalid_event /
  /// bad_request, as NDJSON events). Empty = the whole line was stored.
  std::vector<problem> problems;
};

class influx_parser {
public:
  explicit influx_parser(event_limits limits = {});

  /// Parses one line (without its newline), appending its events to `out`.
  /// A malformed line appends nothing. Never throws.
  influx_line parse_line(std::string_view line, millis now,
                         influx_precision precision, event_batch& out);

private:
  event_limits limits_;
  // Scratch, reused across lines.
  std::string measurement_;
  /// Key, value, key, value, ... of the current line; strings are reused
  /// (their capacity kept) across lines, only a prefix is in use.
  std::vector<std::string> tag_text_;
  struct field_text {
    std::string key;
    double value = 0;
    bool is_string = false;
  };
  std::vector<field_text> fields_;
  std::vector<tag_view> tags_;
  std::string metric_;
  std::string key_;
  /// Keys of the series seen before, by metric and the line's measurement
  /// and tags as sent (docs/architecture.md, "Ingest path").
  key_cache keys_;
};

} // namespace cairn::cqrs
