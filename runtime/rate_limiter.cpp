#include "runtime/rate_limiter.hpp"

#include <algorithm>
#include <cmath>

namespace cairn::runtime {

namespace {

/// Prometheus label value escaping (backslash, quote, newline).
std::string label_value(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

} // namespace

rate_limiter::rate_limiter(rate_options opts) : opts_(opts) {
  enabled_ = opts_.events_per_sec > 0 || opts_.requests_per_sec > 0;
  for (int i = 0; i < 3; ++i)
    enabled_ = enabled_ || opts_.scope_events_per_sec[i] > 0
               || opts_.scope_requests_per_sec[i] > 0;
  if (opts_.burst.count() <= 0)
    opts_.burst = std::chrono::milliseconds{1000};
}

double rate_limiter::rate_of(const auth::principal& who,
                             rate_kind kind) const noexcept {
  const double* per_scope = kind == rate_kind::events
                              ? opts_.scope_events_per_sec
                              : opts_.scope_requests_per_sec;
  double best = 0;
  bool any = false;
  for (int i = 0; i < 3; ++i) {
    if ((who.scopes & (1 << i)) == 0 || per_scope[i] <= 0)
      continue;
    any = true;
    best = std::max(best, per_scope[i]);
  }
  if (any)
    return best;
  return kind == rate_kind::events ? opts_.events_per_sec
                                   : opts_.requests_per_sec;
}

void rate_limiter::forget_idle(clock::time_point now) {
  // An entry idle for longer than its burst has full buckets: forgetting it
  // changes no decision (only its counters go).
  auto idle = std::max<clock::duration>(opts_.burst, std::chrono::seconds{60});
  for (auto i = entries_.begin(); i != entries_.end();) {
    if (now - i->second.last >= idle)
      i = entries_.erase(i);
    else
      ++i;
  }
}

rate_decision rate_limiter::take(const auth::principal& who, rate_kind kind,
                                 uint64_t n, clock::time_point now,
                                 bool may_wait) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto it = entries_.find(who.key());
  if (it == entries_.end()) {
    if (entries_.size() >= opts_.max_principals)
      forget_idle(now);
    it = entries_.emplace(who.key(), entry{}).first;
    it->second.counts.key = who.key();
  }
  auto& e = it->second;
  e.last = now;
  auto& counts = e.counts;
  auto count = [&](bool admitted) {
    if (kind == rate_kind::events)
      (admitted ? counts.events : counts.events_limited) += n;
    else
      (admitted ? counts.requests : counts.requests_limited) += n;
  };
  double rate = rate_of(who, kind);
  if (rate <= 0) {
    count(true);
    return {};
  }
  auto& b = kind == rate_kind::events ? e.events : e.requests;
  double capacity = std::max(1.0, rate * static_cast<double>(opts_.burst.count()) / 1000.0);
  if (b.fresh) {
    b.fresh = false;
    b.tokens = capacity;
  } else {
    double dt = std::chrono::duration<double>(now - b.at).count();
    if (dt > 0)
      b.tokens = std::min(capacity, b.tokens + dt * rate);
  }
  b.at = std::max(b.at, now);
  double need = std::min(static_cast<double>(n), capacity);
  // (The epsilon absorbs the rounding of the refill arithmetic.)
  if (b.tokens + 1e-6 >= need) {
    b.tokens -= static_cast<double>(n);
    count(true);
    return {};
  }
  auto wait = std::chrono::milliseconds{
    static_cast<int64_t>(std::ceil((need - b.tokens) / rate * 1000.0))};
  if (may_wait && wait <= opts_.max_delay) {
    b.tokens -= static_cast<double>(n);
    count(true);
    ++counts.delayed;
    return {true, wait, {}};
  }
  count(false);
  return {false, {}, std::max(wait, std::chrono::milliseconds{1})};
}

std::vector<rate_counters> rate_limiter::counters() const {
  std::vector<rate_counters> out;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    out.reserve(entries_.size());
    for (auto& [key, e] : entries_)
      out.push_back(e.counts);
  }
  std::sort(out.begin(), out.end(),
            [](auto& x, auto& y) { return x.key < y.key; });
  return out;
}

std::string rate_limiter::render_prometheus() const {
  auto all = counters();
  if (all.empty())
    return {};
  std::string out;
  auto family = [&](const char* name, const char* help, auto field) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += " counter\n";
    for (auto& c : all) {
      out += name;
      out += "{principal=\"";
      out += label_value(c.key);
      out += "\"} ";
      out += std::to_string(c.*field);
      out += '\n';
    }
  };
  family("cairn_rate_events_total", "Events admitted per principal",
         &rate_counters::events);
  family("cairn_rate_events_limited_total",
         "Events refused with rate_limited per principal",
         &rate_counters::events_limited);
  family("cairn_rate_requests_total", "Requests admitted per principal",
         &rate_counters::requests);
  family("cairn_rate_requests_limited_total",
         "Requests refused with rate_limited per principal",
         &rate_counters::requests_limited);
  family("cairn_rate_delayed_total",
         "Chunks an NDJSON connection had to wait for (not read meanwhile)",
         &rate_counters::delayed);
  return out;
}

} // namespace cairn::runtime
