#include "cqrs/query.hpp"

#include "cqrs/event_parser.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <numeric>

namespace cairn::cqrs {

namespace {

using json = nlohmann::json;

constexpr double nan = std::numeric_limits<double>::quiet_NaN();

/// The most points (steps) a query may ask for.
constexpr int64_t max_points = 100000;

problem bad(std::string message) {
  return problem{error_code::bad_request, std::move(message)};
}

/// Reads a time field: integer epoch ms, "now", "-15m", "now-15m", or digits.
std::optional<millis> read_time(const json& req, const char* name,
                                millis fallback, millis now,
                                std::string& error) {
  auto it = req.find(name);
  if (it == req.end() || it->is_null())
    return fallback;
  if (it->is_number_integer()
      && (!it->is_number_unsigned()
          || it->get<uint64_t>() <= uint64_t{std::numeric_limits<millis>::max()}))
    return it->get<millis>();
  if (it->is_string())
    if (auto t = parse_time(it->get_ref<const std::string&>(), now))
      return t;
  error = std::string{"\""} + name + "\" must be epoch milliseconds, \"now\", "
          "\"-15m\" or \"now-15m\", got " + it->dump();
  return std::nullopt;
}

/// Reads the required "metric" field.
std::optional<std::string> read_metric(const json& req, bool required,
                                       std::string& error) {
  auto it = req.find("metric");
  if (it == req.end() || it->is_null()) {
    if (required)
      error = "\"metric\" is required";
    else
      return std::string{};
    return std::nullopt;
  }
  if (!it->is_string()) {
    error = "\"metric\" must be a string";
    return std::nullopt;
  }
  auto& metric = it->get_ref<const std::string&>();
  if (auto msg = validate_metric(metric, event_limits{}); !msg.empty()) {
    error = msg;
    return std::nullopt;
  }
  return metric;
}

/// Reads "where": an object of string values, sorted by key.
bool read_where(const json& req, std::vector<tag>& out, std::string& error) {
  auto it = req.find("where");
  if (it == req.end() || it->is_null())
    return true;
  if (!it->is_object()) {
    error = "\"where\" must be an object of strings";
    return false;
  }
  for (auto& [k, v] : it->items()) {
    if (!v.is_string()) {
      error = "\"where\" value of \"" + k + "\" must be a string";
      return false;
    }
    out.emplace_back(k, v.get<std::string>());
  }
  std::sort(out.begin(), out.end()); // json objects have unique keys
  return true;
}

/// Reads from/to and picks the serving tier.
bool read_range(const json& req, millis now, const tier_set& tiers,
                millis& from, millis& to, size_t& tier, std::string& error) {
  auto f = read_time(req, "from", now - 15 * 60 * 1000, now, error);
  if (!f)
    return false;
  auto t = read_time(req, "to", now, now, error);
  if (!t)
    return false;
  if (*f >= *t) {
    error = "\"from\" must be before \"to\"";
    return false;
  }
  from = *f;
  to = *t;
  tier = tiers.select(from, now);
  return true;
}

/// `t` rounded up to a multiple of `res`; nullopt on overflow.
std::optional<millis> align_up(millis t, millis res) {
  auto down = align_down(t, res);
  millis up = 0;
  if (down == t)
    return t;
  if (__builtin_add_overflow(down, res, &up))
    return std::nullopt;
  return up;
}

/// Appends segments reading [a, c) (multiples of the base resolution): the
/// coarsest of `usable[first..]` (coarsest first) whose aligned part of the
/// range is not empty reads that part, finer ones the edges, `base` the rest.
void split_range(const tier_set& tiers, const std::vector<size_t>& usable,
                 size_t first, size_t base, millis a, millis c,
                 std::vector<query_segment>& out) {
  if (a >= c)
    return;
  for (size_t i = first; i < usable.size(); ++i) {
    auto k = usable[i];
    auto res = tiers[k].resolution;
    auto x = align_up(a, res);
    auto y = align_down(c, res);
    if (!x || *x >= y)
      continue;
    split_range(tiers, usable, i + 1, base, a, *x, out);
    out.push_back(query_segment{k, *x, y});
    split_range(tiers, usable, i + 1, base, y, c, out);
    return;
  }
  out.push_back(query_segment{base, a, c});
}

/// A json number for an aggregate value: integers stay integers, NaN is null.
json agg_value(const agg_spec& a, const bucket& b, millis step,
               const ddsketch_mapping& m) {
  if (a.kind == agg_kind::count)
    return b.count;
  auto v = finalize(a, b, step, m);
  if (std::isnan(v))
    return nullptr;
  return v;
}

} // namespace

// -- aggregations -------------------------------------------------------------

std::optional<agg_spec> parse_agg(std::string_view text) {
  static constexpr std::pair<std::string_view, agg_kind> simple[] = {
    {"count", agg_kind::count}, {"sum", agg_kind::sum},
    {"min", agg_kind::min},     {"max", agg_kind::max},
    {"avg", agg_kind::avg},     {"last", agg_kind::last},
    {"rate", agg_kind::rate},
  };
  for (auto& [name, kind] : simple)
    if (text == name)
      return agg_spec{kind, 0, std::string{text}};
  // pNN or pNN.N...: 1-3 integer digits, optionally a dot and digits.
  if (text.size() < 2 || text[0] != 'p')
    return std::nullopt;
  auto num = text.substr(1);
  auto dot = num.find('.');
  auto integer = num.substr(0, dot);
  auto is_digits = [](std::string_view s) {
    return !s.empty()
           && std::all_of(s.begin(), s.end(),
                          [](char c) { return c >= '0' && c <= '9'; });
  };
  if (!is_digits(integer) || integer.size() > 3)
    return std::nullopt;
  if (dot != std::string_view::npos
      && (!is_digits(num.substr(dot + 1)) || num.size() - dot > 16))
    return std::nullopt;
  double percent = 0;
  auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), percent);
  if (ec != std::errc{} || end != num.data() + num.size() || percent > 100)
    return std::nullopt;
  return agg_spec{agg_kind::quantile, percent / 100, std::string{text}};
}

