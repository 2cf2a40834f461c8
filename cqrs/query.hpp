// The query model: request specs, partial (mergeable) results, rendering.
//
// A query is answered by scatter/gather: every partition computes a partial
// result over its own series (series_store::query), partials are merged
// (exact: buckets and sketches merge exactly), and the merged partial is
// rendered to the reply JSON of docs/protocol.md, "query". Request parsing
// turns a client's JSON into a validated spec or a bad_request problem.
// Pure values; no threads, no actors.
#pragma once

#include "cqrs/bucket.hpp"
#include "cqrs/error.hpp"
#include "cqrs/series_key.hpp"
#include "cqrs/tier.hpp"
#include "cqrs/time.hpp"

#include <nlohmann/json_fwd.hpp>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace cairn::cqrs {

// -- aggregations -------------------------------------------------------------

enum class agg_kind : uint8_t { count, sum, min, max, avg, last, rate, quantile };

struct agg_spec {
  agg_kind kind = agg_kind::count;
  /// For quantile: in [0, 1], e.g. 0.99 for "p99", 0.999 for "p99.9".
  double quantile = 0;
  /// The name as the client wrote it; the key in reply points.
  std::string name;
};

/// Parses "count", "sum", "min", "max", "avg", "last", "rate", "pNN" or
/// "pNN.N..." (0 <= NN <= 100). Returns nullopt otherwise.
[[nodiscard]] std::optional<agg_spec> parse_agg(std::string_view text);

/// Final value of `a` over bucket `b`. `step` (ms) is used by rate (count per
/// second of step). Returns NaN where undefined (empty bucket).
double finalize(const agg_spec& a, const bucket& b, millis step,
                const ddsketch_mapping& m);

// -- request specs ------------------------------------------------------------

/// A piece of a query's range read from one tier: that tier's buckets whose
/// start lies in [from, to).
struct query_segment {
  size_t tier = 0;
  millis from = 0;
  millis to = 0;
  friend bool operator==(const query_segment&, const query_segment&) = default;
};

struct query_spec {
  std::string metric;
  millis from = 0;  ///< inclusive, bucket starts
  millis to = 0;    ///< exclusive
  millis step = 0;  ///< multiple of the tier resolution
  /// Step boundaries are align + k * step (0 <= align < step; 0: epoch
  /// aligned). A multiple of the range tier's resolution.
  millis align = 0;
  /// Index into the node's tier_set: the serving tier the reply names (the
  /// coarsest tier of `segments`' plan).
  size_t tier = 0;
  /// What to read, in time order (see plan_segments). Empty: the buckets of
  /// `tier` with start in [from, to).
  std::vector<query_segment> segments;
  std::vector<tag> where;            ///< exact matches, sorted by key
  std::vector<std::string> group_by; ///< in request order
  std::vector<agg_spec> aggs;
  /// Lets a store finalise the points of a group it holds whole (see
  /// query_group::final): the coordinator sets it for the replies it renders
  /// itself, never for partials sent to another node. Not parsed from the
  /// request; false by default.
  bool finals = false;
};

/// The query planner. `base` is the tier the range alone selects
/// (tier_set::select: the finest whose retention covers `from`); `step` is a
/// multiple of its resolution. Serving tier: the coarsest tier whose
/// resolution divides `step` and whose retention covers `from` (at least
/// `base`). Returns it and fills `out` (replaced) with segments, in time
/// order, that read exactly the events the buckets of `base` with start in
/// [from, to) hold: each tier reads the part of the range aligned to its
/// resolution, finer tiers the unaligned edges. Every tier sees every event,
/// so the answer equals that of `base` (sums up to rounding order).
size_t plan_segments(const tier_set& tiers, size_t base, millis from,
                     millis to, millis step, millis now,
                     std::vector<query_segment>& out);

struct topk_spec {
  std::string metric;
  std::string by;  ///< the tag whose values are ranked
  size_t k = 10;
  agg_spec agg;
  millis from = 0;
  millis to = 0;
  size_t tier = 0;
  std::vector<tag> where;
};

