// engine: plans a PromQL expression onto Cairn `series` and `query` requests
// and evaluates it from their replies (docs/prometheus-api.md, "How PromQL
// maps onto Cairn").
//
// Every supported expression reads one selector. The engine asks Cairn for
// the selector's series (`series` op, equality matchers as `where`), applies
// every matcher to their tags, and reads the matching series with one
// `query` grouped by every tag key seen, so that each group is exactly one
// series. Windows [t-d, t) are assembled from Cairn points; rate/increase
// rebuild one sample per bucket (its `last`) at the range tier's resolution.
//
// The engine does not talk to a node itself: the caller gives it a
// `cairn_call` that sends one protocol request and delivers the reply. The
// engine calls it from the thread evaluate() runs on and from the threads
// replies arrive on; calls for one evaluation are sequential (the next
// request is sent from the previous reply's callback). `done` is called
// exactly once. No CAF, no sockets.
#pragma once

#include "promql/ast.hpp"

#include <nlohmann/json.hpp>

#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace cairn::promql {

/// The tag keys last seen behind a selector's equality matchers, per metric:
/// the guess that lets a query go out together with its `series` request
/// (docs/prometheus-api.md, "Latency"). Only a hint: the answer is used
/// only if the series request confirms that the guess covers every key.
/// Thread-safe.
class group_key_cache {
public:
  explicit group_key_cache(size_t max_entries = 10000) : max_(max_entries) {
  }
  bool get(const std::string& key, std::vector<std::string>& out) const;
  void put(const std::string& key, std::vector<std::string> keys);

private:
  mutable std::mutex mu_;
  std::map<std::string, std::vector<std::string>> entries_;
  size_t max_;
};

/// Labels sorted by name, __name__ included where Prometheus keeps it.
using label_set = std::vector<std::pair<std::string, std::string>>;

/// One Cairn point of a series: its time and the aggs asked for (NaN where
/// an agg was not asked for or is undefined; count 0 when not asked).
struct cairn_point {
  millis t = 0;
  double count = 0;
  double sum = std::numeric_limits<double>::quiet_NaN();
  double min = std::numeric_limits<double>::quiet_NaN();
  double max = std::numeric_limits<double>::quiet_NaN();
  double last = std::numeric_limits<double>::quiet_NaN();
  double q = std::numeric_limits<double>::quiet_NaN();  ///< the pNN agg
};

/// A series a direct_source lists: its Cairn series key and its tags.
struct source_series {
  std::string key;
  label_set tags;  ///< sorted by name
};

/// The fields of the Cairn `query` a direct_source read replaces.
struct source_read {
  std::string metric;
  std::vector<std::string> keys;  ///< exact series (source_series::key)
  millis from = 0;
  millis to = 0;
  millis step = 0;
  std::optional<millis> align;
  std::vector<std::string> aggs;
};

enum class source_status : uint8_t { done, busy, error };

/// The node read on the calling thread, without protocol requests
/// (docs/prometheus-api.md, "Latency"): what the `series` and `query`
/// requests of an evaluation would answer, as typed values. Each function
/// may decline (false / busy), and the evaluation then sends the requests
/// through its cairn_call as before; so the answer never depends on which
/// path served it. Both are called from the thread evaluate() runs on and
/// must not block.
struct direct_source {
  /// The series of `metric` carrying every tag of `where` (sorted), in key
  /// order, at most `limit` + 1 (more: the series request would be
  /// truncated). False: cannot answer alone.
  std::function<bool(const std::string& metric, const label_set& where, size_t limit,
                     std::vector<source_series>& out)>
    series;
  /// The points of each key of the read (out[i] for keys[i], in time order,
  /// points without events left out). busy: cannot answer now; error: the
  /// Cairn error of the query op (`error` set).
  std::function<source_status(const source_read& r,
                              std::vector<std::vector<cairn_point>>& out,
                              problem& error)>
    read;
  /// Larger evaluations (more series, or more series x buckets of the range
  /// tier) use the requests: they run on the partitions in parallel instead
  /// of holding up the caller's thread.
  size_t max_series = 16;
  size_t max_buckets = 20000;
};

/// A Cairn tier (`resolution:retention`), finest first in engine_options.
struct tier_info {
  millis resolution = 1000;
  millis retention = 15 * 60000;
};