double finalize(const agg_spec& a, const bucket& b, millis step,
                const ddsketch_mapping& m) {
  switch (a.kind) {
    case agg_kind::count:
      return static_cast<double>(b.count);
    case agg_kind::rate:
      return step > 0 ? static_cast<double>(b.count) * 1000.0
                          / static_cast<double>(step)
                      : nan;
    default:
      break;
  }
  if (b.empty())
    return nan;
  switch (a.kind) {
    case agg_kind::sum:
      return b.sum;
    case agg_kind::min:
      return b.min;
    case agg_kind::max:
      return b.max;
    case agg_kind::avg:
      return b.sum / static_cast<double>(b.count);
    case agg_kind::last:
      return b.last;
    case agg_kind::quantile:
      // The true quantile lies in [min, max]; clamping only gets closer.
      return std::clamp(b.sketch.quantile(a.quantile, m), b.min, b.max);
    default:
      return nan;
  }
}

// -- planning -----------------------------------------------------------------

size_t plan_segments(const tier_set& tiers, size_t base, millis from,
                     millis to, millis step, millis now,
                     std::vector<query_segment>& out) {
  out.clear();
  // Tiers coarser than `base` that can serve: the resolution divides the step
  // (a point then holds whole buckets) and no bucket from `from` on has been
  // evicted (eviction drops buckets starting before now - retention).
  std::vector<size_t> usable;
  for (size_t k = tiers.size(); k-- > base + 1;) {
    auto& t = tiers[k];
    millis oldest = 0;
    bool covers = __builtin_sub_overflow(now, t.retention, &oldest)
                  || oldest <= from;
    if (step % t.resolution == 0 && covers)
      usable.push_back(k);
  }
  auto res = tiers[base].resolution;
  auto a = align_up(from, res);
  auto c = align_up(to, res);
  if (usable.empty() || from < 0 || !a || !c) {
    out.push_back(query_segment{base, from, to});
    return base;
  }
  // The base tier reads bucket starts in [from, to) = [a, c).
  split_range(tiers, usable, 0, base, *a, *c, out);
  if (out.empty())
    out.push_back(query_segment{base, from, to});
  return usable.front();
}

// -- request parsing ----------------------------------------------------------

