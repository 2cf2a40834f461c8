#include "promql/engine.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <set>

namespace cairn::promql {

using nlohmann::json;

namespace {

constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();

/// A tier must cover `from` by this much more than the bare retention: the
/// node evaluates "now" a little later than the planner did.
constexpr millis tier_margin = 5000;

/// Prometheus's limit on evaluation steps of a range query.
constexpr size_t max_steps = 11000;

millis align_down(millis t, millis res) {
  auto r = t % res;
  return r < 0 ? t - r - res : t - r;
}

std::string format_ms(millis d) {
  if (d % 86400000 == 0) return std::to_string(d / 86400000) + "d";
  if (d % 3600000 == 0) return std::to_string(d / 3600000) + "h";
  if (d % 60000 == 0) return std::to_string(d / 60000) + "m";
  if (d % 1000 == 0) return std::to_string(d / 1000) + "s";
  return std::to_string(d) + "ms";
}

/// The expression below all aggregations.
const expr& leaf_of(const expr& e) {
  if (auto* a = std::get_if<aggregate_expr>(&e.node))
    return leaf_of(*a->inner);
  return e;
}


double number_of(const json& j) {
  return j.is_number() ? j.get<double>() : nan_value;
}

/// Sorted tags of a Cairn reply's "tags" object.
label_set tags_of(const json& tags) {
  label_set out;
  if (tags.is_object())
    for (auto& [k, v] : tags.items())
      if (v.is_string())
        out.emplace_back(k, v.get<std::string>());
  std::sort(out.begin(), out.end());
  return out;
}

std::string_view label_value(const label_set& ls, std::string_view name) {
  for (auto& [k, v] : ls)
    if (k == name)
      return v;
  return {};
}

/// Values of one series at each evaluation time.
struct series_values {
  label_set labels;
  std::vector<std::optional<double>> values;
};

// -- the evaluation of one query ------------------------------------------------

struct evaluation : std::enable_shared_from_this<evaluation> {
  expr e;
  eval_times times;
  millis now = 0;
  engine_options opts;
  fetch_plan p;
  cairn_call call;
  std::function<void(query_outcome)> done;
  std::vector<std::string> warnings;
  /// The series the matchers select, by their tags.
  std::set<label_set> matched;
  std::vector<std::string> group_keys;
  /// Cairn points per matched series (windows / samples mode).
  std::map<label_set, std::vector<cairn_point>> points;
  /// per_window mode: values per series and time index.
  std::map<label_set, std::vector<std::optional<double>>> window_values;
  size_t next_window = 0;
  /// Speculation: the query sent with the series request, by these keys.
  std::vector<std::string> guessed_keys;

  // CBOR keeps a label value's bytes as they are: the key stays distinct
  // for values that are not valid UTF-8 (dump() would throw on them).
  std::string cache_key() const {
    auto where = json::to_cbor(p.where);
    return p.metric + '\0' + std::string(where.begin(), where.end());
  }

  void fail(problem pr) { done(std::move(pr)); }

  void note_partial(const json& reply) {
    if (!reply.value("partial", false))
      return;
    std::string w = "partial answer: partitions";
    if (auto it = reply.find("missing_partitions"); it != reply.end())
      w += " " + it->dump();
    w += " of the Cairn cluster did not answer or may lack acknowledged writes";
    if (std::find(warnings.begin(), warnings.end(), w) == warnings.end())
      warnings.push_back(std::move(w));
  }

  void start() {
    if (opts.source && start_direct())
      return;
    json req = {{"op", "series"}, {"metric", p.metric}, {"where", p.where},
                {"limit", opts.max_series}};
    auto self = shared_from_this();
    bool one_query = p.mode != fetch_mode::per_window || p.times.size() == 1;
    if (one_query && opts.key_cache && opts.key_cache->get(cache_key(), guessed_keys)) {
      // The query goes out with the keys seen last time, in one batch with
      // the series request; on_both() checks the guess.
      json batch = json::array({std::move(req),
                                query_request(p.from, p.to, p.step, guessed_keys)});
      call(std::move(batch), [self](json replies) { self->on_both(std::move(replies)); });
      return;
    }
    call(std::move(req), [self](json reply) { self->on_series(reply); });
  }

