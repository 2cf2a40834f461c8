// Parsing of one NDJSON line on the ingest hot path (simdjson On-Demand).
//
// A line is either an event (no "op" field), a request (has "op"), or an
// error. Events are validated against docs/protocol.md, "Events", and
// appended to an event_batch without per-event heap allocation in the common
// case. Request
// lines are only recognized here; their body is parsed by the caller (rare,
// so nlohmann::json is fine there).
//
// One event_parser per thread / actor: it owns a simdjson parser and
// scratch buffers. Not thread-safe.
#pragma once

#include "cqrs/error.hpp"
#include "cqrs/event_batch.hpp"
#include "cqrs/time.hpp"

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cairn::cqrs {

/// Limits applied to every event (docs/protocol.md, "Events").
struct event_limits {
  /// Events older than now - max_age are rejected (the longest retention).
  millis max_age = 90LL * 24 * 3600 * 1000;
  /// Events more than this ahead of now are rejected.
  millis max_future = 10LL * 60 * 1000;
  size_t max_metric_length = 200;
  size_t max_tags = 16;
  size_t max_tag_bytes = 128;
};

enum class line_kind : uint8_t {
  /// Appended to the batch.
  event,
  /// Has an "op" field; see parse_result::op.
  request,
  /// Invalid; see parse_result::error.
  error,
  /// Only whitespace; ignored.
  blank,
};

struct parse_result {
  line_kind kind = line_kind::blank;
  /// For requests: the value of "op" (empty if "op" is not a string).
  std::string op;
  /// For errors: code invalid_event or bad_request, and a message.
  problem error;
};

class event_parser {
public:
  explicit event_parser(event_limits limits = {});
  ~event_parser();
  event_parser(const event_parser&) = delete;
  event_parser& operator=(const event_parser&) = delete;

  /// Parses `line` (without the newline). Events are validated with `now`
  /// as the reference time (a missing "ts" becomes `now`) and appended to
  /// `out`. Never throws.
  parse_result parse_line(std::string_view line, millis now, event_batch& out);

  /// Validates one event given as a JSON text (used for the elements of an
  /// "ingest" request's "events" array). Same contract as parse_line except
  /// that an "op" field is an error.
  parse_result parse_event(std::string_view json, millis now,
                           event_batch& out);

  /// What parse_ingest found besides the events.
  struct ingest_request {
    /// False on a request-level problem (see `error`); no events added.
    bool ok = false;
    problem error;
    /// Raw JSON text of "id", empty if absent.
    std::string id;
    /// "idempotency_key" (empty if absent).
    std::string idempotency_key;
    /// Number of elements of "events".
    size_t total = 0;
    /// Rejected elements: (index in "events", why).
    std::vector<std::pair<size_t, problem>> rejected;
  };

  /// Parses a whole {"op":"ingest","events":[...],...} line with simdjson,
  /// validating every element as parse_event does and appending the valid
  /// ones to `out` (no DOM, no re-serialization). Request-level problems
  /// (not an object, "events" missing or not an array, a key that is not a
  /// string of 1..256 bytes) give ok == false and add nothing.
  ingest_request parse_ingest(std::string_view line, millis now,
                              event_batch& out);

  const event_limits& limits() const noexcept { return limits_; }

private:
  struct impl;
  event_limits limits_;
  std::unique_ptr<impl> impl_;
};

/// Validation helpers, also used by tests and the slow path.
/// Returns an empty string if valid, else the error message.
std::string validate_metric(std::string_view metric, const event_limits& l);

/// Empty if `ts` is within [now - max_age, now + max_future], else why not.
std::string validate_ts(millis ts, millis now, const event_limits& l);

/// A client value as shown in an error message (line protocol,
/// remote_write): at most 64 bytes, control bytes replaced by '?', in single
/// quotes.
std::string shown_value(std::string_view s);

} // namespace cairn::cqrs