parsed<query_spec> parse_query(const json& req, millis now,
                               const tier_set& tiers) {
  if (!req.is_object())
    return bad("request must be a JSON object");
  if (tiers.size() == 0)
    return problem{error_code::unavailable, "no tiers configured"};
  query_spec q;
  std::string error;
  auto metric = read_metric(req, true, error);
  if (!metric)
    return bad(error);
  q.metric = std::move(*metric);
  if (!read_range(req, now, tiers, q.from, q.to, q.tier, error))
    return bad(error);
  auto& tier = tiers[q.tier];
  q.step = tier.resolution;
  if (auto it = req.find("step"); it != req.end() && !it->is_null()) {
    std::optional<millis> step;
    if (it->is_number_integer())
      step = it->get<millis>();
    else if (it->is_string())
      step = parse_duration(it->get_ref<const std::string&>());
    if (!step || *step <= 0 || *step % tier.resolution != 0)
      return bad("\"step\" must be a positive multiple of the serving tier's "
                 "resolution (" + tier.name + "), got " + it->dump());
    q.step = *step;
  }
  millis span = 0;
  if (__builtin_sub_overflow(q.to, q.from, &span)
      || span / q.step + (span % q.step != 0 ? 1 : 0) > max_points)
    return bad("too many points: (to - from) / step exceeds "
               + std::to_string(max_points));
  if (auto it = req.find("align"); it != req.end() && !it->is_null()) {
    // Steps through this instant instead of the epoch: a client whose
    // windows end at unaligned times (a PromQL range from "now - 5m") gets
    // one point per window, not one per bucket (docs/protocol.md, query).
    if (!it->is_number_integer() || it->get<millis>() % tier.resolution != 0)
      return bad("\"align\" must be an integer multiple of the range tier's "
                 "resolution (" + tier.name + "), got " + it->dump());
    q.align = ((it->get<millis>() % q.step) + q.step) % q.step;
  }
  // A coarser tier serves only if its buckets never straddle a step
  // boundary: its resolution must divide the step and the alignment.
  q.tier = plan_segments(tiers, q.tier, q.from, q.to, std::gcd(q.step, q.align),
                         now, q.segments);
  if (auto it = req.find("aggs"); it != req.end() && !it->is_null()) {
    if (!it->is_array() || it->empty())
      return bad("\"aggs\" must be a non-empty list of strings");
    for (auto& a : *it) {
      auto spec = a.is_string() ? parse_agg(a.get_ref<const std::string&>())
                                : std::nullopt;
      if (!spec)
        return bad("unknown aggregation " + a.dump()
                   + " (use count, sum, min, max, avg, last, rate, pNN)");
      q.aggs.push_back(std::move(*spec));
    }
  } else {
    q.aggs.push_back(*parse_agg("count"));
  }
  if (!read_where(req, q.where, error))
    return bad(error);
  if (auto it = req.find("group_by"); it != req.end() && !it->is_null()) {
    if (!it->is_array())
      return bad("\"group_by\" must be a list of strings");
    for (auto& g : *it) {
      if (!g.is_string())
        return bad("\"group_by\" must be a list of strings");
      q.group_by.push_back(g.get<std::string>());
    }
  }
  return q;
}

parsed<query_spec> make_query(const std::string& metric, millis from, millis to,
                              millis step, std::optional<millis> align,
                              const std::vector<std::string>& aggs, millis now,
                              const tier_set& tiers) {
  // parse_query's steps for a request with these fields (integer times,
  // an integer step and align, aggs as strings; no where, no group_by),
  // with the same errors: test "make_query equals parse_query".
  if (tiers.size() == 0)
    return problem{error_code::unavailable, "no tiers configured"};
  if (auto msg = validate_metric(metric, event_limits{}); !msg.empty())
    return bad(msg);
  if (from >= to)
    return bad("\"from\" must be before \"to\"");
  query_spec q;
  q.metric = metric;
  q.from = from;
  q.to = to;
  q.tier = tiers.select(from, now);
  auto& tier = tiers[q.tier];
  if (step <= 0 || step % tier.resolution != 0)
    return bad("\"step\" must be a positive multiple of the serving tier's "
               "resolution (" + tier.name + "), got " + std::to_string(step));
  q.step = step;
  millis span = 0;
  if (__builtin_sub_overflow(q.to, q.from, &span)
      || span / q.step + (span % q.step != 0 ? 1 : 0) > max_points)
    return bad("too many points: (to - from) / step exceeds "
               + std::to_string(max_points));
  if (align) {
    if (*align % tier.resolution != 0)
      return bad("\"align\" must be an integer multiple of the range tier's "
                 "resolution (" + tier.name + "), got " + std::to_string(*align));
    q.align = ((*align % q.step) + q.step) % q.step;
  }
  q.tier = plan_segments(tiers, q.tier, q.from, q.to, std::gcd(q.step, q.align),
                         now, q.segments);
  if (aggs.empty())
    return bad("\"aggs\" must be a non-empty list of strings");
  for (auto& a : aggs) {
    auto spec = parse_agg(a);
    if (!spec)
      return bad("unknown aggregation " + json(a).dump()
                 + " (use count, sum, min, max, avg, last, rate, pNN)");
    q.aggs.push_back(std::move(*spec));
  }
  return q;
}