  /// The evaluation from the direct source (engine.hpp, direct_source):
  /// the same series and points the requests would give, read on this
  /// thread. False (nothing changed) if the source declines; the caller
  /// then sends the requests.
  bool start_direct() {
    auto& src = *opts.source;
    if (!src.series || !src.read || p.metric.empty())
      return false;
    label_set where;
    for (auto& [k, v] : p.where.items())
      if (v.is_string())
        where.emplace_back(k, v.get<std::string>());
    std::sort(where.begin(), where.end());
    std::vector<source_series> listed;
    if (!src.series(p.metric, where, opts.max_series, listed))
      return false;
    if (listed.size() > opts.max_series) {
      fail(problem{error_type::execution,
                   "more than " + std::to_string(opts.max_series)
                     + " series of metric \"" + p.metric
                     + "\" match the selector's equality matchers; "
                       "narrow the selector"});
      return true;
    }
    source_read r;
    r.metric = p.metric;
    r.aggs = p.aggs;
    std::vector<const label_set*> tags;
    for (auto& s : listed) {
      bool ok = std::all_of(p.filters.begin(), p.filters.end(),
                            [&](const label_matcher& m) {
                              return m.matches(label_value(s.tags, m.name));
                            });
      if (!ok)
        continue;
      r.keys.push_back(s.key);
      tags.push_back(&s.tags);
    }
    if (r.keys.empty())
      return finish(), true;
    auto reads = p.mode == fetch_mode::per_window ? p.times.size() : size_t{1};
    auto buckets = static_cast<size_t>(
      p.mode == fetch_mode::per_window
        ? p.window / p.resolution * static_cast<millis>(reads)
        : (p.to - p.from) / p.resolution);
    if (r.keys.size() > src.max_series
        || buckets > src.max_buckets / r.keys.size())
      return false;
    if (p.mode == fetch_mode::windows && split_last(src, r, tags))
      return true;
    std::vector<std::vector<cairn_point>> out;
    for (size_t w = 0; w < reads; ++w) {
      // The fields of the query the request path would send (query_request).
      if (p.mode == fetch_mode::per_window) {
        auto t = p.times[w];
        r.from = t - p.window;
        r.to = t;
        r.step = t - p.window;
      } else {
        r.from = p.from;
        r.to = p.to;
        r.step = p.step;
      }
      r.align.reset();
      if (r.step == p.step && p.align != 0)
        r.align = p.align;
      out.clear();
      problem err;
      switch (src.read(r, out, err)) {
        case source_status::busy:
          points.clear();
          window_values.clear();
          return false;
        case source_status::error:
          fail(std::move(err));
          return true;
        case source_status::done:
          break;
      }
      if (out.size() != r.keys.size()) {
        fail(problem{error_type::internal, "a direct read answered "
                                             + std::to_string(out.size())
                                             + " series for "
                                             + std::to_string(r.keys.size())});
        return true;
      }
      for (size_t i = 0; i < out.size(); ++i) {
        if (out[i].empty())
          continue;  // the query reply would not list the series
        if (p.mode == fetch_mode::per_window) {
          auto& vals = window_values[*tags[i]];
          vals.resize(p.times.size());
          vals[w] = window_value(out[i].front());
        } else {
          points[*tags[i]] = std::move(out[i]);
        }
      }
    }
    finish();
    return true;
  }

