#include "cqrs/event_parser.hpp"

#include "cqrs/key_cache.hpp"
#include "cqrs/series_key.hpp"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstring>
#include <vector>

namespace cairn::cqrs {

namespace ondemand = simdjson::ondemand;

namespace {

/// Unknown fields may nest objects and arrays at most this deep.
constexpr int max_depth = 32;

constexpr auto metric_chars = [] {
  std::array<bool, 256> table{};
  for (int c = 0; c < 256; ++c)
    table[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
               || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':'
               || c == '/' || c == '-';
  return table;
}();

bool is_blank(std::string_view line) noexcept {
  return std::all_of(line.begin(), line.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
  });
}

/// True if `token` (trailing whitespace allowed) follows the JSON number
/// grammar. Used on error paths only: tells "out of range" from "not JSON".
bool is_json_number(std::string_view token) noexcept {
  while (!token.empty()
         && (token.back() == ' ' || token.back() == '\t'
             || token.back() == '\r' || token.back() == '\n'))
    token.remove_suffix(1);
  size_t i = 0;
  auto digits = [&] {
    size_t start = i;
    while (i < token.size() && token[i] >= '0' && token[i] <= '9')
      ++i;
    return i > start;
  };
  if (i < token.size() && token[i] == '-')
    ++i;
  if (i < token.size() && token[i] == '0')
    ++i;
  else if (!digits())
    return false;
  if (i < token.size() && token[i] == '.') {
    ++i;
    if (!digits())
      return false;
  }
  if (i < token.size() && (token[i] == 'e' || token[i] == 'E')) {
    ++i;
    if (i < token.size() && (token[i] == '+' || token[i] == '-'))
      ++i;
    if (!digits())
      return false;
  }
  return i == token.size();
}

std::string_view type_name(ondemand::json_type t) noexcept {
  switch (t) {
    case ondemand::json_type::array:
      return "an array";
    case ondemand::json_type::object:
      return "an object";
    case ondemand::json_type::number:
      return "a number";
    case ondemand::json_type::string:
      return "a string";
    case ondemand::json_type::boolean:
      return "a boolean";
    case ondemand::json_type::null:
      return "null";
  }
  return "unknown";
}

std::string quoted(std::string_view s, size_t max = 40) {
  std::string out = "\"";
  out.append(s.substr(0, max));
  if (s.size() > max)
    out += "...";
  out += '"';
  return out;
}

/// The key of a field. Without escapes (the common case) its raw bytes are
/// the key and nothing is copied; otherwise it is unescaped.
simdjson::error_code field_key(simdjson::simdjson_result<ondemand::field>& field,
                               std::string_view& k) {
  simdjson::ondemand::raw_json_string raw;
  if (auto e = field.key().get(raw))
    return e;
  const char* start = raw.raw();
  const char* end = start;
  while (*end != '"' && *end != '\\')
    ++end;
  if (*end == '\\')
    return field.unescaped_key().get(k);
  k = {start, static_cast<size_t>(end - start)};
  return simdjson::SUCCESS;
}

/// `k == name` for a literal, compiled to a length check and a fixed-size
/// compare rather than a library call per field.
template <size_t N>
bool is(std::string_view k, const char (&name)[N]) noexcept {
  return k.size() == N - 1 && std::memcmp(k.data(), name, N - 1) == 0;
}

/// Lets us ask the document whether anything follows the root object; the
/// public API of simdjson 3.0.1 has no document::at_end().
struct document_access : ondemand::document {
  static bool at_end(ondemand::document& doc) noexcept {
    auto member = &document_access::iter;
    return (doc.*member).at_end();
  }
  /// False once an error abandoned the iterator (at_end would then read
  /// through a null parser: found by tests/fuzz/fuzz_event_parser).
  static bool alive(ondemand::document& doc) noexcept {
    auto member = &document_access::iter;
    return (doc.*member).is_alive();
  }
};

} // namespace

std::string validate_metric(std::string_view metric, const event_limits& l) {
  if (metric.empty())
    return "metric is empty";
  if (metric.size() > l.max_metric_length)
    return "metric is longer than " + std::to_string(l.max_metric_length)
           + " characters";
  for (char c : metric) {
    auto u = static_cast<unsigned char>(c);
    if (!metric_chars[u]) {
      std::string shown = (u >= 0x20 && u < 0x7f)
                            ? std::string{"'"} + c + "'"
                            : "byte 0x" + std::string{"0123456789abcdef"[u >> 4]}
                                + "0123456789abcdef"[u & 15];
      return "metric " + quoted(metric) + " contains invalid character "
             + shown + " (allowed: A-Z a-z 0-9 _ . : / -)";
    }
  }
  return {};
}

std::string shown_value(std::string_view s) {
  std::string out = "'";
  for (char c : s.substr(0, 64)) {
    auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  if (s.size() > 64)
    out += "...";
  return out + "'";
}

std::string validate_ts(millis ts, millis now, const event_limits& l) {
  if (ts < now - l.max_age)
    return "ts " + std::to_string(ts) + " is older than the longest retention ("
           + format_duration(l.max_age) + ")";
  if (ts > now + l.max_future)
    return "ts " + std::to_string(ts) + " is more than "
           + format_duration(l.max_future) + " in the future";
  return {};
}

// -- impl ---------------------------------------------------------------------

struct event_parser::impl {
  ondemand::parser parser;
  /// Parser and padded copy for the outer document of an ingest request
  /// (its elements are parsed with `parser` while this one iterates).
  ondemand::parser outer;
  simdjson::padded_string outer_buffer;
  /// Padded copy of the current line, reused across calls.
  std::unique_ptr<char[]> buffer;
  size_t capacity = 0;
  /// Scratch for sorting tags and building the series key.
  std::vector<tag_view> tags;
  std::string key;
  /// Keys of the series this parser has seen, by metric and raw "tags".
  key_cache keys;

  /// What parsing a line found, before deciding what kind of line it is.
  struct fields {
    bool has_op = false;
    std::string_view op;
    bool has_metric = false;
    std::string_view metric;
    bool has_ts = false;
    int64_t ts = 0;
    double value = 1;
    std::string error; ///< first event validation error
    /// Skimming only (see skim): the raw JSON of the one "tags" object.
    std::string_view raw_tags;
    /// Skimming only: the key cache cannot answer (tags that are not one
    /// object).
    bool uncacheable = false;
  };

  void fail(fields& f, std::string message) {
    if (f.error.empty())
      f.error = std::move(message);
  }

  static problem json_problem(simdjson::error_code e) {
    if (e == simdjson::UTF8_ERROR)
      return {error_code::bad_request, "invalid UTF-8 in line"};
    return {error_code::bad_request,
            std::string{"invalid JSON: "} + simdjson::error_message(e)};
  }

  /// Walks an unknown value completely: validates its JSON and its depth.
  simdjson::error_code walk(ondemand::value v, int depth, bool& too_deep) {
    ondemand::json_type t;
    if (auto e = v.type().get(t))
      return e;
    switch (t) {
      case ondemand::json_type::object: {
        if (depth >= max_depth) {
          too_deep = true;
          return simdjson::DEPTH_ERROR;
        }
        ondemand::object obj;
        if (auto e = v.get_object().get(obj))
          return e;
        for (auto field : obj) {
          std::string_view k;
          ondemand::value child;
          if (auto e = field.unescaped_key().get(k))
            return e;
          if (auto e = field.value().get(child))
            return e;
          if (auto e = walk(child, depth + 1, too_deep))
            return e;
        }
        return simdjson::SUCCESS;
      }
      case ondemand::json_type::array: {
        if (depth >= max_depth) {
          too_deep = true;
          return simdjson::DEPTH_ERROR;
        }
        ondemand::array arr;
        if (auto e = v.get_array().get(arr))
          return e;
        for (auto element : arr) {
          ondemand::value child;
          if (auto e = element.get(child))
            return e;
          if (auto e = walk(child, depth + 1, too_deep))
            return e;
        }
        return simdjson::SUCCESS;
      }
      case ondemand::json_type::number:
        return v.get_number().error();
      case ondemand::json_type::string:
        return v.get_string().error();
      case ondemand::json_type::boolean:
        return v.get_bool().error();
      case ondemand::json_type::null: {
        bool is_null = false;
        if (auto e = v.is_null().get(is_null))
          return e;
        return is_null ? simdjson::SUCCESS : simdjson::N_ATOM_ERROR;
      }
    }
    return simdjson::INCORRECT_TYPE;
  }

  /// Reads "ts". Returns a JSON error, or records a validation error in `f`.
  simdjson::error_code read_ts(ondemand::value v, fields& f) {
    ondemand::json_type t;
    if (auto e = v.type().get(t))
      return e;
    if (t != ondemand::json_type::number) {
      fail(f, "ts must be an integer (epoch milliseconds), got "
                + std::string{type_name(t)});
      return simdjson::SUCCESS;
    }
    if (!v.get_int64().get(f.ts)) {
      f.has_ts = true;
      return simdjson::SUCCESS;
    }
    std::string_view token = v.raw_json_token();
    if (!is_json_number(token))
      return simdjson::NUMBER_ERROR;
    if (token.find_first_of(".eE") != std::string_view::npos)
      fail(f, "ts must be an integer (epoch milliseconds), got the "
              "floating-point number "
                + std::string{token.substr(0, token.find_last_not_of(" \t\r\n") + 1)});
    else
      fail(f, "ts is out of range (must be epoch milliseconds)");
    return simdjson::SUCCESS;
  }

  simdjson::error_code read_value(ondemand::value v, fields& f) {
    ondemand::json_type t;
    if (auto e = v.type().get(t))
      return e;
    if (t != ondemand::json_type::number) {
      fail(f, "value must be a number, got " + std::string{type_name(t)});
      return simdjson::SUCCESS;
    }
    if (!v.get_double().get(f.value)) {
      if (!std::isfinite(f.value))
        fail(f, "value must be a finite number");
      return simdjson::SUCCESS;
    }
    std::string_view token = v.raw_json_token();
    if (!is_json_number(token))
      return simdjson::NUMBER_ERROR;
    fail(f, "value is out of range (must be a finite 64-bit number)");
    return simdjson::SUCCESS;
  }

  simdjson::error_code read_tags(ondemand::value v, fields& f,
                                 const event_limits& l) {
    ondemand::json_type t;
    if (auto e = v.type().get(t))
      return e;
    if (t != ondemand::json_type::object) {
      fail(f, "tags must be an object of strings, got "
                + std::string{type_name(t)});
      return simdjson::SUCCESS;
    }
    ondemand::object obj;
    if (auto e = v.get_object().get(obj))
      return e;
    for (auto field : obj) {
      std::string_view k;
      ondemand::value tv;
      if (auto e = field.unescaped_key().get(k))
        return e;
      if (auto e = field.value().get(tv))
        return e;
      ondemand::json_type vt;
      if (auto e = tv.type().get(vt))
        return e;
      if (vt != ondemand::json_type::string) {
        fail(f, "tag " + quoted(k) + " must have a string value, got "
                  + std::string{type_name(vt)});
        continue;
      }
      std::string_view val;
      if (auto e = tv.get_string().get(val))
        return e;
      if (k.empty())
        fail(f, "tag keys must not be empty");
      else if (k.size() > l.max_tag_bytes)
        fail(f, "tag key " + quoted(k) + " is longer than "
                  + std::to_string(l.max_tag_bytes) + " bytes");
      else if (val.size() > l.max_tag_bytes)
        fail(f, "value of tag " + quoted(k) + " is longer than "
                  + std::to_string(l.max_tag_bytes) + " bytes");
      else if (tags.size() >= l.max_tags)
        fail(f, "more than " + std::to_string(l.max_tags) + " tags");
      else
        tags.emplace_back(k, val);
    }
    return simdjson::SUCCESS;
  }

  /// Copies `line` into the padded buffer that read() iterates.
  void load(std::string_view line) {
    if (capacity < line.size() + simdjson::SIMDJSON_PADDING) {
      capacity = std::max(line.size() + simdjson::SIMDJSON_PADDING,
                          std::max<size_t>(capacity * 2, 4096));
      buffer = std::make_unique<char[]>(capacity);
    }
    std::memcpy(buffer.get(), line.data(), line.size());
    std::memset(buffer.get() + line.size(), 0, simdjson::SIMDJSON_PADDING);
    loaded = line.size();
  }
  size_t loaded = 0;

  /// Skimming "tags": only its raw text, without unescaping or checking
  /// its strings (a key cache hit vouches for them; anything else is read
  /// again in full).
  simdjson::error_code skim_tags(ondemand::value v, fields& f) {
    ondemand::json_type t;
    if (auto e = v.type().get(t))
      return e;
    if (t != ondemand::json_type::object || !f.raw_tags.empty()) {
      f.uncacheable = true; // read in full; the iterator skips this value
      return simdjson::SUCCESS;
    }
    ondemand::object obj;
    if (auto e = v.get_object().get(obj))
      return e;
    return obj.raw_json().get(f.raw_tags);
  }

  /// Parses the object fields of the loaded line into `f`, or returns a JSON
  /// problem. Skimming reads "tags" with skim_tags instead of read_tags.
  std::optional<problem> read(fields& f, const event_limits& l, bool skim) {
    ondemand::document doc;
    if (auto e = parser.iterate(buffer.get(), loaded, capacity).get(doc))
      return json_problem(e);
    ondemand::object obj;
    if (auto e = doc.get_object().get(obj)) {
      if (e == simdjson::INCORRECT_TYPE)
        return problem{error_code::bad_request, "line is not a JSON object"};
      return json_problem(e);
    }
    for (auto field : obj) {
      std::string_view k;
      ondemand::value v;
      if (auto e = field_key(field, k))
        return json_problem(e);
      if (auto e = field.value().get(v))
        return json_problem(e);
      simdjson::error_code e = simdjson::SUCCESS;
      if (is(k, "metric")) {
        ondemand::json_type t;
        if ((e = v.type().get(t)) == simdjson::SUCCESS) {
          if (t == ondemand::json_type::string) {
            e = v.get_string().get(f.metric);
            f.has_metric = true;
          } else {
            fail(f, "metric must be a string, got "
                      + std::string{type_name(t)});
          }
        }
      } else if (is(k, "ts")) {
        e = read_ts(v, f);
      } else if (is(k, "value")) {
        e = read_value(v, f);
      } else if (is(k, "tags")) {
        e = skim ? skim_tags(v, f) : read_tags(v, f, l);
      } else if (is(k, "op")) {
        f.has_op = true;
        ondemand::json_type t;
        if ((e = v.type().get(t)) == simdjson::SUCCESS
            && t == ondemand::json_type::string)
          e = v.get_string().get(f.op);
      } else {
        bool too_deep = false;
        e = walk(v, 1, too_deep);
        if (too_deep)
          return problem{error_code::bad_request,
                         "JSON nested deeper than "
                           + std::to_string(max_depth) + " levels"};
      }
      if (e)
        return json_problem(e);
    }
    if (!document_access::at_end(doc))
      return problem{error_code::bad_request,
                     "invalid JSON: unexpected characters after the object"};
    return std::nullopt;
  }

  parse_result parse(std::string_view line, millis now, event_batch& out,
                     const event_limits& l, bool allow_op) {
    parse_result result;
    if (is_blank(line)) {
      if (!allow_op) {
        result.kind = line_kind::error;
        result.error = {error_code::bad_request, "empty event"};
      }
      return result;
    }
    auto reject = [&](std::string message) {
      result.kind = line_kind::error;
      result.error = {error_code::invalid_event, std::move(message)};
      return result;
    };
    load(line);
    // A series seen before: one skimming pass, then the key cache. Every
    // other outcome (a new series, a request, any problem) reads the line
    // again in full below, so that what a line yields never depends on what
    // came before it.
    std::string_view raw_tags;
    bool cacheable = false;
    {
      fields f;
      if (!read(f, l, true) && !f.has_op && f.error.empty() && f.has_metric
          && !f.uncacheable) {
        cacheable = true;
        raw_tags = f.raw_tags;
        if (auto hit = keys.find(f.metric, raw_tags)) {
          millis ts = f.has_ts ? f.ts : now;
          if (auto msg = validate_ts(ts, now, l); !msg.empty())
            return reject(std::move(msg));
          out.add(hit->key, hit->hash, ts, f.value);
          result.kind = line_kind::event;
          return result;
        }
      }
    }
    tags.clear();
    fields f;
    if (auto p = read(f, l, false)) {
      result.kind = line_kind::error;
      result.error = std::move(*p);
      return result;
    }
    if (f.has_op) {
      if (!allow_op)
        return reject("an event must not have an \"op\" field");
      result.kind = line_kind::request;
      result.op.assign(f.op);
      return result;
    }
    if (!f.error.empty())
      return reject(std::move(f.error));
    if (!f.has_metric)
      return reject("missing \"metric\"");
    if (auto msg = validate_metric(f.metric, l); !msg.empty())
      return reject(std::move(msg));
    millis ts = f.has_ts ? f.ts : now;
    if (auto msg = validate_ts(ts, now, l); !msg.empty())
      return reject(std::move(msg));
    // Canonical key: tags sorted by key, keys unique.
    std::sort(tags.begin(), tags.end(),
              [](auto& x, auto& y) { return x.first < y.first; });
    for (size_t i = 1; i < tags.size(); ++i)
      if (tags[i].first == tags[i - 1].first)
        return reject("duplicate tag key " + quoted(tags[i].first));
    key.clear();
    encode_series_key(key, f.metric, tags.data(), tags.size());
    auto hash = series_hash(key);
    out.add(key, hash, ts, f.value);
    if (cacheable)
      keys.insert(f.metric, raw_tags, key, hash);
    result.kind = line_kind::event;
    return result;
  }
};

// -- event_parser -------------------------------------------------------------

event_parser::event_parser(event_limits limits)
  : limits_(limits), impl_(std::make_unique<impl>()) {
  impl_->tags.reserve(limits_.max_tags);
  impl_->key.reserve(1024);
}

event_parser::~event_parser() = default;

parse_result event_parser::parse_line(std::string_view line, millis now,
                                      event_batch& out) {
  try {
    return impl_->parse(line, now, out, limits_, true);
  } catch (const std::exception& e) {
    parse_result result;
    result.kind = line_kind::error;
    result.error = {error_code::internal, e.what()};
    return result;
  }
}

parse_result event_parser::parse_event(std::string_view json, millis now,
                                       event_batch& out) {
  try {
    return impl_->parse(json, now, out, limits_, false);
  } catch (const std::exception& e) {
    parse_result result;
    result.kind = line_kind::error;
    result.error = {error_code::internal, e.what()};
    return result;
  }
}

event_parser::ingest_request
event_parser::parse_ingest(std::string_view line, millis now,
                           event_batch& out) {
  ingest_request r;
  auto rollback = out.size();
  auto rollback_keys = out.keys.size();
  auto fail = [&](problem p) {
    out.entries.resize(rollback);
    out.keys.resize(rollback_keys);
    r.ok = false;
    r.error = std::move(p);
    r.rejected.clear();
    return r;
  };
  try {
    auto& im = *impl_;
    im.outer_buffer = simdjson::padded_string{line};
    ondemand::document doc;
    if (auto e = im.outer.iterate(im.outer_buffer).get(doc))
      return fail(impl::json_problem(e));
    ondemand::object obj;
    if (doc.get_object().get(obj))
      return fail({error_code::bad_request, "request is not a JSON object"});
    bool has_events = false;
    for (auto field : obj) {
      std::string_view key;
      ondemand::value v;
      if (auto e = field.unescaped_key().get(key))
        return fail(impl::json_problem(e));
      if (auto e = field.value().get(v))
        return fail(impl::json_problem(e));
      if (key == "events") {
        ondemand::array arr;
        if (v.get_array().get(arr) != simdjson::SUCCESS)
          return fail({error_code::bad_request,
                       "ingest needs an \"events\" array"});
        has_events = true;
        for (auto element : arr) {
          ondemand::value ev;
          if (auto e = element.get(ev))
            return fail(impl::json_problem(e));
          ondemand::object eo;
          std::string_view raw;
          if (ev.get_object().get(eo) != simdjson::SUCCESS) {
            r.rejected.emplace_back(
              r.total++, problem{error_code::invalid_event,
                                 "an event must be a JSON object"});
            continue;
          }
          // An element that is not valid JSON spoils the whole document
          // (simdjson abandons its iterator): the request is malformed.
          if (auto e = eo.raw_json().get(raw))
            return fail(impl::json_problem(e));
          auto p = impl_->parse(raw, now, out, limits_, false);
          if (p.kind != line_kind::event)
            r.rejected.emplace_back(r.total, std::move(p.error));
          ++r.total;
        }
      } else if (key == "idempotency_key") {
        std::string_view k;
        if (v.get_string().get(k) != simdjson::SUCCESS || k.empty()
            || k.size() > 256)
          return fail({error_code::bad_request,
                       "idempotency_key must be a string of 1..256 bytes"});
        r.idempotency_key.assign(k);
      } else if (key == "id") {
        ondemand::json_type t;
        if (auto e = v.type().get(t))
          return fail(impl::json_problem(e));
        std::string_view raw;
        if (t == ondemand::json_type::object) {
          ondemand::object o;
          if (v.get_object().get(o) || o.raw_json().get(raw))
            return fail({error_code::bad_request, "invalid \"id\""});
        } else if (t == ondemand::json_type::array) {
          ondemand::array a;
          if (v.get_array().get(a) || a.raw_json().get(raw))
            return fail({error_code::bad_request, "invalid \"id\""});
        } else {
          raw = v.raw_json_token();
          while (!raw.empty() && std::isspace(static_cast<unsigned char>(raw.back())))
            raw.remove_suffix(1);
        }
        r.id.assign(raw);
      }
    }
    if (!document_access::alive(doc))
      return fail({error_code::bad_request, "malformed JSON in the request"});
    if (!document_access::at_end(doc))
      return fail({error_code::bad_request, "trailing data after the request"});
    if (!has_events)
      return fail({error_code::bad_request, "ingest needs an \"events\" array"});
    r.ok = true;
    return r;
  } catch (const std::exception& e) {
    return fail({error_code::internal, e.what()});
  }
}

} // namespace cairn::cqrs