parsed<topk_spec> parse_topk(const json& req, millis now,
                             const tier_set& tiers) {
  if (!req.is_object())
    return bad("request must be a JSON object");
  if (tiers.size() == 0)
    return problem{error_code::unavailable, "no tiers configured"};
  topk_spec q;
  std::string error;
  auto metric = read_metric(req, true, error);
  if (!metric)
    return bad(error);
  q.metric = std::move(*metric);
  auto by = req.find("by");
  if (by == req.end() || !by->is_string() || by->get_ref<const std::string&>().empty())
    return bad("\"by\" is required and must be a tag name");
  q.by = by->get<std::string>();
  if (auto it = req.find("k"); it != req.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 1
        || it->get<int64_t>() > 10000)
      return bad("\"k\" must be an integer in 1..10000");
    q.k = it->get<size_t>();
  }
  q.agg = *parse_agg("count");
  if (auto it = req.find("agg"); it != req.end() && !it->is_null()) {
    auto spec = it->is_string() ? parse_agg(it->get_ref<const std::string&>())
                                : std::nullopt;
    if (!spec)
      return bad("unknown aggregation " + it->dump()
                 + " (use count, sum, min, max, avg, last, rate, pNN)");
    q.agg = std::move(*spec);
  }
  if (!read_range(req, now, tiers, q.from, q.to, q.tier, error))
    return bad(error);
  if (!read_where(req, q.where, error))
    return bad(error);
  return q;
}

parsed<series_spec> parse_series(const json& req) {
  if (!req.is_object())
    return bad("request must be a JSON object");
  series_spec q;
  std::string error;
  auto metric = read_metric(req, false, error);
  if (!metric)
    return bad(error);
  q.metric = std::move(*metric);
  if (!read_where(req, q.where, error))
    return bad(error);
  if (auto it = req.find("limit"); it != req.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 1
        || it->get<int64_t>() > 1000000)
      return bad("\"limit\" must be an integer in 1..1000000");
    q.limit = it->get<size_t>();
  }
  return q;
}

// -- partial results ----------------------------------------------------------

namespace {

bool point_before(const point_map::value_type& p, millis t) {
  return p.first < t;
}

} // namespace

point_map::iterator point_map::find(millis t) {
  auto it = std::lower_bound(points_.begin(), points_.end(), t, point_before);
  return it != points_.end() && it->first == t ? it : points_.end();
}

point_map::const_iterator point_map::find(millis t) const {
  auto it = std::lower_bound(points_.begin(), points_.end(), t, point_before);
  return it != points_.end() && it->first == t ? it : points_.end();
}

point_map::iterator point_map::try_emplace(const_iterator hint, millis t) {
  if (hint != points_.end() && hint->first == t)
    return points_.begin() + (hint - points_.cbegin());
  bool fits = (hint == points_.begin() || std::prev(hint)->first < t)
              && (hint == points_.end() || t < hint->first);
  if (!fits) {
    hint = std::lower_bound(points_.cbegin(), points_.cend(), t, point_before);
    if (hint != points_.end() && hint->first == t)
      return points_.begin() + (hint - points_.cbegin());
  }
  if (hint == points_.end()) {
    if (points_.capacity() == 0)
      points_.reserve(8);
    points_.emplace_back(t, bucket{});
    return points_.end() - 1;
  }
  return points_.emplace(hint, t, bucket{});
}