  /// Instant selectors and last_over_time (the only agg is `last`): a
  /// window's value is the `last` of its latest point, so when every
  /// evaluation time t has a point [t - g, t), nothing before the first
  /// one matters. Reads [t0 - g, to) first and the rest [from, t0 - g) only
  /// for the series that lack a point there (the union is the points of the
  /// whole query: the split is a point boundary). The bench's 5-minute
  /// selector then decodes 300 buckets instead of 600 (docs/prometheus-api.md,
  /// "Latency"). Only where both parts read the finest tier, as the whole
  /// range does: `last` is exact in every tier, but only the finest one
  /// loses buckets at its retention edge. False: not applicable or the
  /// source declined (nothing changed); true: done or failed.
  bool split_last(const direct_source& src, source_read& r,
                  const std::vector<const label_set*>& tags) {
    auto g = p.step;
    auto split = p.times.front() - g;
    if (p.aggs != std::vector<std::string>{"last"} || split <= p.from
        || opts.tiers.empty()
        || p.from < now - opts.tiers.front().retention + tier_margin)
      return false;
    auto read = [&](millis from, millis to, source_read& q,
                    std::vector<std::vector<cairn_point>>& out) {
      q.from = from;
      q.to = to;
      q.step = p.step;
      q.align.reset();
      if (p.align != 0)
        q.align = p.align;
      out.clear();
      problem err;
      auto st = src.read(q, out, err);
      if (st == source_status::error)
        fail(std::move(err));
      else if (st == source_status::done && out.size() != q.keys.size()) {
        fail(problem{error_type::internal, "a direct read answered "
                                             + std::to_string(out.size())
                                             + " series for "
                                             + std::to_string(q.keys.size())});
        st = source_status::error;
      }
      return st;
    };
    std::vector<std::vector<cairn_point>> recent;
    switch (read(split, p.to, r, recent)) {
      case source_status::busy: return false;
      case source_status::error: return true;
      case source_status::done: break;
    }
    // The series without a point right before some evaluation time.
    source_read older = r;
    older.keys.clear();
    std::vector<size_t> which;
    for (size_t i = 0; i < recent.size(); ++i) {
      auto& pts = recent[i];
      size_t k = 0;
      bool covered = true;
      for (auto t : p.times) {
        while (k < pts.size() && pts[k].t < t - g)
          ++k;
        if (k == pts.size() || pts[k].t != t - g) {
          covered = false;
          break;
        }
      }
      if (!covered) {
        older.keys.push_back(r.keys[i]);
        which.push_back(i);
      }
    }
    std::vector<std::vector<cairn_point>> before;
    if (!older.keys.empty())
      switch (read(p.from, split, older, before)) {
        case source_status::busy: return false;
        case source_status::error: return true;
        case source_status::done: break;
      }
    for (size_t j = 0; j < which.size(); ++j) {
      auto& pts = recent[which[j]];
      before[j].insert(before[j].end(), pts.begin(), pts.end());
      pts = std::move(before[j]);
    }
    for (size_t i = 0; i < recent.size(); ++i)
      if (!recent[i].empty())
        points[*tags[i]] = std::move(recent[i]);
    finish();
    return true;
  }

  void on_both(json replies) {
    if (!replies.is_array() || replies.size() != 2)
      return fail(problem{error_type::internal, "a batch of 2 requests got "
                                                  + std::to_string(replies.size())
                                                  + " replies"});
    if (!absorb_series(replies[0]))
      return;
    if (matched.empty())
      return finish();
    // Grouping by a superset of the keys still isolates every series.
    bool covered = std::includes(guessed_keys.begin(), guessed_keys.end(),
                                 group_keys.begin(), group_keys.end());
    if (!covered)
      return send_query(p.from, p.to, p.step);
    group_keys = guessed_keys;
    on_query(replies[1]);
  }

  void on_series(const json& reply) {
    if (!absorb_series(reply))
      return;
    if (matched.empty())
      return finish();
    if (p.mode == fetch_mode::per_window)
      return next_query();
    send_query(p.from, p.to, p.step);
  }

