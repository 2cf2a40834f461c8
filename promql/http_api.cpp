#include "promql/http_api.hpp"

#include "promql/parser.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <set>

namespace cairn::promql {

using nlohmann::json;

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%') {
      if (i + 2 >= in.size())
        return false;
      int h = hex_digit(in[i + 1]);
      int l = hex_digit(in[i + 2]);
      if (h < 0 || l < 0)
        return false;
      out += static_cast<char>(h * 16 + l);
      i += 2;
    } else {
      out += c;
    }
  }
  return true;
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool read_int(std::string_view s, size_t pos, size_t len, int& out) {
  if (pos + len > s.size())
    return false;
  for (size_t i = pos; i < pos + len; ++i)
    if (s[i] < '0' || s[i] > '9')
      return false;
  std::from_chars(s.data() + pos, s.data() + pos + len, out);
  return true;
}

std::optional<millis> parse_rfc3339(std::string_view s) {
  int y, mo, d, h, mi, sec;
  if (!read_int(s, 0, 4, y) || s.size() < 19 || s[4] != '-' || !read_int(s, 5, 2, mo)
      || s[7] != '-' || !read_int(s, 8, 2, d) || (s[10] != 'T' && s[10] != 't'
                                                  && s[10] != ' ')
      || !read_int(s, 11, 2, h) || s[13] != ':' || !read_int(s, 14, 2, mi)
      || s[16] != ':' || !read_int(s, 17, 2, sec))
    return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
    return std::nullopt;
  size_t i = 19;
  millis frac = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    millis scale = 100;
    size_t digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      frac += (s[i] - '0') * scale;
      scale /= 10;
      ++i;
      ++digits;
    }
    if (digits == 0)
      return std::nullopt;
  }
  millis offset = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    int oh, om;
    if (!read_int(s, i + 1, 2, oh) || i + 3 >= s.size() || s[i + 3] != ':'
        || !read_int(s, i + 4, 2, om))
      return std::nullopt;
    offset = (oh * 60 + om) * 60000LL * (s[i] == '+' ? 1 : -1);
    i += 6;
  } else {
    return std::nullopt;
  }
  if (i != s.size())
    return std::nullopt;
  millis days = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  return ((days * 24 + h) * 60 + mi) * 60000LL + sec * 1000LL + frac - offset;
}

std::optional<double> parse_float(std::string_view s) {
  if (s.empty())
    return std::nullopt;
  std::string text(s);
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isfinite(v))
    return std::nullopt;
  return v;
}

/// Appends `t` as float seconds with at most 3 decimals, as Prometheus
/// writes them ("1764190000", "1764190000.5").
void append_time(std::string& out, millis t) {
  auto sec = t / 1000;
  auto ms = t % 1000;
  if (ms < 0) {
    ms += 1000;
    sec -= 1;
  }
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, static_cast<long long>(sec));
  out.append(buf, r.ptr);
  if (ms == 0)
    return;
  char frac[4] = {'.', static_cast<char>('0' + ms / 100),
                  static_cast<char>('0' + ms / 10 % 10), static_cast<char>('0' + ms % 10)};
  size_t n = 4;
  while (frac[n - 1] == '0')
    --n;
  out.append(frac, n);
}

/// Appends format_value(v) without a temporary string.
void append_value(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buf[400];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);
  if (r.ec != std::errc{})
    out += std::to_string(v);
  else
    out.append(buf, r.ptr);
}

/// Text that JSON writes as it is: printable ASCII without quotes or
/// backslashes (label names and values almost always are).
bool plain_text(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u >= 0x20 && u < 0x80 && c != '"' && c != '\\';
  });
}

void append_labels(std::string& out, const label_set& ls) {
  // The fast path writes what nlohmann writes for the same object: keys in
  // order and unique (label sets are sorted by name), plain text as it is.
  bool fast = true;
  for (size_t i = 0; i < ls.size() && fast; ++i)
    fast = (i == 0 || ls[i - 1].first < ls[i].first) && plain_text(ls[i].first)
           && plain_text(ls[i].second);
  if (!fast) {
    json m = json::object();
    for (auto& [k, v] : ls)
      m[k] = v;
    out += m.dump(-1, ' ', false, json::error_handler_t::replace);
    return;
  }
  out += '{';
  for (size_t i = 0; i < ls.size(); ++i) {
    if (i > 0)
      out += ',';
    out += '"';
    out += ls[i].first;
    out += "\":\"";
    out += ls[i].second;
    out += '"';
  }
  out += '}';
}