std::pair<point_map::iterator, bool> point_map::try_emplace(millis t,
                                                            bucket&& b) {
  auto it = std::lower_bound(points_.begin(), points_.end(), t, point_before);
  if (it != points_.end() && it->first == t)
    return {it, false};
  return {points_.emplace(it, t, std::move(b)), true};
}

void point_map::merge(point_map&& other) {
  if (points_.empty()) {
    points_ = std::move(other.points_);
    return;
  }
  // One linear merge of two sorted runs.
  container merged;
  merged.reserve(points_.size() + other.points_.size());
  auto a = points_.begin();
  auto b = other.points_.begin();
  while (a != points_.end() || b != other.points_.end()) {
    if (b == other.points_.end()
        || (a != points_.end() && a->first < b->first)) {
      merged.push_back(std::move(*a++));
    } else if (a == points_.end() || b->first < a->first) {
      merged.push_back(std::move(*b++));
    } else {
      a->second.merge(b->second);
      merged.push_back(std::move(*a++));
      ++b;
    }
  }
  points_ = std::move(merged);
  other.points_.clear();
}

void query_partial::merge(query_partial&& other) {
  collided = collided || other.collided;
  for (auto& [key, group] : other.groups) {
    auto [it, added] = groups.try_emplace(key, std::move(group));
    if (added)
      continue;
    if (it->second.final || group.final)
      collided = true;  // finalised aggs do not merge
    else
      it->second.points.merge(std::move(group.points));
  }
  other.groups.clear();
  other.collided = false;
}

// Order-preserving: an absent value (0x00) sorts before any present one
// (0x01 + bytes, 0x00 escaped as 0x00 0xff, terminated by 0x00 0x01).
std::string encode_group_key(const std::vector<std::optional<std::string>>& v) {
  std::string out;
  for (auto& value : v) {
    if (!value) {
      out.push_back('\0');
      continue;
    }
    out.push_back('\1');
    for (char c : *value) {
      out.push_back(c);
      if (c == '\0')
        out.push_back('\xff');
    }
    out.push_back('\0');
    out.push_back('\1');
  }
  return out;
}

void topk_partial::merge(topk_partial&& other) {
  for (auto& [tag_value, b] : other.values) {
    auto [it, added] = values.try_emplace(tag_value, std::move(b));
    if (!added)
      it->second.merge(b);
  }
  other.values.clear();
}

void series_partial::merge(series_partial&& other) {
  keys.insert(keys.end(), std::make_move_iterator(other.keys.begin()),
              std::make_move_iterator(other.keys.end()));
  other.keys.clear();
}

void metrics_partial::merge(metrics_partial&& other) {
  for (auto& [name, n] : other.metrics)
    metrics[name] += n;
  other.metrics.clear();
}

// -- rendering ----------------------------------------------------------------

namespace {

json lost_json(const coverage& cov) {
  auto lost = json::object();
  for (auto [p, at] : cov.lost_partitions)
    lost[std::to_string(p)] = at;
  return lost;
}

void render_coverage(const coverage& cov, json& out) {
  out["partial"] = cov.partial();
  if (cov.partial())
    out["missing_partitions"] = cov.missing_partitions;
  if (!cov.pending_hints.empty()) {
    auto& ph = out["pending_hints"] = json::object();
    for (auto& [p, holders] : cov.pending_hints)
      ph[std::to_string(p)] = holders;
  }
  if (!cov.lost_partitions.empty())
    out["lost_partitions"] = lost_json(cov);
}

} // namespace