  /// Reads the series reply into `matched` and `group_keys`; false (and
  /// done called) on an error.
  bool absorb_series(const json& reply) {
    if (!reply.value("ok", false)) {
      fail(problem_of_reply(reply));
      return false;
    }
    note_partial(reply);
    if (reply.value("truncated", false)) {
      fail(problem{error_type::execution,
                   "more than " + std::to_string(opts.max_series)
                     + " series of metric \"" + p.metric
                     + "\" match the selector's equality matchers; "
                       "narrow the selector"});
      return false;
    }
    std::set<std::string> keys;
    if (auto it = reply.find("series"); it != reply.end() && it->is_array())
      for (auto& s : *it) {
        auto tags = tags_of(s.value("tags", json::object()));
        for (auto& kv : tags)
          keys.insert(kv.first);
        bool ok = std::all_of(p.filters.begin(), p.filters.end(),
                              [&](const label_matcher& m) {
                                return m.matches(label_value(tags, m.name));
                              });
        if (ok)
          matched.insert(std::move(tags));
      }
    group_keys.assign(keys.begin(), keys.end());
    if (opts.key_cache)
      opts.key_cache->put(cache_key(), group_keys);
    return true;
  }

  json query_request(millis from, millis to, millis step,
                     const std::vector<std::string>& keys) const {
    json q = {{"op", "query"}, {"metric", p.metric}, {"from", from},
              {"to", to},      {"step", step},       {"aggs", p.aggs},
              {"where", p.where}, {"group_by", keys}};
    if (step == p.step && p.align != 0)
      q["align"] = p.align;
    return q;
  }

  void send_query(millis from, millis to, millis step) {
    json req = query_request(from, to, step, group_keys);
    auto self = shared_from_this();
    call(std::move(req), [self](json reply) { self->on_query(reply); });
  }

  void next_query() {
    auto t = p.times[next_window];
    send_query(t - p.window, t, t - p.window);
  }

  void on_query(const json& reply) {
    if (!reply.value("ok", false))
      return fail(problem_of_reply(reply));
    note_partial(reply);
    auto it = reply.find("series");
    if (it != reply.end() && it->is_array())
      for (auto& s : *it) {
        auto tags = tags_of(s.value("tags", json::object()));
        if (!matched.count(tags))
          continue;  // a series the matchers exclude
        auto pts = s.find("points");
        if (pts == s.end() || !pts->is_array())
          continue;
        std::vector<cairn_point> out;
        out.reserve(pts->size());
        for (auto& pt : *pts) {
          cairn_point c;
          c.t = pt.value("t", millis{0});
          for (auto& [k, v] : pt.items()) {
            if (k == "count") c.count = number_of(v);
            else if (k == "sum") c.sum = number_of(v);
            else if (k == "min") c.min = number_of(v);
            else if (k == "max") c.max = number_of(v);
            else if (k == "last") c.last = number_of(v);
            else if (!k.empty() && k[0] == 'p') c.q = number_of(v);
          }
          out.push_back(c);
        }
        if (p.mode == fetch_mode::per_window) {
          auto& vals = window_values[tags];
          vals.resize(p.times.size());
          if (!out.empty())
            vals[next_window] = window_value(out.front());
        } else {
          points[std::move(tags)] = std::move(out);
        }
      }
    if (p.mode == fetch_mode::per_window && ++next_window < p.times.size())
      return next_query();
    finish();
  }

  /// The function's value over one window merged into one point.
  std::optional<double> window_value(const cairn_point& c) const {
    auto& leaf = leaf_of(e);
    if (std::holds_alternative<selector>(leaf.node))
      return c.last;
    auto& call_e = std::get<call_expr>(leaf.node);
    switch (call_e.fn) {
      case function::count_over_time: return c.count;
      case function::sum_over_time: return c.sum;
      case function::avg_over_time: return c.sum / c.count;
      case function::min_over_time: return c.min;
      case function::max_over_time: return c.max;
      case function::last_over_time: return c.last;
      case function::quantile_over_time:
        if (call_e.phi < 0) return -std::numeric_limits<double>::infinity();
        if (call_e.phi > 1) return std::numeric_limits<double>::infinity();
        if (std::isnan(call_e.phi)) return nan_value;
        return c.q;
      default: return std::nullopt;
    }
  }

