#include "alerts/evaluator.hpp"

#include "runtime/time.hpp"

#include <algorithm>
#include <cstdio>

namespace cairn::alerts {

std::string notice_key(const std::string& rule, const std::string& group,
                       millis episode_start, std::string_view status,
                       uint32_t repeat) {
  std::string text = rule;
  text += '\0';
  text += group;
  text += '\0';
  text += std::to_string(episode_start);
  text += '\0';
  text += status;
  text += '\0';
  text += std::to_string(repeat);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx",
                static_cast<unsigned long long>(cqrs::series_hash(text)));
  return buf;
}

namespace {

/// The by_tag key of a where tag (evaluator.hpp, metric_rules), built in
/// `slot` (reused: no allocation per closed bucket on the ingest path).
const std::string& tag_slot(std::string& slot, std::string_view key,
                            std::string_view value) {
  slot.assign(key);
  slot += '\0';
  slot.append(value);
  return slot;
}

} // namespace

size_t evaluator::instance_count() const noexcept {
  size_t n = 0;
  for (auto& [name, rs] : rules_)
    n += rs.groups.size();
  return n;
}

void evaluator::reindex() {
  by_metric_.clear();
  std::string tag_key;
  for (auto& [name, rs] : rules_) {
    auto& m = by_metric_[rs.r.metric];
    if (rs.r.where.empty())
      m.any.push_back(&rs);
    else
      m.by_tag[tag_slot(tag_key, rs.r.where.front().first,
                        rs.r.where.front().second)]
        .push_back(&rs);
  }
}

evaluator::group_state& evaluator::group(rule_state& rs,
                                         std::vector<cqrs::tag> labels) {
  auto key = group_key(labels);
  auto [it, fresh] = rs.groups.try_emplace(std::move(key));
  if (fresh)
    it->second.labels = std::move(labels);
  return it->second;
}

void evaluator::upsert(rule r) {
  auto name = r.name;
  auto it = rules_.find(name);
  if (it == rules_.end()) {
    auto& rs = rules_[name];
    rs.r = std::move(r);
    // Without group_by the one instance exists from the start, so "no
    // data" can alert on a metric that never arrives.
    if (rs.r.group_by.empty())
      group(rs, {});
  } else {
    auto& rs = it->second;
    bool same_data = rs.r.metric == r.metric && rs.r.where == r.where
                     && rs.r.group_by == r.group_by;
    if (!same_data) {
      for (auto& [k, g] : rs.groups)
        g.window.clear();
      if (rs.r.group_by != r.group_by)
        rs.groups.clear();
    }
    rs.r = std::move(r);
    if (rs.r.group_by.empty() && rs.groups.empty())
      group(rs, {});
    for (auto& [k, g] : rs.groups) {
      g.dirty = true;
      g.running_valid = false;  // the aggregation may have changed
    }
  }
  reindex();
}

bool evaluator::remove(const std::string& name) {
  if (rules_.erase(name) == 0)
    return false;
  reindex();
  return true;
}

void evaluator::restore(const instance_record& rec) {
  auto it = rules_.find(rec.rule);
  if (it == rules_.end())
    return;
  auto& g = group(it->second, rec.labels);
  auto evaluations = g.inst.evaluations;
  g.inst = rec.state;
  g.inst.evaluations = evaluations;
}

std::optional<instance_record>
evaluator::record_of(const std::string& rule, const std::string& group) const {
  auto it = rules_.find(rule);
  if (it == rules_.end())
    return std::nullopt;
  auto g = it->second.groups.find(group);
  if (g == it->second.groups.end())
    return std::nullopt;
  return instance_record{rule, group, g->second.labels, g->second.inst};
}

bool evaluator::erase_instance(const std::string& rule,
                               const std::string& group) {
  auto it = rules_.find(rule);
  if (it == rules_.end())
    return false;
  return it->second.groups.erase(group) > 0;
}

void evaluator::add(const std::vector<cqrs::closed_bucket>& buckets,
                    uint32_t tier) {
  std::vector<cqrs::tag> tags;
  std::string tag_key;
  for (auto& cb : buckets) {
    if (cb.tier != tier)
      continue;
    auto metric = cqrs::series_metric(cb.key);
    auto it = by_metric_.find(std::string{metric});
    if (it == by_metric_.end())
      continue;
    tags.clear();
    if (!cqrs::decode_series_tags(cb.key, tags))
      continue;
    auto series = cqrs::series_hash(cb.key);
    auto feed = [&](rule_state* rs) {
      if (!matches(rs->r, tags))
        return;
      auto& g = group(*rs, group_of(rs->r, tags));
      // Slots sorted by start; closed buckets nearly always extend the end.
      auto pos = g.window.end();
      while (pos != g.window.begin() && std::prev(pos)->start > cb.start)
        --pos;
      if (pos == g.window.begin() || std::prev(pos)->start != cb.start)
        pos = std::next(g.window.insert(pos, slot{cb.start, {}}));
      auto& s = *std::prev(pos);
      auto p = std::find_if(s.parts.begin(), s.parts.end(),
                            [&](const part& x) { return x.series == series; });
      bool keep = g.running_valid && incremental(rs->r);
      if (p == s.parts.end()) {
        s.parts.push_back({series, cb.value});
      } else {
        // A correction replaces the earlier value.
        if (keep && !g.running.subtract(p->b.sketch))
          keep = g.running_valid = false;
        p->b = cb.value;
      }
      if (keep)
        g.running.add(cb.value.sketch);
      g.dirty = true;
    };
    auto& candidates = it->second;
    for (auto* rs : candidates.any)
      feed(rs);
    // A rule indexed under its first where tag can only match a series
    // carrying that tag: one lookup per tag of the bucket.
    if (!candidates.by_tag.empty())
      for (auto& t : tags)
        if (auto hit = candidates.by_tag.find(tag_slot(tag_key, t.first, t.second));
            hit != candidates.by_tag.end())
          for (auto* rs : hit->second)
            feed(rs);
  }
}