void append_point(std::string& out, millis t, double v) {
  out += '[';
  append_time(out, t);
  out += ",\"";
  append_value(out, v);
  out += "\"]";
}

std::string success(const json& data, const std::vector<std::string>& warnings = {}) {
  json out = {{"status", "success"}, {"data", data}};
  if (!warnings.empty())
    out["warnings"] = warnings;
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

api_response error_response(const problem& p) {
  return api_response{http_status(p.type), render_problem(p)};
}

const std::string* first(const form_params& params, const std::string& name) {
  auto it = params.find(name);
  if (it == params.end() || it->second.empty())
    return nullptr;
  return &it->second.front();
}

} // namespace

// -- parameters -----------------------------------------------------------------

bool decode_form(std::string_view text, form_params& params) {
  std::string key;
  std::string value;
  while (!text.empty()) {
    auto amp = text.find('&');
    auto part = text.substr(0, amp);
    text = amp == std::string_view::npos ? std::string_view{} : text.substr(amp + 1);
    if (part.empty())
      continue;
    auto eq = part.find('=');
    if (!percent_decode(part.substr(0, eq), key))
      return false;
    if (eq == std::string_view::npos)
      value.clear();
    else if (!percent_decode(part.substr(eq + 1), value))
      return false;
    params[key].push_back(value);
  }
  return true;
}

std::optional<millis> parse_time(std::string_view text) {
  if (auto v = parse_float(text)) {
    if (std::abs(*v) > 9.2e15)
      return std::nullopt;
    return static_cast<millis>(std::llround(*v * 1000));
  }
  return parse_rfc3339(text);
}

std::optional<millis> parse_step(std::string_view text) {
  if (auto v = parse_float(text)) {
    auto ms = static_cast<millis>(std::llround(*v * 1000));
    if (ms <= 0 || *v > 9.2e12)
      return std::nullopt;
    return ms;
  }
  return parse_duration(text);
}

// -- rendering ------------------------------------------------------------------

std::string format_value(double v) {
  std::string out;
  append_value(out, v);
  return out;
}