  /// Whether the leaf keeps the metric name (Prometheus drops it for every
  /// function but last_over_time).
  bool keeps_name() const {
    auto& leaf = leaf_of(e);
    if (auto* c = std::get_if<call_expr>(&leaf.node))
      return c->fn == function::last_over_time;
    return true;
  }

  label_set output_labels(const label_set& tags) const {
    label_set ls = tags;
    if (keeps_name()) {
      ls.emplace_back("__name__", p.metric);
      std::sort(ls.begin(), ls.end());
    }
    return ls;
  }

  /// The leaf's values per series and evaluation time.
  std::vector<series_values> leaf_values() const {
    std::vector<series_values> out;
    auto n = p.times.size();
    if (p.mode == fetch_mode::per_window) {
      for (auto& [tags, vals] : window_values)
        out.push_back({output_labels(tags), vals});
      return out;
    }
    auto& leaf = leaf_of(e);
    auto* call_e = std::get_if<call_expr>(&leaf.node);
    for (auto& [tags, pts] : points) {
      series_values sv{output_labels(tags), std::vector<std::optional<double>>(n)};
      size_t lo = 0;
      size_t hi = 0;
      for (size_t i = 0; i < n; ++i) {
        auto t = p.times[i];
        while (lo < pts.size() && pts[lo].t < t - p.window)
          ++lo;
        hi = std::max(hi, lo);
        while (hi < pts.size() && pts[hi].t < t)
          ++hi;
        if (lo == hi)
          continue;
        if (p.mode == fetch_mode::samples) {
          std::vector<std::pair<millis, double>> samples;
          for (auto k = lo; k < hi; ++k)
            if (!std::isnan(pts[k].last))
              samples.emplace_back(pts[k].t, pts[k].last);
          sv.values[i] = extrapolated_rate(samples, t - p.window, t,
                                           call_e->fn == function::rate);
          continue;
        }
        cairn_point m;
        m.t = pts[lo].t;
        m.sum = 0;
        m.min = pts[lo].min;
        m.max = pts[lo].max;
        for (auto k = lo; k < hi; ++k) {
          auto& c = pts[k];
          m.count += c.count;
          m.sum += c.sum;
          if (c.min < m.min || std::isnan(m.min)) m.min = c.min;
          if (c.max > m.max || std::isnan(m.max)) m.max = c.max;
          m.last = c.last;  // points are in time order
          m.q = c.q;        // quantiles: one point per window
        }
        sv.values[i] = window_value(m);
      }
      out.push_back(std::move(sv));
    }
    return out;
  }

  static std::vector<series_values> aggregate(const aggregate_expr& a,
                                              std::vector<series_values> in,
                                              size_t n) {
    struct acc {
      double value = 0;
      double mean = 0;
      double count = 0;
    };
    std::map<label_set, std::vector<acc>> groups;
    for (auto& s : in) {
      label_set key;
      for (auto& kv : s.labels) {
        bool listed = std::find(a.labels.begin(), a.labels.end(), kv.first)
                      != a.labels.end();
        if (a.without ? (!listed && kv.first != "__name__") : listed)
          key.push_back(kv);
      }
      auto& g = groups[key];
      g.resize(n);
      for (size_t i = 0; i < n; ++i) {
        if (!s.values[i])
          continue;
        double v = *s.values[i];
        auto& x = g[i];
        x.count += 1;
        if (x.count == 1) {
          x.value = v;
          x.mean = v;
          continue;
        }
        switch (a.op) {
          case aggregation::sum: x.value += v; break;
          case aggregation::avg: x.mean += v / x.count - x.mean / x.count; break;
          case aggregation::min:
            if (x.value > v || std::isnan(x.value)) x.value = v;
            break;
          case aggregation::max:
            if (x.value < v || std::isnan(x.value)) x.value = v;
            break;
          case aggregation::count: break;
        }
      }
    }
    std::vector<series_values> out;
    for (auto& [key, accs] : groups) {
      series_values sv{key, std::vector<std::optional<double>>(n)};
      for (size_t i = 0; i < n; ++i) {
        if (accs[i].count == 0)
          continue;
        sv.values[i] = a.op == aggregation::count ? accs[i].count
                       : a.op == aggregation::avg ? accs[i].mean
                                                  : accs[i].value;
      }
      out.push_back(std::move(sv));
    }
    return out;
  }

