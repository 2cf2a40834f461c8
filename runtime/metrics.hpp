// metrics_registry: the node's own counters and gauges, for /metrics, `stats`
// and the console.
//
// Counters and gauges are registered once at start-up (registration takes a
// lock) and then updated lock-free from any thread. Rendering produces the
// Prometheus text exposition format.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace cairn::runtime {

class metrics_registry {
public:
  struct entry {
    std::string name;  ///< e.g. "cairn_events_accepted_total"
    std::string help;
    bool counter = true;  ///< false = gauge
    std::atomic<int64_t> value{0};
  };

  /// Registers (or returns the existing) counter / gauge. The reference
  /// stays valid for the registry's lifetime.
  std::atomic<int64_t>& counter(const std::string& name,
                                const std::string& help);
  std::atomic<int64_t>& gauge(const std::string& name,
                              const std::string& help);

  /// Prometheus text format, entries in registration order, then what each
  /// renderer adds.
  std::string render_prometheus() const;

  /// Adds complete exposition lines rendered at each scrape (labelled
  /// families, e.g. per principal). Called under no lock of the registry;
  /// must be thread-safe. Register at start-up.
  void add_renderer(std::function<std::string()> render);

  /// name -> value snapshot.
  std::vector<std::pair<std::string, int64_t>> snapshot() const;

private:
  std::atomic<int64_t>& add(const std::string& name, const std::string& help,
                            bool counter);
  mutable std::mutex mtx_;
  std::deque<entry> entries_;
  std::vector<std::function<std::string()>> renderers_;
};

} // namespace cairn::runtime