struct series_spec {
  std::string metric;  ///< empty = every metric
  std::vector<tag> where;
  size_t limit = 10000;
};

template <class T>
using parsed = std::variant<T, problem>;

/// Parses a "query" request. Defaults: from = now - 15m, to = now, step =
/// the serving tier's resolution, aggs = ["count"]. Errors (bad_request):
/// missing/invalid metric, unparsable times, from >= to, step not a positive
/// multiple of the serving tier's resolution, align not an integer multiple
/// of the range tier's resolution, unknown agg, where not an
/// object of strings, group_by not a list of strings, too many points
/// (> 100000 steps).
parsed<query_spec> parse_query(const nlohmann::json& req, millis now,
                               const tier_set& tiers);

/// The spec parse_query gives for a request with exactly these fields
/// (integer from/to/step, an integer align if set, aggs; no where, no
/// group_by), and the same errors, without a JSON object on the way (the
/// Prometheus API's inline reads).
parsed<query_spec> make_query(const std::string& metric, millis from, millis to,
                              millis step, std::optional<millis> align,
                              const std::vector<std::string>& aggs, millis now,
                              const tier_set& tiers);

/// Parses a "topk" request ("by" required; k default 10, 1..10000; agg
/// default "count").
parsed<topk_spec> parse_topk(const nlohmann::json& req, millis now,
                             const tier_set& tiers);

/// Parses a "series" request ("metric" optional, "where" optional).
parsed<series_spec> parse_series(const nlohmann::json& req);

// -- partial results ----------------------------------------------------------

/// The points of one group keyed by point time t, sorted: a flat map with
/// the std::map members the store and the codec use. Points arrive in time
/// order, so appends dominate; one allocation per group instead of one per
/// point, and iteration walks contiguous memory.
class point_map {
public:
  using value_type = std::pair<millis, bucket>;
  using container = std::vector<value_type>;
  using iterator = container::iterator;
  using const_iterator = container::const_iterator;

  iterator begin() noexcept { return points_.begin(); }
  iterator end() noexcept { return points_.end(); }
  const_iterator begin() const noexcept { return points_.begin(); }
  const_iterator end() const noexcept { return points_.end(); }
  size_t size() const noexcept { return points_.size(); }
  bool empty() const noexcept { return points_.empty(); }
  void reserve(size_t n) { points_.reserve(n); }

  iterator find(millis t);
  const_iterator find(millis t) const;

  /// The point at `t`, created empty if missing.
  bucket& operator[](millis t) { return try_emplace(end(), t)->second; }

  /// The point at `t`, created empty if missing; `hint` is where it would
  /// go (end() to append). A wrong hint costs a binary search, never a wrong
  /// answer. Invalidates other iterators.
  iterator try_emplace(const_iterator hint, millis t);

  /// Inserts (t, b) unless t is present; returns the point and whether it
  /// was inserted (b is moved from only then).
  std::pair<iterator, bool> try_emplace(millis t, bucket&& b);

  /// Folds every point of `other` in (exact bucket merges).
  void merge(point_map&& other);

  friend bool operator==(const point_map&, const point_map&) = default;

private:
  container points_;
};

/// A finalised point: its time, its bucket's count and (in query_group::
/// final_values) one value per agg.
struct final_point {
  millis t = 0;
  uint64_t count = 0;
  friend bool operator==(const final_point&, const final_point&) = default;
};

/// One group of a query: the group_by tag values (nullopt = the series has no
/// such tag) and its points keyed by point time t.
///
/// Final form (`final`): a store that knows no other partition can hold a
/// series of the group (the group is one series whose every tag is a
/// group_by or where key, so group values and where determine its key, and
/// a series lives in one partition) computes the aggs where the buckets
/// are, instead of copying every bucket and its sketch into the partial.
/// `points` is then empty and `finals` holds the non-empty points in time
/// order, `final_values` their agg values (q.aggs order, finals.size() *
/// aggs.size(); NaN where undefined), computed by finalize() on the same
/// merged bucket the renderer would see: the reply is identical.
struct query_group {
  std::vector<std::optional<std::string>> values;
  point_map points;
  bool final = false;
  std::vector<final_point> finals;
  std::vector<double> final_values;
};