std::string render_problem(const problem& p) {
  json out = {{"status", "error"},
              {"errorType", std::string(to_string(p.type))},
              {"error", p.message}};
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string render_value(const query_value& v) {
  std::string out;
  size_t points = 1;
  for (auto& s : v.series)
    points += s.points.size() + 4;
  out.reserve(128 + points * 32);
  out += "{\"status\":\"success\",\"data\":{\"resultType\":\"";
  switch (v.type) {
    case query_value::kind::scalar:
      out += "scalar\",\"result\":";
      append_point(out, v.time, v.scalar);
      break;
    case query_value::kind::vector:
    case query_value::kind::matrix: {
      // A vector's series carry one point ("value"), a matrix's many
      // ("values"); the rest of the shape is the same.
      bool matrix = v.type == query_value::kind::matrix;
      out += matrix ? "matrix\",\"result\":[" : "vector\",\"result\":[";
      for (size_t i = 0; i < v.series.size(); ++i) {
        auto& s = v.series[i];
        if (i > 0)
          out += ',';
        out += "{\"metric\":";
        append_labels(out, s.labels);
        out += matrix ? ",\"values\":[" : ",\"value\":";
        auto points = matrix ? s.points.size() : 1;
        for (size_t k = 0; k < points; ++k) {
          if (k > 0)
            out += ',';
          append_point(out, s.points[k].first, s.points[k].second);
        }
        out += matrix ? "]}" : "}";
      }
      out += ']';
      break;
    }
  }
  out += '}';
  if (!v.warnings.empty()) {
    out += ",\"warnings\":";
    out += json(v.warnings).dump(-1, ' ', false, json::error_handler_t::replace);
  }
  out += '}';
  return out;
}

// -- endpoints ------------------------------------------------------------------

prometheus_api::prometheus_api(api_options opts, cairn_call call)
  : opts_(std::move(opts)), call_(std::move(call)) {
}

void prometheus_api::handle(const api_request& req,
                            std::function<void(api_response)> reply) const {
  auto bad = [&](std::string m) {
    reply(error_response(problem{error_type::bad_data, std::move(m)}));
  };
  if (req.method != "GET" && req.method != "POST")
    return reply(api_response{405, render_problem(problem{
                                     error_type::bad_data,
                                     "method " + req.method
                                       + " not allowed: use GET or POST"})});
  form_params params;
  if (!decode_form(req.query, params))
    return bad("invalid percent-encoding in the query string");
  if (req.method == "POST") {
    auto ct = req.content_type.substr(0, req.content_type.find(';'));
    if (ct == "application/x-www-form-urlencoded" && !decode_form(req.body, params))
      return bad("invalid percent-encoding in the form body");
  }
  const std::string& path = req.path;
  if (path == "/api/v1/query")
    return query(params, false, std::move(reply));
  if (path == "/api/v1/query_range")
    return query(params, true, std::move(reply));
  if (path == "/api/v1/series")
    return series(params, 0, {}, std::move(reply));
  if (path == "/api/v1/labels")
    return series(params, 1, {}, std::move(reply));
  static constexpr std::string_view label_prefix = "/api/v1/label/";
  static constexpr std::string_view values_suffix = "/values";
  if (path.size() > label_prefix.size() + values_suffix.size()
      && path.compare(0, label_prefix.size(), label_prefix) == 0
      && path.compare(path.size() - values_suffix.size(), values_suffix.size(),
                      values_suffix)
           == 0) {
    std::string name;
    if (!percent_decode(std::string_view(path).substr(
                          label_prefix.size(),
                          path.size() - label_prefix.size() - values_suffix.size()),
                        name))
      return bad("invalid percent-encoding in the label name");
    return series(params, 2, std::move(name), std::move(reply));
  }
  // Endpoints Grafana calls that Cairn has nothing for: empty answers
  // instead of errors on the panel.
  if (path == "/api/v1/metadata")
    return reply(api_response{200, success(json::object())});
  if (path == "/api/v1/query_exemplars")
    return reply(api_response{200, success(json::array())});
  if (path == "/api/v1/rules")
    return reply(api_response{200, success({{"groups", json::array()}})});
  if (path == "/api/v1/alerts")
    return reply(api_response{200, success({{"alerts", json::array()}})});
  if (path == "/api/v1/status/buildinfo")
    return reply(api_response{
      200, success({{"version", "2.42.0"},
                    {"revision", "cairn-" + opts_.cairn_version},
                    {"branch", "cairn"},
                    {"buildUser", "cairn"},
                    {"buildDate", ""},
                    {"goVersion", "none (Cairn " + opts_.cairn_version + ", C++)"}})});
  reply(error_response(problem{error_type::not_found,
                               "unknown API endpoint: " + path
                                 + " (docs/prometheus-api.md lists the endpoints)"}));
}

void prometheus_api::query(const form_params& params, bool range,
                           std::function<void(api_response)> reply) const {
  auto bad = [&](std::string m) {
    reply(error_response(problem{error_type::bad_data, std::move(m)}));
  };
  auto* q = first(params, "query");
  if (!q || q->empty())
    return bad("invalid parameter \"query\": unknown position: parse error: no "
               "expression found in input");
  millis now = opts_.now();
  eval_times times;
  auto read_time = [&](const char* name, std::optional<millis> dflt,
                       millis& out) -> bool {
    auto* v = first(params, name);
    if (!v) {
      if (!dflt) {
        bad(std::string("invalid parameter \"") + name + "\": missing");
        return false;
      }
      out = *dflt;
      return true;
    }
    auto t = parse_time(*v);
    if (!t) {
      bad(std::string("invalid parameter \"") + name + "\": cannot parse \"" + *v
          + "\" to a valid timestamp");
      return false;
    }
    out = *t;
    return true;
  };
  if (range) {
    if (!read_time("start", std::nullopt, times.start)
        || !read_time("end", std::nullopt, times.end))
      return;
    if (times.end < times.start)
      return bad("invalid parameter \"end\": end timestamp must not be before start "
                 "time");
    auto* s = first(params, "step");
    if (!s)
      return bad("invalid parameter \"step\": missing");
    auto step = parse_step(*s);
    if (!step)
      return bad("invalid parameter \"step\": cannot parse \"" + *s
                 + "\" to a valid duration (zero or negative query resolution step "
                   "widths are not accepted)");
    times.step = *step;
    if ((times.end - times.start) / times.step >= 11000)
      return bad("exceeded maximum resolution of 11,000 points per timeseries. Try "
                 "decreasing the query resolution (?step=XX)");
  } else {
    if (!read_time("time", now, times.start))
      return;
    times.end = times.start;
  }
  auto parsed = parse(*q);
  if (auto* pr = std::get_if<problem>(&parsed))
    return bad("invalid parameter \"query\": " + pr->message);
  evaluate(std::get<expr>(parsed), times, now, opts_.engine, call_,
           [reply = std::move(reply)](query_outcome out) {
             if (auto* pr = std::get_if<problem>(&out))
               return reply(error_response(*pr));
             reply(api_response{200, render_value(std::get<query_value>(out))});
           });
}

namespace {

/// Collects the series that the match[] selectors select, one Cairn
/// `series` request per selector, in order.
struct series_walk : std::enable_shared_from_this<series_walk> {
  std::vector<selector> selectors;
  size_t next = 0;
  size_t limit = 10000;
  cairn_call call;
  std::set<label_set> found;  ///< with __name__
  std::vector<std::string> warnings;
  std::function<void(std::variant<problem, series_walk*>)> done;

  void step() {
    if (next == selectors.size())
      return done(this);
    auto& s = selectors[next];
    json where = json::object();
    for (auto& m : s.matchers)
      if (m.op == match_op::equal && !m.value.empty())
        where[m.name] = m.value;
    json req = {{"op", "series"}, {"where", where}, {"limit", limit}};
    if (!s.metric.empty())
      req["metric"] = s.metric;
    auto self = shared_from_this();
    call(std::move(req), [self](json reply) { self->on_reply(reply); });
  }

  void on_reply(const json& reply) {
    if (!reply.value("ok", false))
      return done(problem_of_reply(reply));
    if (reply.value("partial", false))
      warnings.push_back("partial answer: partitions "
                         + reply.value("missing_partitions", json::array()).dump()
                         + " of the Cairn cluster did not answer");
    if (reply.value("truncated", false))
      warnings.push_back("more than " + std::to_string(limit)
                         + " series match; the answer lists the first");
    auto& s = selectors[next];
    if (auto it = reply.find("series"); it != reply.end() && it->is_array())
      for (auto& x : *it) {
        label_set ls;
        if (auto t = x.find("tags"); t != x.end() && t->is_object())
          for (auto& [k, v] : t->items())
            if (v.is_string())
              ls.emplace_back(k, v.get<std::string>());
        bool ok = std::all_of(s.matchers.begin(), s.matchers.end(),
                              [&](const label_matcher& m) {
                                std::string_view v;
                                for (auto& kv : ls)
                                  if (kv.first == m.name)
                                    v = kv.second;
                                return m.matches(v);
                              });
        if (!ok)
          continue;
        ls.emplace_back("__name__", x.value("metric", std::string{}));
        std::sort(ls.begin(), ls.end());
        found.insert(std::move(ls));
      }
    ++next;
    step();
  }
};

} // namespace

void prometheus_api::series(const form_params& params, int what, std::string label,
                            std::function<void(api_response)> reply) const {
  // what: 0 = /series, 1 = /labels, 2 = /label/<label>/values
  std::vector<selector> selectors;
  if (auto it = params.find("match[]"); it != params.end())
    for (auto& text : it->second) {
      auto s = parse_selector(text);
      if (auto* pr = std::get_if<problem>(&s))
        return reply(error_response(
          problem{error_type::bad_data, "invalid parameter \"match[]\": " + pr->message}));
      selectors.push_back(std::move(std::get<selector>(s)));
    }
  if (selectors.empty()) {
    if (what == 0)
      return reply(error_response(problem{error_type::bad_data, "no match[] parameter provided"}));
    if (what == 2 && label == "__name__") {
      // Metric names without a selector: the metrics op.
      call_({{"op", "metrics"}}, [reply](json r) {
        if (!r.value("ok", false))
          return reply(error_response(problem_of_reply(r)));
        std::set<std::string> names;
        if (auto it = r.find("metrics"); it != r.end() && it->is_array())
          for (auto& m : *it)
            names.insert(m.value("name", std::string{}));
        reply(api_response{200, success(json(names))});
      });
      return;
    }
    selectors.push_back(selector{});  // every series
  }
  auto walk = std::make_shared<series_walk>();
  walk->selectors = std::move(selectors);
  walk->limit = opts_.engine.max_series;
  walk->call = call_;
  walk->done = [what, label, reply](std::variant<problem, series_walk*> out) {
    if (auto* pr = std::get_if<problem>(&out))
      return reply(error_response(*pr));
    auto* w = std::get<series_walk*>(out);
    json data = json::array();
    if (what == 0) {
      for (auto& ls : w->found) {
        json m = json::object();
        for (auto& [k, v] : ls)
          m[k] = v;
        data.push_back(std::move(m));
      }
    } else {
      std::set<std::string> names;
      for (auto& ls : w->found)
        for (auto& [k, v] : ls)
          if (what == 1)
            names.insert(k);
          else if (k == label)
            names.insert(v);
      data = names;
    }
    reply(api_response{200, success(data, w->warnings)});
  };
  walk->step();
}

} // namespace cairn::promql