  std::vector<series_values> eval(const expr& x) const {
    if (auto* a = std::get_if<aggregate_expr>(&x.node))
      return aggregate(*a, eval(*a->inner), p.times.size());
    return leaf_values();
  }

  void finish() {
    query_value v;
    v.warnings = std::move(warnings);
    bool range_query = times.step > 0;
    auto& leaf = leaf_of(e);
    auto* sel = std::get_if<selector>(&leaf.node);
    if (sel && sel->range > 0) {
      // A range selector in an instant query: the samples of the window.
      v.type = query_value::kind::matrix;
      auto t = p.times.front();
      for (auto& [tags, pts] : points) {
        result_series rs{output_labels(tags), {}};
        for (auto& c : pts)
          if (c.t >= t - p.window && c.t < t && !std::isnan(c.last))
            rs.points.emplace_back(c.t, c.last);
        if (!rs.points.empty())
          v.series.push_back(std::move(rs));
      }
    } else {
      v.type = range_query ? query_value::kind::matrix : query_value::kind::vector;
      v.time = p.shown_times.front();
      for (auto& s : eval(e)) {
        result_series rs{std::move(s.labels), {}};
        for (size_t i = 0; i < s.values.size(); ++i)
          if (s.values[i])
            rs.points.emplace_back(p.shown_times[i], *s.values[i]);
        if (!rs.points.empty())
          v.series.push_back(std::move(rs));
      }
    }
    std::sort(v.series.begin(), v.series.end(),
              [](auto& x, auto& y) { return x.labels < y.labels; });
    done(std::move(v));
  }
};

} // namespace

// -- helpers ------------------------------------------------------------------

bool group_key_cache::get(const std::string& key, std::vector<std::string>& out) const {
  std::lock_guard<std::mutex> guard{mu_};
  auto it = entries_.find(key);
  if (it == entries_.end())
    return false;
  out = it->second;
  return true;
}

void group_key_cache::put(const std::string& key, std::vector<std::string> keys) {
  std::lock_guard<std::mutex> guard{mu_};
  if (entries_.size() >= max_ && !entries_.count(key))
    entries_.clear();  // a crude bound: the cache is only a hint
  entries_[key] = std::move(keys);
}

std::string quantile_agg(double phi) {
  phi = std::clamp(phi, 0.0, 1.0);
  char buf[32];
  std::snprintf(buf, sizeof buf, "p%.10g", phi * 100);
  return buf;
}

problem problem_of_reply(const json& reply) {
  std::string code = "internal";
  std::string message = "Cairn request failed";
  if (auto it = reply.find("error"); it != reply.end() && it->is_object()) {
    code = it->value("code", code);
    message = it->value("message", message);
  }
  return problem_of(code, message);
}

problem problem_of(const std::string& code, const std::string& message) {
  error_type t = error_type::execution;
  if (code == "bad_request")
    t = error_type::bad_data;
  else if (code == "unavailable" || code == "rate_limited")
    t = error_type::unavailable;
  else if (code == "timeout")
    t = error_type::timeout;
  else if (code == "internal")
    t = error_type::internal;
  return problem{t, code + ": " + message};
}

std::optional<double>
extrapolated_rate(const std::vector<std::pair<millis, double>>& samples,
                  millis range_start, millis range_end, bool is_rate) {
  if (samples.size() < 2)
    return std::nullopt;
  double result = samples.back().second - samples.front().second;
  double prev = samples.front().second;
  for (size_t i = 1; i < samples.size(); ++i) {
    if (samples[i].second < prev)
      result += prev;  // a counter reset
    prev = samples[i].second;
  }
  double to_start = static_cast<double>(samples.front().first - range_start) / 1000;
  double to_end = static_cast<double>(range_end - samples.back().first) / 1000;
  double sampled = static_cast<double>(samples.back().first - samples.front().first) / 1000;
  double avg_between = sampled / static_cast<double>(samples.size() - 1);
  if (result > 0 && samples.front().second >= 0) {
    double to_zero = sampled * (samples.front().second / result);
    if (to_zero < to_start)
      to_start = to_zero;
  }
  double threshold = avg_between * 1.1;
  double interval = sampled;
  interval += to_start < threshold ? to_start : avg_between / 2;
  interval += to_end < threshold ? to_end : avg_between / 2;
  double factor = interval / sampled;
  if (is_rate)
    factor /= static_cast<double>(range_end - range_start) / 1000;
  return result * factor;
}

// -- planning -----------------------------------------------------------------

std::variant<fetch_plan, problem>
plan(const expr& e, const eval_times& times, millis now, const engine_options& opts) {
  auto bad = [](std::string m) { return problem{error_type::bad_data, std::move(m)}; };
  const selector* sel = selector_of(e);
  if (!sel)
    return problem{error_type::internal, "expression reads no selector"};
  bool range_query = times.step > 0;
  if (range_query && times.end < times.start)
    return bad("end timestamp must not be before start time");
  auto& leaf = leaf_of(e);
  auto* leaf_sel = std::get_if<selector>(&leaf.node);
  auto* leaf_call = std::get_if<call_expr>(&leaf.node);
  bool matrix = leaf_sel && leaf_sel->range > 0;
  if (matrix && range_query)
    return bad("invalid expression type \"range vector\" for range query, must be "
               "Scalar or instant Vector");
  if (opts.tiers.empty())
    return problem{error_type::unavailable, "no tiers configured"};

  fetch_plan p;
  p.metric = sel->metric;
  p.filters = sel->matchers;
  for (auto& m : sel->matchers)
    if (m.op == match_op::equal && !m.value.empty()) {
      // Two equality matchers on one label cannot both hold unless equal.
      if (p.where.contains(m.name) && p.where[m.name] != m.value)
        continue;  // the filter rejects every series
      p.where[m.name] = m.value;
    }
  millis d = leaf_sel && leaf_sel->range == 0 ? opts.lookback : sel->range;

  // The range tier: the finest whose retention covers the first window.
  size_t tier = opts.tiers.size() - 1;
  for (size_t i = 0; i < opts.tiers.size(); ++i)
    if (now - opts.tiers[i].retention + tier_margin <= times.start - d) {
      tier = i;
      break;
    }
  millis res = opts.tiers[tier].resolution;
  p.resolution = res;
  auto tier_name = format_ms(res) + ":" + format_ms(opts.tiers[tier].retention);
  if (leaf_sel && leaf_sel->range == 0)
    d = (d + res - 1) / res * res;  // the lookback, whole buckets
  else if (d % res != 0)
    return bad("range " + format_ms(d) + " is not a multiple of " + format_ms(res)
               + ", the resolution of the tier (" + tier_name
               + ") holding data that old");
  if (range_query && times.step % res != 0)
    return bad("step " + format_ms(times.step) + " is not a multiple of "
               + format_ms(res) + ", the resolution of the tier (" + tier_name
               + ") holding data that old");
  p.window = d;

  size_t n = range_query ? static_cast<size_t>((times.end - times.start) / times.step) + 1
                         : 1;
  if (n > max_steps)
    return bad("exceeded maximum resolution of 11,000 points per timeseries. Try "
               "decreasing the query resolution (?step=XX)");
  millis t0 = align_down(times.start, res);
  for (size_t i = 0; i < n; ++i) {
    auto k = static_cast<millis>(i) * times.step;
    p.times.push_back(t0 + k);
    p.shown_times.push_back(times.start + k);
  }
  millis t_last = p.times.back();

  auto too_many = [&](millis span, millis step) {
    return static_cast<size_t>(span / step) > opts.max_points;
  };
  if (matrix || (leaf_call && (leaf_call->fn == function::rate
                               || leaf_call->fn == function::increase))) {
    p.mode = fetch_mode::samples;
    p.from = t0 - d;
    p.to = t_last;
    p.step = res;
    p.aggs = {"last"};
    if (too_many(p.to - p.from, p.step))
      return bad("the range reads more than " + std::to_string(opts.max_points)
                 + " buckets of " + format_ms(res) + " per series; shorten it");
    return p;
  }
  if (leaf_sel || leaf_call->fn == function::last_over_time)
    p.aggs = {"last"};
  else
    switch (leaf_call->fn) {
      case function::count_over_time: p.aggs = {"count"}; break;
      case function::sum_over_time: p.aggs = {"sum"}; break;
      case function::avg_over_time: p.aggs = {"sum", "count"}; break;
      case function::min_over_time: p.aggs = {"min"}; break;
      case function::max_over_time: p.aggs = {"max"}; break;
      case function::quantile_over_time:
        p.aggs = {quantile_agg(std::isnan(leaf_call->phi) ? 0.5 : leaf_call->phi)};
        break;
      default: break;
    }
  bool quantile = leaf_call && leaf_call->fn == function::quantile_over_time;
  // Every window [t - d, t) must be a union of whole Cairn points: points
  // of g = gcd(d, step) whose boundaries pass through t0 (the query's
  // `align`), so a range from an unaligned start still reads one point per
  // step, not one per bucket.
  millis g = std::gcd(d, times.step);
  if (!range_query || (quantile && g != d)) {
    if (n > opts.max_window_queries)
      return bad("quantile_over_time with a range (" + format_ms(d)
                 + ") other than the step needs one Cairn query per step; at most "
                 + std::to_string(opts.max_window_queries)
                 + " steps (or make the range equal to the step)");
    p.mode = fetch_mode::per_window;
    p.from = p.times.front() - d;
    p.to = p.times.front();
    p.step = p.from;
    return p;
  }
  p.mode = fetch_mode::windows;
  p.from = t0 - d;
  p.to = t_last;
  p.step = g;
  p.align = ((t0 % g) + g) % g;
  if (too_many(p.to - p.from, p.step))
    return bad("the query reads more than " + std::to_string(opts.max_points)
               + " points of " + format_ms(g)
               + " per series: choose a step and range that are multiples of each other");
  return p;
}

// -- evaluation ---------------------------------------------------------------

void evaluate(const expr& e, const eval_times& times, millis now,
              const engine_options& opts, cairn_call call,
              std::function<void(query_outcome)> done) {
  if (auto* n = std::get_if<number_expr>(&e.node)) {
    query_value v;
    if (times.step > 0) {
      v.type = query_value::kind::matrix;
      result_series rs;
      for (auto t = times.start; t <= times.end; t += times.step)
        rs.points.emplace_back(t, n->value);
      v.series.push_back(std::move(rs));
    } else {
      v.type = query_value::kind::scalar;
      v.scalar = n->value;
      v.time = times.start;
    }
    return done(std::move(v));
  }
  auto planned = plan(e, times, now, opts);
  if (auto* pr = std::get_if<problem>(&planned))
    return done(std::move(*pr));
  auto ev = std::make_shared<evaluation>();
  ev->e = e;
  ev->times = times;
  ev->now = now;
  ev->opts = opts;
  ev->p = std::move(std::get<fetch_plan>(planned));
  ev->call = std::move(call);
  ev->done = std::move(done);
  ev->start();
}

} // namespace cairn::promql
