// inline_reads: the node side of the Prometheus API's inline reads
// (docs/prometheus-api.md, "Latency"): a selector's series from the node's
// series index and their points straight from the partitions' stores, on the
// calling thread (the HTTP I/O thread), with no message to an actor.
//
// Both calls answer only when they can answer exactly what the `series` and
// `query` requests of the direct path (actors/query_coordinator.hpp,
// direct_read) would: a single node (no cluster) that is ready, every
// partition attached to the series index, and every partition read free
// at the moment (store_access::try_read). Otherwise they say so and the
// caller sends the requests instead; nothing waits. Each call counts as one
// request in cairn_requests_total, as the requests it replaces do, a read
// is observed in cairn_query_latency_seconds{op="prometheus"}, and
// cairn_prometheus_inline_reads_total{result="done"|"busy"} counts the
// reads served and those a busy partition declined.
//
// Threading: any thread, concurrently. No CAF.
#pragma once

#include "actors/node_settings.hpp"
#include "cqrs/query.hpp"
#include "cqrs/series_key.hpp"

#include <optional>
#include <string>
#include <vector>

namespace cairn::actors {

/// One series a selector lists: its key and its tags (sorted by key).
struct inline_series {
  std::string key;
  std::vector<cqrs::tag> tags;
};

/// What read() reads: the fields of the `query` request it replaces.
struct inline_read {
  std::string metric;
  std::vector<std::string> keys;  ///< exact series keys
  cqrs::millis from = 0;
  cqrs::millis to = 0;
  cqrs::millis step = 0;
  std::optional<cqrs::millis> align;
  std::vector<std::string> aggs;
};

/// The points of one series in final form (cqrs::query_group::final).
struct inline_points {
  std::vector<cqrs::final_point> finals;
  std::vector<double> values;  ///< finals.size() * aggs.size()
};

enum class inline_status : uint8_t {
  /// Answered.
  done,
  /// Cannot answer now (see the file comment): send the requests instead.
  busy,
  /// The request is invalid, as the `query` op would answer it.
  error,
};

class inline_reads {
public:
  explicit inline_reads(settings_ptr settings);

  /// The series of `metric` carrying every tag of `where` (sorted by key)
  /// in key order, at most `limit` + 1 (more than `limit`: the `series`
  /// request would say truncated). False when the index cannot answer alone.
  [[nodiscard]] bool series(const std::string& metric,
                            const std::vector<cqrs::tag>& where, size_t limit,
                            std::vector<inline_series>& out) const;

  /// The points of every key of `r`, by key (a key the store no longer
  /// holds: no points). `error` gets the Cairn error of an invalid request.
  [[nodiscard]] inline_status read(const inline_read& r,
                                   std::vector<inline_points>& out,
                                   cqrs::problem& error) const;

private:
  /// Whether the node can answer reads alone right now.
  bool ready() const;

  settings_ptr settings_;
  std::atomic<int64_t>* requests_ = nullptr;
  runtime::latency_histogram* latency_ = nullptr;
  /// cairn_prometheus_inline_reads_total{result="done"|"busy"}.
  std::atomic<int64_t>* done_ = nullptr;
  std::atomic<int64_t>* busy_ = nullptr;
};

} // namespace cairn::actors
