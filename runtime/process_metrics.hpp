// Process metrics under the names every Prometheus client library uses
// (process_cpu_seconds_total, process_resident_memory_bytes, ...), read
// from /proc when /metrics is rendered, plus `cairn_build_info`
// (docs/operations.md, "Metrics").
#pragma once

#include "runtime/metrics.hpp"

#include <string_view>

namespace cairn::runtime {

/// Registers the process_* series and their collect hook, and
/// cairn_build_info{version, caf, compiler} 1.
void register_process_metrics(metrics_registry& m, std::string_view version);

/// What /proc says about this process; zeros where it is unavailable.
struct process_figures {
  double cpu_seconds = 0;       ///< user + system
  int64_t resident_bytes = 0;
  int64_t virtual_bytes = 0;
  int64_t open_fds = 0;
  int64_t max_fds = 0;
  double start_time_seconds = 0; ///< since the Unix epoch
  int64_t threads = 0;
};

process_figures read_process_figures();

} // namespace cairn::runtime
