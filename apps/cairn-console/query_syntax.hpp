// query_syntax: the console's short syntax for reads, turned into protocol
// requests (docs/protocol.md) — a pure, header-only parser.
//
//   query METRIC [AGGS] [-15m | from=T] [to=T] [step=D] [where k=v ...] [by t[,t]]
//   topk  METRIC by TAG [k=N | N] [AGG | agg=AGG] [-1h | from=T] [to=T] [where k=v ...]
//   series [METRIC] [where k=v ...] [limit=N]
//   watch METRIC [AGGS] [step=D] [where k=v ...] [by t[,t]] [limit=N]
//
// AGGS is a comma list of count, sum, min, max, avg, last, rate, pNN[.N].
// Times: -15m, now, now-15m or epoch milliseconds; durations 500ms, 10s, 1m,
// 2h, 1d, 1w. `where` takes k=v pairs up to the next keyword (`by`,
// from=, to=, step=, k=, agg=, limit=); a value may be double-quoted to hold
// spaces. Errors carry the byte offset and length of the offending token in
// the input line so that the console can point at it with a caret.
//
// Thread-safe (pure functions).
#pragma once

#include <nlohmann/json.hpp>

#include <cctype>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace cairn::console {

/// One whitespace-separated word of the input, quotes removed.
struct token {
  std::string text;
  size_t pos = 0;  ///< byte offset in the line
  size_t len = 0;  ///< bytes in the line (quotes included)
};

/// A syntax error pointing at part of the input line.
struct syntax_error {
  size_t pos = 0;
  size_t len = 1;
  std::string message;
};

/// Splits `line` at unquoted whitespace. Double quotes group characters
/// (and are removed); a backslash inside quotes escapes the next character.
/// Returns an error for an unterminated quote.
inline std::variant<std::vector<token>, syntax_error>
tokenize(std::string_view line) {
  std::vector<token> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i])))
      ++i;
    if (i >= line.size())
      break;
    token t;
    t.pos = i;
    bool quoted = false;
    size_t quote_start = 0;
    while (i < line.size()
           && (quoted || !std::isspace(static_cast<unsigned char>(line[i])))) {
      char c = line[i];
      if (c == '"') {
        quoted = !quoted;
        quote_start = i;
      } else if (quoted && c == '\\' && i + 1 < line.size()) {
        t.text += line[++i];
      } else {
        t.text += c;
      }
      ++i;
    }
    if (quoted)
      return syntax_error{quote_start, line.size() - quote_start,
                          "unterminated quote"};
    t.len = i - t.pos;
    out.push_back(std::move(t));
  }
  return out;
}

/// Returns the rest of `line` starting at token `index` (raw text, quotes
/// kept), e.g. the JSON argument of `send ACTOR JSON`.
inline std::string rest_of_line(std::string_view line,
                                const std::vector<token>& tokens,
                                size_t index) {
  if (index >= tokens.size())
    return {};
  auto s = line.substr(tokens[index].pos);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
    s.remove_suffix(1);
  return std::string{s};
}

namespace detail {

inline bool all_digits(std::string_view s) {
  if (s.empty())
    return false;
  for (char c : s)
    if (c < '0' || c > '9')
      return false;
  return true;
}

/// 10, 500ms, 10s, 1m, 2h, 1d, 1w
inline bool is_duration(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9')
    ++i;
  if (i == 0)
    return false;
  auto unit = s.substr(i);
  return unit.empty() || unit == "ms" || unit == "s" || unit == "m"
         || unit == "h" || unit == "d" || unit == "w";
}

/// now, -15m, now-15m, epoch ms
inline bool is_time(std::string_view s) {
  if (s == "now" || all_digits(s))
    return true;
  if (s.rfind("now-", 0) == 0)
    return is_duration(s.substr(4));
  if (!s.empty() && s[0] == '-')
    return is_duration(s.substr(1));
  return false;
}

inline bool is_agg(std::string_view s) {
  static constexpr std::string_view names[] = {"count", "sum",  "min", "max",
                                               "avg",   "last", "rate"};
  for (auto n : names)
    if (s == n)
      return true;
  if (s.size() < 2 || s[0] != 'p')
    return false;
  auto q = s.substr(1);
  auto dot = q.find('.');
  if (dot == std::string_view::npos)
    return all_digits(q) && q.size() <= 3;
  return all_digits(q.substr(0, dot)) && all_digits(q.substr(dot + 1));
}

/// Splits "a,b,c" (empty elements kept so that they can be reported).
inline std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    auto comma = s.find(',', start);
    out.push_back(s.substr(start, comma - start));
    if (comma == std::string::npos)
      break;
    start = comma + 1;
  }
  return out;
}

