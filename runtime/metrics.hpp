// metrics_registry: the node's own counters, gauges and latency histograms,
// for /metrics, `stats` and the console (docs/operations.md, "Metrics").
//
// A metric is a family (one name, help text and type) of series told apart
// by labels: `cairn_events_total{result="accepted"}`. Series are registered
// once (registration takes a lock) and then updated lock-free from any
// thread through the reference registration returned; the reference stays
// valid for the registry's lifetime. Rendering produces the Prometheus text
// exposition format, families in registration order with every series of a
// family together, which `promtool check metrics` requires.
//
// Figures that are cheaper to read when asked than to keep current (the
// process's CPU time, open files) come from collect hooks: functions run
// before every render and snapshot, which set gauges.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace cairn::runtime {

/// Label names and values of one series, in the order they are shown.
using metric_labels = std::vector<std::pair<std::string, std::string>>;

/// A Prometheus histogram of durations, in seconds, with fixed buckets from
/// 50 µs to 10 s. `observe` is lock-free and wait-free.
class latency_histogram {
public:
  static constexpr std::array<double, 17> bounds{
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,    0.1,    0.25,    0.5,    1.0,   2.5,    5.0,   10.0};

  void observe(std::chrono::nanoseconds d) noexcept;

  /// Observations per bucket (not cumulative; the last one is +Inf).
  std::array<uint64_t, bounds.size() + 1> counts() const noexcept;
  uint64_t count() const noexcept;
  double sum_seconds() const noexcept;

  /// The q-quantile (0..1) estimated like Prometheus' histogram_quantile:
  /// linear within the bucket holding it; 0 without observations.
  double quantile(double q) const noexcept;

private:
  std::array<std::atomic<uint64_t>, bounds.size() + 1> buckets_{};
  std::atomic<uint64_t> sum_ns_{0};
};

class metrics_registry {
public:
  enum class kind { counter, gauge, histogram };

  /// Registers (or returns the existing) series of a counter / gauge. A
  /// value counts 1/`per_unit` of the unit the name states: a gauge in
  /// seconds kept in milliseconds has `per_unit` 1000 and renders 1.5 for
  /// 1500. Registering a name again with another kind is a programming
  /// error (std::logic_error).
  std::atomic<int64_t>& counter(std::string_view name, std::string_view help,
                                const metric_labels& labels = {},
                                int64_t per_unit = 1);
  std::atomic<int64_t>& gauge(std::string_view name, std::string_view help,
                              const metric_labels& labels = {},
                              int64_t per_unit = 1);
  latency_histogram& histogram(std::string_view name, std::string_view help,
                               const metric_labels& labels = {});

  /// Runs `hook` before every render and snapshot (it may register series).
  void on_collect(std::function<void()> hook);

  /// Adds complete exposition text rendered at each scrape after the
  /// registry's own families: for families whose series come and go (per
  /// principal, docs/protocol.md "Rate limits"), which the registry would
  /// keep forever. The text must be whole families with escaped labels.
  void add_renderer(std::function<std::string()> render);

  /// Prometheus text format.
  std::string render_prometheus() const;

  /// Counters and gauges as (series, value in the stated unit) pairs, a
  /// series being `name` or `name{label="value",...}`, in render order;
  /// histograms are left out (see `histograms`).
  std::vector<std::pair<std::string, double>> snapshot() const;

  struct histogram_view {
    std::string series;
    const latency_histogram* histogram;
  };
  /// Every histogram series, in render order.
  std::vector<histogram_view> histograms() const;

private:
  struct series {
    std::string labels; ///< rendered: `{a="b"}`, or empty
    std::atomic<int64_t> value{0};
    std::unique_ptr<latency_histogram> histogram;
  };
  struct family {
    std::string name;
    std::string help;
    kind type;
    int64_t per_unit = 1;
    std::deque<series> members;
    std::unordered_map<std::string, series*> by_labels;
  };

  series& add(std::string_view name, std::string_view help, kind type,
              const metric_labels& labels, int64_t per_unit);
  void collect() const;

  mutable std::mutex mtx_;
  std::deque<family> families_;
  std::unordered_map<std::string, family*> by_name_;
  std::vector<std::function<void()>> hooks_;
  std::vector<std::function<std::string()>> renderers_;
};

/// `name{labels}` as the exposition format writes it, label values escaped
/// (backslash, double quote, newline); `name` alone without labels.
std::string series_name(std::string_view name, const metric_labels& labels);

} // namespace cairn::runtime