struct query_partial {
  /// Keyed by an encoding of the group values (ordering is deterministic).
  std::map<std::string, query_group> groups;
  /// Set when a merge met a group in final form in both partials (or a
  /// store met a series it could not finalise after all): the merged
  /// answer is not exact, and the caller must ask again with
  /// query_spec::finals off (docs/protocol.md, "query").
  bool collided = false;
  /// Folds `other`'s groups in: groups of equal values merge point by point
  /// (exact bucket merges); final-form groups cannot, see `collided`.
  void merge(query_partial&& other);
};

/// Encodes group values into a map key for query_partial::groups.
std::string encode_group_key(const std::vector<std::optional<std::string>>& v);

struct topk_partial {
  /// Tag value -> aggregate over the range.
  std::map<std::string, bucket> values;
  void merge(topk_partial&& other);
};

struct series_partial {
  std::vector<std::string> keys;  ///< series keys
  void merge(series_partial&& other);
};

struct metrics_partial {
  /// Metric name -> number of series.
  std::map<std::string, uint64_t> metrics;
  void merge(metrics_partial&& other);
};

// -- rendering ----------------------------------------------------------------

/// Which partitions the answer may lack (empty = complete answer): those
/// that did not answer, and those for which some member holds acknowledged
/// writes their owner has not applied yet (`pending_hints`: partition ->
/// member names; docs/cluster.md, "The completeness invariant").
struct coverage {
  std::vector<uint32_t> missing_partitions;
  std::vector<std::pair<uint32_t, std::vector<std::string>>> pending_hints;
  /// Partitions whose earlier writes went with an evicted member, with the
  /// moment they were marked lost (wall-clock ms; docs/cluster.md,
  /// "Evicting a member that is gone"). Also listed as missing.
  std::vector<std::pair<uint32_t, millis>> lost_partitions;
  bool partial() const noexcept { return !missing_partitions.empty(); }
};

/// {"ok":true,"step":S,"tier":"1s","partial":false,"series":[...]}; groups
/// are sorted by their tag values; points by t; points with count 0 omitted.
/// Adds "missing_partitions" when partial. Agg values that are NaN render as
/// null.
void render_query(const query_spec& q, const query_partial& p,
                  const tier_set& tiers, const ddsketch_mapping& m,
                  const coverage& cov, nlohmann::json& out);

/// The same reply as render_query, written straight to text (the hot query
/// path: building an nlohmann::json tree costs several times the query
/// itself). `id`, unless null, is echoed as "id". Appends to `out`.
void render_query_text(const query_spec& q, const query_partial& p,
                       const tier_set& tiers, const ddsketch_mapping& m,
                       const coverage& cov, const nlohmann::json* id,
                       std::string& out);

/// {"ok":true,"partial":false,"top":[{"tag":"/home","value":1234}]}, sorted
/// by value descending (ties by tag ascending), at most k entries.
void render_topk(const topk_spec& q, const topk_partial& p,
                 const ddsketch_mapping& m, const coverage& cov,
                 nlohmann::json& out);

/// {"ok":true,"series":[{"metric":"m","tags":{...}}]} sorted by key, at most
/// limit entries, "truncated":true if more matched.
void render_series(const series_spec& q, const series_partial& p,
                   const coverage& cov, nlohmann::json& out);

/// {"ok":true,"metrics":[{"name":"m","series":3}]} sorted by name.
void render_metrics(const metrics_partial& p, const coverage& cov,
                    nlohmann::json& out);

} // namespace cairn::cqrs