inline bool is_agg_list(const std::string& s) {
  for (auto& a : split_commas(s))
    if (!is_agg(a))
      return false;
  return true;
}

/// Keys of key=value options that end a where clause.
inline bool is_option_key(std::string_view k) {
  return k == "from" || k == "to" || k == "step" || k == "k" || k == "agg"
         || k == "limit";
}

/// Splits "k=v" at the first '='; nullopt if there is none or k is empty.
inline std::optional<std::pair<std::string, std::string>>
split_kv(const std::string& s) {
  auto eq = s.find('=');
  if (eq == std::string::npos || eq == 0)
    return std::nullopt;
  return std::make_pair(s.substr(0, eq), s.substr(eq + 1));
}

inline syntax_error at(const token& t, std::string message) {
  return syntax_error{t.pos, t.len == 0 ? 1 : t.len, std::move(message)};
}

inline bool is_metric_name(std::string_view s) {
  if (s.empty() || s.size() > 200)
    return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'
          || c == ':' || c == '/' || c == '-'))
      return false;
  return true;
}

} // namespace detail

/// Which read a line describes.
enum class read_kind { query, topk, series, watch };

/// Parses a read command line (`query ...`, `topk ...`, `series ...`,
/// `watch ...`; the first word selects the kind) into the protocol request
/// object: {"op":"query","metric":..,"aggs":[..],"from":..,"to":..,"step":..,
/// "where":{..},"group_by":[..]} etc. Only given fields are set, so the node's
/// defaults apply (docs/protocol.md). `watch` yields a query request without
/// from/to (the caller sets them on every poll); its "limit" is the number of
/// polls (the caller removes it).
inline std::variant<nlohmann::json, syntax_error>
parse_read(std::string_view line) {
  using nlohmann::json;
  using namespace detail;
  auto tokenized = tokenize(line);
  if (auto* err = std::get_if<syntax_error>(&tokenized))
    return *err;
  auto& toks = std::get<std::vector<token>>(tokenized);
  if (toks.empty())
    return syntax_error{0, 1, "empty command"};
  read_kind kind;
  const auto& word = toks[0].text;
  if (word == "query")
    kind = read_kind::query;
  else if (word == "topk")
    kind = read_kind::topk;
  else if (word == "series")
    kind = read_kind::series;
  else if (word == "watch")
    kind = read_kind::watch;
  else
    return at(toks[0], "expected query, topk, series or watch");
  json req;
  req["op"] = kind == read_kind::topk     ? "topk"
              : kind == read_kind::series ? "series"
                                          : "query";
  size_t i = 1;
  auto end_token = token{"", line.size(), 1};
  // -- the metric -------------------------------------------------------------
  bool metric_optional = kind == read_kind::series;
  if (i < toks.size() && toks[i].text != "where"
      && !split_kv(toks[i].text).has_value()) {
    if (!is_metric_name(toks[i].text))
      return at(toks[i], "not a metric name (1-200 chars of A-Z a-z 0-9 _ . : / -)");
    req["metric"] = toks[i].text;
    ++i;
  } else if (!metric_optional) {
    return at(i < toks.size() ? toks[i] : end_token,
              "expected a metric name after '" + word + "'");
  }
  // -- the clauses ------------------------------------------------------------
  bool have_aggs = false;
  bool have_from = false;
  while (i < toks.size()) {
    const auto& t = toks[i];
    const auto& s = t.text;
    if (s == "where") {
      ++i;
      auto& where = req["where"] = json::object();
      size_t pairs = 0;
      while (i < toks.size() && toks[i].text != "by") {
        auto kv = split_kv(toks[i].text);
        if (kv && is_option_key(kv->first))
          break;
        if (!kv)
          return at(toks[i], "expected tag=value in the where clause");
        where[kv->first] = kv->second;
        ++pairs;
        ++i;
      }
      if (pairs == 0)
        return at(i < toks.size() ? toks[i] : end_token,
                  "expected tag=value after 'where'");
      continue;
    }
    if (s == "by") {
      if (kind == read_kind::series)
        return at(t, "series takes no 'by'");
      if (i + 1 >= toks.size())
        return at(end_token, "expected a tag name after 'by'");
      const auto& g = toks[i + 1];
      if (split_kv(g.text) || g.text == "where")
        return at(g, "expected a tag name after 'by'");
      auto tags = split_commas(g.text);
      for (auto& tag : tags)
        if (tag.empty())
          return at(g, "empty tag name in 'by' list");
      if (kind == read_kind::topk) {
        if (tags.size() != 1)
          return at(g, "topk ranks by exactly one tag");
        req["by"] = tags[0];
      } else {
        req["group_by"] = tags;
      }
      i += 2;
      continue;
    }
    if (auto kv = split_kv(s)) {
      auto& [k, v] = *kv;
      if (k == "from" || k == "to") {
        if (kind == read_kind::series || kind == read_kind::watch)
          return at(t, "'" + word + "' takes no " + k + "=");
        if (!is_time(v))
          return at(t, "bad time '" + v
                         + "' (use -15m, now, now-15m or epoch milliseconds)");
        req[k] = v;
        have_from = have_from || k == "from";
      } else if (k == "step") {
        if (kind == read_kind::topk || kind == read_kind::series)
          return at(t, "'" + word + "' takes no step=");
        if (!is_duration(v) || v == "0")
          return at(t, "bad step '" + v + "' (use e.g. 10s, 1m, 1h)");
        req["step"] = v;
      } else if (k == "k") {
        if (kind != read_kind::topk)
          return at(t, "only topk takes k=");
        if (!all_digits(v) || v.size() > 6 || std::stoul(v) == 0)
          return at(t, "k must be a positive integer");
        req["k"] = std::stoul(v);
      } else if (k == "agg") {
        if (kind != read_kind::topk)
          return at(t, "agg= is for topk; list aggregates as count,p99");
        if (!is_agg(v))
          return at(t, "unknown aggregate '" + v
                         + "' (count, sum, min, max, avg, last, rate, pNN)");
        req["agg"] = v;
      } else if (k == "limit") {
        if (kind != read_kind::series && kind != read_kind::watch)
          return at(t, "only series and watch take limit=");
        if (!all_digits(v) || v.size() > 9)
          return at(t, "limit must be a positive integer");
        req["limit"] = std::stoul(v);
      } else {
        return at(t, "unknown option '" + k
                       + "=' (from=, to=, step=, k=, agg=, limit=); tag "
                         "filters go after 'where'");
      }
      ++i;
      continue;
    }
    if (kind != read_kind::series && kind != read_kind::watch && is_time(s)
        && s != "now" && !all_digits(s)) {
      if (have_from)
        return at(t, "the start time is already given");
      req["from"] = s;
      have_from = true;
      ++i;
      continue;
    }
    if (kind == read_kind::topk && all_digits(s)) {
      if (s.size() > 6 || std::stoul(s) == 0)
        return at(t, "k must be a positive integer");
      req["k"] = std::stoul(s);
      ++i;
      continue;
    }
    if (kind != read_kind::series && !have_aggs && is_agg_list(s)) {
      auto aggs = split_commas(s);
      if (kind == read_kind::topk) {
        if (aggs.size() != 1)
          return at(t, "topk ranks by one aggregate");
        req["agg"] = aggs[0];
      } else {
        req["aggs"] = aggs;
      }
      have_aggs = true;
      ++i;
      continue;
    }
    // Say what was probably meant.
    if (kind != read_kind::series && s.find(',') != std::string::npos) {
      for (auto& a : split_commas(s))
        if (!is_agg(a))
          return at(t, "unknown aggregate '" + a
                         + "' (count, sum, min, max, avg, last, rate, pNN)");
    }
    if (kind != read_kind::series && !have_aggs && std::isalpha(static_cast<unsigned char>(s[0])))
      return at(t, "unknown aggregate '" + s
                     + "' (count, sum, min, max, avg, last, rate, pNN)");
    return at(t, "unexpected '" + s + "'");
  }
  if (kind == read_kind::topk && !req.contains("by"))
    return at(end_token, "topk needs 'by TAG'");
  return req;
}

/// Renders `err` under `line`: the line, then a caret line and the message,
/// e.g.
///   query m p99,avx -15m
///           ^^^^^^^ unknown aggregate 'avx' (...)
inline std::string render_error(std::string_view line, const syntax_error& err,
                                const std::string& indent = "  ") {
  std::string out = indent;
  out += line;
  out += '\n';
  out += indent;
  auto pos = std::min(err.pos, line.size());
  out.append(pos, ' ');
  out.append(std::max<size_t>(1, std::min(err.len, line.size() + 1 - pos)), '^');
  out += ' ';
  out += err.message;
  return out;
}

} // namespace cairn::console
