#include "runtime/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace cairn::runtime {

namespace {

// HELP text escaping of the exposition format: backslash and newline.
void append_escaped_help(std::string& out, std::string_view help) {
  for (char c : help) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

// Label values additionally escape the double quote.
void append_escaped_label(std::string& out, std::string_view value) {
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

std::string render_labels(const metric_labels& labels) {
  if (labels.empty())
    return {};
  std::string out = "{";
  for (auto& [k, v] : labels) {
    if (out.size() > 1)
      out += ',';
    out += k;
    out += "=\"";
    append_escaped_label(out, v);
    out += '"';
  }
  out += '}';
  return out;
}

// A float as the exposition format (and Go's strconv) reads it, in the
// shortest form that reads back the same: "10", "0.0005", "1796171105.62",
// "1e-06".
std::string format_double(double x) {
  char buf[64];
  auto magnitude = std::abs(x);
  auto format = x == 0 || (magnitude >= 1e-5 && magnitude < 1e15)
                  ? std::chars_format::fixed
                  : std::chars_format::general;
  auto r = std::to_chars(buf, buf + sizeof buf, x, format);
  return std::string(buf, r.ptr);
}

std::string format_value(int64_t value, int64_t per_unit) {
  if (per_unit == 1)
    return std::to_string(value);
  return format_double(static_cast<double>(value)
                       / static_cast<double>(per_unit));
}

// `{a="b"}` + `le="x"` -> `{a="b",le="x"}`.
std::string with_le(const std::string& labels, std::string_view le) {
  std::string out;
  if (labels.empty()) {
    out = "{le=\"";
  } else {
    out.assign(labels, 0, labels.size() - 1);
    out += ",le=\"";
  }
  out += le;
  out += "\"}";
  return out;
}

} // namespace

// -- latency_histogram --------------------------------------------------------

void latency_histogram::observe(std::chrono::nanoseconds d) noexcept {
  auto ns = std::max<int64_t>(0, d.count());
  double seconds = static_cast<double>(ns) * 1e-9;
  auto i = static_cast<size_t>(
    std::lower_bound(bounds.begin(), bounds.end(), seconds) - bounds.begin());
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(ns), std::memory_order_relaxed);
}

std::array<uint64_t, latency_histogram::bounds.size() + 1>
latency_histogram::counts() const noexcept {
  std::array<uint64_t, bounds.size() + 1> out{};
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = buckets_[i].load(std::memory_order_relaxed);
  return out;
}

uint64_t latency_histogram::count() const noexcept {
  uint64_t n = 0;
  for (auto& b : buckets_)
    n += b.load(std::memory_order_relaxed);
  return n;
}

double latency_histogram::sum_seconds() const noexcept {
  return static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) * 1e-9;
}

double latency_histogram::quantile(double q) const noexcept {
  auto c = counts();
  uint64_t total = 0;
  for (auto n : c)
    total += n;
  if (total == 0)
    return 0;
  double rank = std::clamp(q, 0.0, 1.0) * static_cast<double>(total);
  uint64_t below = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    if (static_cast<double>(below + c[i]) >= rank && c[i] > 0) {
      if (i == bounds.size()) // +Inf: the highest finite bound, as Prometheus
        return bounds.back();
      double lo = i == 0 ? 0.0 : bounds[i - 1];
      double hi = bounds[i];
      double within = (rank - static_cast<double>(below))
                      / static_cast<double>(c[i]);
      return lo + (hi - lo) * within;
    }
    below += c[i];
  }
  return bounds.back();
}

// -- metrics_registry ---------------------------------------------------------

std::string series_name(std::string_view name, const metric_labels& labels) {
  std::string out{name};
  out += render_labels(labels);
  return out;
}

std::atomic<int64_t>& metrics_registry::counter(std::string_view name,
                                                std::string_view help,
                                                const metric_labels& labels,
                                                int64_t per_unit) {
  return add(name, help, kind::counter, labels, per_unit).value;
}

std::atomic<int64_t>& metrics_registry::gauge(std::string_view name,
                                              std::string_view help,
                                              const metric_labels& labels,
                                              int64_t per_unit) {
  return add(name, help, kind::gauge, labels, per_unit).value;
}

latency_histogram& metrics_registry::histogram(std::string_view name,
                                               std::string_view help,
                                               const metric_labels& labels) {
  return *add(name, help, kind::histogram, labels, 1).histogram;
}