void evaluator::evaluate_group(rule_state& rs, const std::string& key,
                               group_state& g, millis now, millis end,
                               evaluation& out) {
  auto& r = rs.r;
  auto begin = end - r.window;
  bool keep = incremental(r);
  trim_window(r, g, begin);
  if (keep && !g.running_valid) {
    g.running.clear();
    for (auto& s : g.window)
      for (auto& p : s.parts)
        g.running.add(p.b.sketch);
    g.running_valid = true;
  }
  // The running counts cover the whole window; a bucket starting at or
  // after `end` (a clock ahead of this node's) must stay out: merge then.
  bool from_running = keep && (g.window.empty() || g.window.back().start < end);
  // Only quantiles need the sketches: other aggregations (and a quantile
  // kept incrementally) merge the scalar fields alone.
  cqrs::bucket merged;
  bool sketches = r.agg.kind == cqrs::agg_kind::quantile && !from_running;
  for (auto& s : g.window) {
    if (s.start >= end)
      break;
    for (auto& p : s.parts) {
      if (sketches)
        merged.merge(p.b);
      else
        merged.merge_without_sketch(p.b);
    }
  }
  if (from_running)
    g.running.build(merged.sketch);
  observation o;
  o.has_data = merged.count > 0;
  if (o.has_data)
    o.value = cqrs::finalize(r.agg, merged, r.window, mapping_);
  g.dirty = false;
  g.evaluated_end = end;
  ++out.evaluated;
  auto& x = g.inst;
  auto before = x;
  auto tm = timing_of(r);
  if (!o.has_data && begin < started_at_)
    tm.no_data = no_data_policy::keep; // warm-up: the window is incomplete
  auto t = step(x, tm, o, now);
  bool journal = false;
  auto record = [&] {
    return instance_record{r.name, key, g.labels, x};
  };
  if (t) {
    out.changes.push_back({record(), t->from, t->to, now});
    journal = true;
  }
  // Notifications (Alertmanager's group_wait / repeat_interval, one group
  // per instance): the first firing notice once the instance has fired for
  // group_wait, then one every repeat_interval; a resolved notice only if a
  // firing one went out for the episode.
  auto make = [&](std::string status, uint32_t repeat) {
    notice n;
    n.rule = r.name;
    n.group = key;
    n.status = status;
    n.key = notice_key(r.name, key, x.active_since, status, repeat);
    n.labels = r.labels;
    n.labels["alertname"] = r.name;
    n.labels["severity"] = r.severity;
    for (auto& [k, v] : g.labels)
      n.labels[k] = v;
    double v = std::isnan(x.value) ? before.value : x.value;
    for (auto& [k, text] : r.annotations)
      n.annotations[k] = render_template(text, r, v, g.labels);
    n.value = std::isnan(v) ? 0 : v;
    n.starts_at = x.fired_at;
    n.ends_at = status == "resolved" ? x.resolved_at : 0;
    n.receivers = r.receivers;
    n.repeat = repeat;
    return n;
  };
  if (x.state == alert_state::firing) {
    if (x.last_notified == 0 && now - x.fired_at >= r.group_wait) {
      out.notices.push_back(make("firing", 0));
      x.last_notified = now;
      journal = true;
    } else if (x.last_notified != 0
               && now - x.last_notified >= r.repeat_interval) {
      auto repeat = static_cast<uint32_t>((now - x.fired_at)
                                          / std::max<millis>(r.repeat_interval, 1));
      out.notices.push_back(make("firing", repeat));
      x.last_notified = now;
      journal = true;
    }
  } else if (t && t->to == alert_state::resolved && before.last_notified != 0) {
    out.notices.push_back(make("resolved", 0));
  }
  if (journal)
    out.journal.push_back(record());
}

void evaluator::trim_window(const rule& r, group_state& g, millis begin) {
  bool keep = incremental(r);
  while (!g.window.empty() && g.window.front().start < begin) {
    if (keep && g.running_valid)
      for (auto& p : g.window.front().parts)
        if (!g.running.subtract(p.b.sketch))
          g.running_valid = false;
    g.window.pop_front();
  }
}

evaluation evaluator::evaluate(millis now,
                               const std::function<bool(const rule&)>& owns) {
  evaluation out;
  auto end = runtime::align_down(now, resolution_);
  for (auto& [name, rs] : rules_) {
    bool mine = !owns || owns(rs.r);
    for (auto it = rs.groups.begin(); it != rs.groups.end();) {
      auto& g = it->second;
      if (!mine) {
        // Another member evaluates this rule: keep the window current,
        // leave the state to the owner's replicated one.
        trim_window(rs.r, g, end - rs.r.window);
        g.dirty = false;
        g.evaluated_end = end;
        ++it;
        continue;
      }
      if (g.dirty || g.evaluated_end < end)
        evaluate_group(rs, it->first, g, now, end, out);
      // Groups that went quiet and hold nothing are dropped (a rule without
      // group_by keeps its one instance).
      bool idle = (g.inst.state == alert_state::inactive
                   || g.inst.state == alert_state::resolved)
                  && g.window.empty() && !rs.r.group_by.empty();
      if (idle) {
        out.journal.push_back({rs.r.name, it->first, g.labels, g.inst, true});
        it = rs.groups.erase(it);
      } else {
        ++it;
      }
    }
  }
  return out;
}

} // namespace cairn::alerts