void render_query(const query_spec& q, const query_partial& p,
                  const tier_set& tiers, const ddsketch_mapping& m,
                  const coverage& cov, json& out) {
  out = json::object();
  out["ok"] = true;
  out["step"] = q.step;
  out["tier"] = q.tier < tiers.size() ? tiers[q.tier].name : std::string{};
  render_coverage(cov, out);
  auto series = json::array();
  for (auto& [key, group] : p.groups) {
    auto points = json::array();
    for (size_t j = 0; group.final && j < group.finals.size(); ++j) {
      auto& fp = group.finals[j];
      if (fp.count == 0)
        continue;
      json point = json::object();
      point["t"] = fp.t;
      for (size_t i = 0; i < q.aggs.size(); ++i) {
        auto& a = q.aggs[i];
        auto v = group.final_values[j * q.aggs.size() + i];
        if (a.kind == agg_kind::count)
          point[a.name] = fp.count;
        else if (std::isnan(v))
          point[a.name] = nullptr;
        else
          point[a.name] = v;
      }
      points.push_back(std::move(point));
    }
    for (auto& [t, b] : group.points) {
      if (b.empty())
        continue;
      json point = json::object();
      point["t"] = t;
      for (auto& a : q.aggs)
        point[a.name] = agg_value(a, b, q.step, m);
      points.push_back(std::move(point));
    }
    if (points.empty())
      continue;
    json tags = json::object();
    for (size_t i = 0; i < q.group_by.size() && i < group.values.size(); ++i)
      if (group.values[i])
        tags[q.group_by[i]] = *group.values[i];
    series.push_back({{"tags", std::move(tags)}, {"points", std::move(points)}});
  }
  out["series"] = std::move(series);
}

namespace {

void append_json_string(std::string& out, std::string_view text) {
  // Plain ASCII without quotes, backslashes or control characters is written
  // as is (tag values almost always are); anything else the way nlohmann
  // writes it, so both renderers stay byte-identical.
  bool plain = std::all_of(text.begin(), text.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u >= 0x20 && u < 0x80 && c != '"' && c != '\\';
  });
  if (!plain) {
    out += json(text).dump(-1, ' ', false, json::error_handler_t::replace);
    return;
  }
  out += '"';
  out += text;
  out += '"';
}

void append_number(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, res.ptr);
}

void append_integer(std::string& out, int64_t v) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, res.ptr);
}

} // namespace

void render_query_text(const query_spec& q, const query_partial& p,
                       const tier_set& tiers, const ddsketch_mapping& m,
                       const coverage& cov, const json* id,
                       std::string& out) {
  // Agg names as JSON keys, escaped once.
  std::vector<std::string> keys;
  keys.reserve(q.aggs.size());
  for (auto& a : q.aggs) {
    std::string k{","};
    append_json_string(k, a.name);
    k += ':';
    keys.push_back(std::move(k));
  }
  // Group-by tag names as JSON keys, likewise.
  std::vector<std::string> tag_keys;
  tag_keys.reserve(q.group_by.size());
  for (auto& g : q.group_by) {
    std::string k;
    append_json_string(k, g);
    k += ':';
    tag_keys.push_back(std::move(k));
  }
  out += "{\"ok\":true";
  if (id != nullptr) {
    out += ",\"id\":";
    out += id->dump(-1, ' ', false, json::error_handler_t::replace);
  }
  out += ",\"step\":";
  append_integer(out, q.step);
  out += ",\"tier\":";
  append_json_string(out, q.tier < tiers.size() ? tiers[q.tier].name
                                                : std::string{});
  out += ",\"partial\":";
  out += cov.partial() ? "true" : "false";
  if (cov.partial()) {
    out += ",\"missing_partitions\":[";
    for (size_t i = 0; i < cov.missing_partitions.size(); ++i) {
      if (i > 0)
        out += ',';
      append_integer(out, cov.missing_partitions[i]);
    }
    out += ']';
  }
  if (!cov.pending_hints.empty()) {
    json ph = json::object();
    for (auto& [p, holders] : cov.pending_hints)
      ph[std::to_string(p)] = holders;
    out += ",\"pending_hints\":";
    out += ph.dump();
  }
  if (!cov.lost_partitions.empty()) {
    out += ",\"lost_partitions\":";
    out += lost_json(cov).dump();
  }
  out += ",\"series\":[";
  bool first_series = true;
  for (auto& [key, group] : p.groups) {
    bool any = false;
    for (auto& [t, b] : group.points)
      if (!b.empty()) {
        any = true;
        break;
      }
    for (auto& fp : group.finals)
      if (fp.count != 0) {
        any = true;
        break;
      }
    if (!any)
      continue;
    if (!first_series)
      out += ',';
    first_series = false;
    out += "{\"tags\":{";
    bool first_tag = true;
    for (size_t i = 0; i < q.group_by.size() && i < group.values.size(); ++i)
      if (group.values[i]) {
        if (!first_tag)
          out += ',';
        first_tag = false;
        out += tag_keys[i];
        append_json_string(out, *group.values[i]);
      }
    out += "},\"points\":[";
    bool first_point = true;
    const double* values = group.final_values.data();
    for (auto& fp : group.finals) {
      auto* v = values;
      values += q.aggs.size();
      if (fp.count == 0)
        continue;
      if (!first_point)
        out += ',';
      first_point = false;
      out += "{\"t\":";
      append_integer(out, fp.t);
      for (size_t i = 0; i < q.aggs.size(); ++i) {
        out += keys[i];
        if (q.aggs[i].kind == agg_kind::count)
          append_integer(out, static_cast<int64_t>(fp.count));
        else
          append_number(out, v[i]);
      }
      out += '}';
    }
    for (auto& [t, b] : group.points) {
      if (b.empty())
        continue;
      if (!first_point)
        out += ',';
      first_point = false;
      out += "{\"t\":";
      append_integer(out, t);
      for (size_t i = 0; i < q.aggs.size(); ++i) {
        auto& a = q.aggs[i];
        out += keys[i];
        if (a.kind == agg_kind::count)
          append_integer(out, static_cast<int64_t>(b.count));
        else
          append_number(out, finalize(a, b, q.step, m));
      }
      out += '}';
    }
    out += "]}";
  }
  out += "]}";
}

