// evaluator: every rule of a node and its instances, fed with closed
// buckets, evaluated at window ends (docs/alerting.md, "Evaluation").
//
// The caller (actors/alerts/alert_manager) hands it the finest tier's
// closed buckets of the partitions it subscribed to (`add`) and calls
// `evaluate(now)`; each group of each rule keeps the buckets of its window
// (one entry per bucket start, one part per series so a correction replaces
// its earlier value), merged exactly at evaluation like the query path
// merges partials. An instance is evaluated when its data changed or once
// per resolution step (no data, `for` and keep_firing_for expiring). The
// result lists the state changes and the notifications due, each with the
// instance to journal. Pure values; no threads, no actors.
#pragma once

#include "alerts/instance.hpp"
#include "alerts/rule.hpp"
#include "alerts/window_sketch.hpp"
#include "cqrs/bucket.hpp"
#include "cqrs/ddsketch.hpp"
#include "cqrs/series_store.hpp"

#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace cairn::alerts {

/// One instance's identity and state, as journaled.
struct instance_record {
  std::string rule;
  std::string group;  ///< group_key(labels)
  std::vector<cqrs::tag> labels;
  instance state;
  /// The instance was dropped (idle group): delete its journal entry.
  bool erased = false;
  /// Replication stamp of this state (alerts/replica; set by the alert
  /// manager, 0 from the evaluator).
  uint64_t clock = 0;
  std::string origin = {};
  /// The instance's last notification while some receiver has not had it
  /// yet: JSON text {"by": member that queued it, "notice": to_json(notice)}
  /// ("" once every receiver had it). Set by the alert manager: a member
  /// taking over the rule from a dead one re-sends it (same key).
  std::string unsent = {};
};

struct state_change {
  instance_record at;  ///< the instance after the change
  alert_state from = alert_state::inactive;
  alert_state to = alert_state::inactive;
  millis time = 0;
};

/// A notification to send: one alert of one instance.
struct notice {
  std::string rule;
  std::string group;
  std::string status;  ///< "firing" or "resolved"
  /// Stable per notification (rule, group, episode start, status, repeat):
  /// a retry or a re-send after a restart carries the same key.
  std::string key;
  std::map<std::string, std::string> labels;       ///< alertname, severity, group, rule labels
  std::map<std::string, std::string> annotations;  ///< rendered
  double value = 0;
  millis starts_at = 0;
  millis ends_at = 0;  ///< 0 while firing
  std::vector<receiver> receivers;
  uint32_t repeat = 0;
};

struct evaluation {
  std::vector<state_change> changes;
  std::vector<notice> notices;
  /// Instances whose journaled fields changed (changes and notices).
  std::vector<instance_record> journal;
  uint64_t evaluated = 0;
};

/// The idempotency key of a notification (hex of XXH3-64).
std::string notice_key(const std::string& rule, const std::string& group,
                       millis episode_start, std::string_view status,
                       uint32_t repeat);

class evaluator {
public:
  /// `started_at`: when this evaluator began to receive buckets. A window
  /// reaching back before it is incomplete, so until a rule's window lies
  /// after it, "no data" changes nothing (a restarted node would otherwise
  /// resolve a firing alert, or reset a pending one, before its first
  /// buckets arrive).
  evaluator(millis resolution, cqrs::ddsketch_mapping mapping,
            millis started_at = 0)
    : resolution_(resolution), mapping_(mapping), started_at_(started_at) {}

  // -- rules ------------------------------------------------------------------

  /// Adds or replaces a rule. A replaced rule keeps its instances (their
  /// states carry over) but starts new windows if metric/where/group_by
  /// changed.
  void upsert(rule r);

  /// Removes a rule and its instances. False if unknown.
  bool remove(const std::string& name);

  /// Restores a journaled instance (rule must be present; else ignored).
  /// Also how a member takes over the state its rule's owner replicated.
  void restore(const instance_record& rec);

  /// The instance (`rule`, `group`) as a record (without stamp), if any.
  std::optional<instance_record> record_of(const std::string& rule,
                                           const std::string& group) const;

  /// Drops the instance (`rule`, `group`) with its window (an erased
  /// instance replicated from the owner). False if unknown.
  bool erase_instance(const std::string& rule, const std::string& group);

  /// True if some rule watches `metric` (its buckets are worth keeping).
  bool watches(std::string_view metric) const {
    return by_metric_.count(std::string{metric}) > 0;
  }

  size_t rule_count() const noexcept { return rules_.size(); }
  size_t instance_count() const noexcept;

  /// Calls f(rule, group_labels, instance) for every instance.
  template <class F>
  void for_each(F&& f) const {
    for (auto& [name, rs] : rules_)
      for (auto& [key, g] : rs.groups)
        f(rs.r, g.labels, g.inst);
  }

  // -- data -------------------------------------------------------------------

  /// Feeds closed buckets; only those of tier `tier` (the finest) count.
  /// Buckets of metrics no rule watches cost one hash lookup.
  void add(const std::vector<cqrs::closed_bucket>& buckets, uint32_t tier = 0);

  /// Evaluates every instance whose data changed since its last evaluation
  /// or whose last evaluation is for an earlier window end than
  /// align_down(now, resolution). With `owns`, only the rules for which it
  /// returns true step their instances; the others (evaluated by another
  /// member of a cluster) only drop the buckets that left their window, so
  /// a takeover starts with a full window (docs/alerting.md, "Cluster").
  evaluation evaluate(millis now,
                      const std::function<bool(const rule&)>& owns = {});

  /// Off: quantile rules merge their whole window at each evaluation
  /// instead of keeping it incrementally (the reference the tests and
  /// bench/alerts_eval compare with; the answers are identical).
  void set_incremental(bool on) noexcept { incremental_ = on; }

private:
  struct part {
    uint64_t series = 0;
    cqrs::bucket b;
  };
  struct slot {
    millis start = 0;
    std::vector<part> parts;
  };
  struct group_state {
    std::vector<cqrs::tag> labels;
    instance inst;
    std::deque<slot> window;
    /// Quantile rules: the sketch counts of every bucket in `window`, kept
    /// as buckets arrive and leave (valid = they match the window).
    window_sketch running;
    bool running_valid = false;
    bool dirty = false;
    millis evaluated_end = 0;
  };
  struct rule_state {
    rule r;
    std::unordered_map<std::string, group_state> groups;
  };

  bool incremental(const rule& r) const noexcept {
    return incremental_ && r.agg.kind == cqrs::agg_kind::quantile;
  }
  void reindex();
  group_state& group(rule_state& rs, std::vector<cqrs::tag> labels);
  void evaluate_group(rule_state& rs, const std::string& key, group_state& g,
                      millis now, millis end, evaluation& out);
  void trim_window(const rule& r, group_state& g, millis begin);

  millis resolution_;
  cqrs::ddsketch_mapping mapping_;
  millis started_at_;
  bool incremental_ = true;
  std::map<std::string, rule_state> rules_;
  /// The rules of one metric: those without `where`, and the others by
  /// their first `where` tag ("key\0value"), which a matching series must
  /// carry: a closed bucket is checked against the rules its own tags can
  /// match, not against every rule of its metric (10,000 rules `where
  /// host=...` on ten metrics: half of the node's CPU went to that loop).
  struct metric_rules {
    std::vector<rule_state*> any;
    std::unordered_map<std::string, std::vector<rule_state*>> by_tag;
  };
  std::unordered_map<std::string, metric_rules> by_metric_;
};

} // namespace cairn::alerts