void metrics_registry::add_renderer(std::function<std::string()> render) {
  std::lock_guard<std::mutex> guard{mtx_};
  renderers_.push_back(std::move(render));
}

void metrics_registry::on_collect(std::function<void()> hook) {
  std::lock_guard<std::mutex> guard{mtx_};
  hooks_.push_back(std::move(hook));
}

metrics_registry::series&
metrics_registry::add(std::string_view name, std::string_view help, kind type,
                      const metric_labels& labels, int64_t per_unit) {
  std::lock_guard<std::mutex> guard{mtx_};
  family* f = nullptr;
  if (auto i = by_name_.find(std::string{name}); i != by_name_.end()) {
    f = i->second;
    if (f->type != type)
      throw std::logic_error("metric " + std::string{name}
                             + " registered with two types");
  } else {
    // std::deque never moves its elements on emplace_back: pointers and
    // references stay valid.
    f = &families_.emplace_back();
    f->name = name;
    f->help = help;
    f->type = type;
    f->per_unit = std::max<int64_t>(1, per_unit);
    by_name_.emplace(f->name, f);
  }
  auto rendered = render_labels(labels);
  if (auto i = f->by_labels.find(rendered); i != f->by_labels.end())
    return *i->second;
  auto& s = f->members.emplace_back();
  s.labels = std::move(rendered);
  if (type == kind::histogram)
    s.histogram = std::make_unique<latency_histogram>();
  f->by_labels.emplace(s.labels, &s);
  return s;
}

void metrics_registry::collect() const {
  std::vector<std::function<void()>> hooks;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    hooks = hooks_;
  }
  // Without the lock: a hook may register series.
  for (auto& hook : hooks)
    hook();
}

std::string metrics_registry::render_prometheus() const {
  collect();
  std::unique_lock<std::mutex> guard{mtx_};
  std::string out;
  out.reserve(families_.size() * 160);
  for (auto& f : families_) {
    out += "# HELP ";
    out += f.name;
    out += ' ';
    append_escaped_help(out, f.help);
    out += "\n# TYPE ";
    out += f.name;
    switch (f.type) {
      case kind::counter:
        out += " counter\n";
        break;
      case kind::gauge:
        out += " gauge\n";
        break;
      case kind::histogram:
        out += " histogram\n";
        break;
    }
    for (auto& s : f.members) {
      if (f.type != kind::histogram) {
        out += f.name;
        out += s.labels;
        out += ' ';
        out += format_value(s.value.load(std::memory_order_relaxed),
                            f.per_unit);
        out += '\n';
        continue;
      }
      auto counts = s.histogram->counts();
      uint64_t cumulative = 0;
      for (size_t i = 0; i < counts.size(); ++i) {
        cumulative += counts[i];
        out += f.name;
        out += "_bucket";
        out += with_le(s.labels, i < latency_histogram::bounds.size()
                                   ? format_double(latency_histogram::bounds[i])
                                   : std::string{"+Inf"});
        out += ' ';
        out += std::to_string(cumulative);
        out += '\n';
      }
      out += f.name;
      out += "_sum";
      out += s.labels;
      out += ' ';
      out += format_double(s.histogram->sum_seconds());
      out += '\n';
      out += f.name;
      out += "_count";
      out += s.labels;
      out += ' ';
      out += std::to_string(cumulative);
      out += '\n';
    }
  }
  auto renderers = renderers_;
  guard.unlock();
  for (auto& r : renderers)
    out += r();
  return out;
}

std::vector<std::pair<std::string, double>> metrics_registry::snapshot() const {
  collect();
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<std::pair<std::string, double>> out;
  for (auto& f : families_) {
    if (f.type == kind::histogram)
      continue;
    for (auto& s : f.members) {
      auto v = s.value.load(std::memory_order_relaxed);
      out.emplace_back(f.name + s.labels,
                       f.per_unit == 1 ? static_cast<double>(v)
                                       : static_cast<double>(v)
                                           / static_cast<double>(f.per_unit));
    }
  }
  return out;
}

std::vector<metrics_registry::histogram_view>
metrics_registry::histograms() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<histogram_view> out;
  for (auto& f : families_)
    if (f.type == kind::histogram)
      for (auto& s : f.members)
        out.push_back({f.name + s.labels, s.histogram.get()});
  return out;
}

} // namespace cairn::runtime