struct engine_options {
  /// The node's tiers, finest first (cairn.tiers).
  std::vector<tier_info> tiers{{1000, 15 * 60000}, {60000, 2 * 86400000LL},
                               {3600000, 90 * 86400000LL}};
  /// Prometheus's lookback delta for instant selectors.
  millis lookback = 5 * 60000;
  /// More series matching one selector's equality matchers: execution error.
  size_t max_series = 10000;
  /// Most Cairn queries one evaluation may send (quantile_over_time whose
  /// range differs from the step needs one per evaluation time).
  size_t max_window_queries = 1100;
  /// Most points one Cairn query may return per series (its own limit).
  size_t max_points = 100000;
  /// Shared by every evaluation of a node; nullptr: always ask for the
  /// series first, then query.
  std::shared_ptr<group_key_cache> key_cache;
  /// The node read without requests where it can (nullptr: requests only).
  std::shared_ptr<const direct_source> source;
};

/// Evaluation times: an instant query has start == end and step 0.
struct eval_times {
  millis start = 0;
  millis end = 0;
  millis step = 0;
};

struct result_series {
  label_set labels;
  std::vector<std::pair<millis, double>> points;  ///< by time
};

/// A query's value as the API renders it.
struct query_value {
  enum class kind : uint8_t { scalar, vector, matrix };
  kind type = kind::vector;
  double scalar = 0;
  millis time = 0;  ///< instant queries: the evaluation time
  std::vector<result_series> series;  ///< sorted by labels
  std::vector<std::string> warnings;
};

using query_outcome = std::variant<query_value, problem>;

/// Sends one protocol request (a JSON object with "op") and calls `done`
/// once with its reply object (from any thread). `request` may also be an
/// array of requests, sent together as consecutive lines of one
/// connection; the reply is then the array of their replies, in order.
using cairn_reply = std::function<void(nlohmann::json reply)>;
using cairn_call = std::function<void(nlohmann::json request, cairn_reply done)>;

// -- the plan -----------------------------------------------------------------

enum class fetch_mode : uint8_t {
  /// One Cairn query with `step`; each window [t-d, t) merges its points.
  windows,
  /// One Cairn query per evaluation time, each window one point.
  per_window,
  /// One Cairn query at the range tier's resolution with `last`: one sample
  /// per bucket, stamped with the bucket's start (rate, increase, matrix).
  samples,
};

/// What evaluate() will ask Cairn for. Pure data, for tests and logs.
struct fetch_plan {
  std::string metric;
  nlohmann::json where = nlohmann::json::object();  ///< equality matchers
  std::vector<label_matcher> filters;               ///< all matchers
  fetch_mode mode = fetch_mode::windows;
  millis window = 0;   ///< d: the range, or the lookback of an instant selector
  millis resolution = 1000;  ///< of the range tier
  millis from = 0;     ///< the Cairn query (per_window: the first window's)
  millis to = 0;
  millis step = 0;
  /// The Cairn query's step boundaries pass through this instant (its
  /// `align`, 0 <= align < step): windows that end at unaligned times still
  /// get one point per step (docs/prometheus-api.md, "Latency").
  millis align = 0;
  std::vector<std::string> aggs;
  /// Evaluation times after rounding down to `resolution`; the reply shows
  /// the requested times.
  std::vector<millis> times;
  std::vector<millis> shown_times;
};

/// Plans `e` at `times` (validated: step > 0 for ranges, at most 11000
/// points). bad_data if the range or step is not a multiple of the
/// resolution of the tier that holds data that old, or the plan would read
/// too much. Numbers need no plan (nullopt with no problem: check e).
[[nodiscard]] std::variant<fetch_plan, problem>
plan(const expr& e, const eval_times& times, millis now, const engine_options& opts);

/// Evaluates `e` (see the header comment). `now` picks the tiers.
void evaluate(const expr& e, const eval_times& times, millis now,
              const engine_options& opts, cairn_call call,
              std::function<void(query_outcome)> done);

/// Prometheus's rate/increase of samples (t ms, v) in the window
/// [range_start, range_end] (extrapolatedRate of Prometheus 2.42): nullopt
/// with fewer than two samples.
[[nodiscard]] std::optional<double>
extrapolated_rate(const std::vector<std::pair<millis, double>>& samples,
                  millis range_start, millis range_end, bool is_rate);

/// The Cairn agg name for quantile phi in [0, 1] ("p99", "p99.9").
std::string quantile_agg(double phi);

/// Maps the error of a Cairn reply ({"ok":false,"error":{code,message}}) to
/// a Prometheus problem.
problem problem_of_reply(const nlohmann::json& reply);

/// The same for a Cairn error code ("bad_request", ...) and message.
problem problem_of(const std::string& code, const std::string& message);

} // namespace cairn::promql