void render_topk(const topk_spec& q, const topk_partial& p,
                 const ddsketch_mapping& m, const coverage& cov, json& out) {
  struct entry {
    const std::string* tag;
    const bucket* b;
    double value;
  };
  millis range = q.to - q.from;
  std::vector<entry> entries;
  for (auto& [tag_value, b] : p.values) {
    auto v = finalize(q.agg, b, range, m);
    if (!b.empty() && !std::isnan(v))
      entries.push_back(entry{&tag_value, &b, v});
  }
  auto n = std::min(q.k, entries.size());
  std::partial_sort(entries.begin(), entries.begin() + static_cast<ptrdiff_t>(n),
                    entries.end(), [](auto& x, auto& y) {
                      return x.value != y.value ? x.value > y.value
                                                : *x.tag < *y.tag;
                    });
  out = json::object();
  out["ok"] = true;
  render_coverage(cov, out);
  auto top = json::array();
  for (size_t i = 0; i < n; ++i)
    top.push_back({{"tag", *entries[i].tag},
                   {"value", agg_value(q.agg, *entries[i].b, range, m)}});
  out["top"] = std::move(top);
}

void render_series(const series_spec& q, const series_partial& p,
                   const coverage& cov, json& out) {
  std::vector<const std::string*> keys;
  keys.reserve(p.keys.size());
  for (auto& k : p.keys)
    keys.push_back(&k);
  std::sort(keys.begin(), keys.end(), [](auto x, auto y) { return *x < *y; });
  keys.erase(std::unique(keys.begin(), keys.end(),
                         [](auto x, auto y) { return *x == *y; }),
             keys.end());
  out = json::object();
  out["ok"] = true;
  auto series = json::array();
  std::vector<tag> tags;
  for (size_t i = 0; i < keys.size() && i < q.limit; ++i) {
    json t = json::object();
    if (decode_series_tags(*keys[i], tags))
      for (auto& [k, v] : tags)
        t[k] = v;
    series.push_back({{"metric", std::string{series_metric(*keys[i])}},
                      {"tags", std::move(t)}});
  }
  out["series"] = std::move(series);
  out["truncated"] = keys.size() > q.limit;
  render_coverage(cov, out);
}

void render_metrics(const metrics_partial& p, const coverage& cov, json& out) {
  out = json::object();
  out["ok"] = true;
  auto metrics = json::array();
  for (auto& [name, n] : p.metrics)
    metrics.push_back({{"name", name}, {"series", n}});
  out["metrics"] = std::move(metrics);
  render_coverage(cov, out);
}

} // namespace cairn::cqrs
