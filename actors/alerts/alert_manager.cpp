#include "actors/alerts/alert_manager.hpp"

#include "actors/alerts/alert_notifier.hpp"
#include "actors/messages.hpp"
#include "actors/reply.hpp"
#include "alerts/alert_store.hpp"
#include "alerts/evaluator.hpp"
#include "alerts/replica.hpp"
#include "alerts/replica_codec.hpp"
#include "cqrs/time.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

namespace cairn::actors {

namespace {

using nlohmann::json;
using alerts::alert_state;

/// Evaluation this long after the first closed batch of a pass, so that the
/// batches of every partition's close pass are in.
constexpr std::chrono::milliseconds coalesce{20};
/// Rules per node (a bound on memory and evaluation time).
constexpr size_t max_rules = 100000;

// -- cluster (docs/alerting.md, "Cluster") ------------------------------------
/// Every member's manager sends its digest to every other one this often.
constexpr cqrs::millis sync_interval = 500;
/// A member whose manager was not heard from for this long is not live: its
/// rules move to the others.
constexpr cqrs::millis live_lease = 2000;
/// Evaluation waits this long after a gain of rules (a member left, this
/// one started or its windows became complete): longer than a sync
/// interval, so a member that evaluated them until now noticed first.
constexpr cqrs::millis takeover_delay = 600;
/// Erased instances are remembered this long (to refuse stale copies).
constexpr cqrs::millis tombstone_keep = 10 * 60 * 1000;
/// A member's windows of a rule are complete once it has received buckets
/// for the rule's window plus this (its links come up after its start).
constexpr cqrs::millis warm_slack = 2000;
/// Items per replication message.
constexpr size_t items_per_message = 512;
/// A stamps list to one peer at most this often.
constexpr cqrs::millis stamps_interval = 1000;
/// Evaluation this long after remote buckets arrived (the other members'
/// close passes of the same window).
constexpr std::chrono::milliseconds cluster_coalesce{150};

struct peer_view {
  std::string name;
  caf::actor link;
  cqrs::millis heard = 0;       ///< last message from its manager
  bool evaluating = false;      ///< its digest said its hold is over
  bool synced = false;          ///< digests agreed since it became live
  cqrs::millis stamps_sent = 0;
  uint32_t differing = 0;       ///< consecutive digests unlike ours
  cqrs::millis started = 0;     ///< its manager's start (now - its uptime)
};

struct manager_state {
  settings_ptr settings;
  std::vector<partition_actor> partitions;
  std::shared_ptr<alerts::alert_store> store;
  std::optional<alerts::evaluator> ev;
  std::map<std::string, alerts::rule> rules;
  caf::actor notifier;
  cqrs::millis resolution = 1000;
  bool subscribed = false;
  bool eval_armed = false;
  bool tick_armed = false;
  std::atomic<int64_t>* rules_gauge = nullptr;
  std::atomic<int64_t>* state_gauges[4] = {};
  std::atomic<int64_t>* evaluations = nullptr;
  std::atomic<int64_t>* transitions = nullptr;
  std::atomic<int64_t>* owned_gauge = nullptr;
  std::atomic<int64_t>* events_gauge = nullptr;

  // -- replication (docs/alerting.md, "Cluster") ------------------------------
  /// Rules (r/) and instance states (i/) with their stamps; the rule map and
  /// the evaluator are what it applies.
  alerts::replica_set replica;
  /// Rule items (tombstones included), for the compaction threshold.
  size_t rule_items = 0;
  std::string self_name;
  bool cluster = false;
  std::vector<peer_view> peers;
  uint64_t links_seen = 0;  ///< member_table version `peers` was built from
  /// Members counted for ownership (self included), sorted, and the same
  /// with their start times.
  std::vector<std::string> live;
  std::vector<std::pair<std::string, cqrs::millis>> live_started;
  cqrs::millis started_at = 0;
  /// Start-up hold: no evaluation before this, unless every peer synced.
  cqrs::millis hold_until = 0;
  bool released = true;
  cqrs::millis no_eval_before = 0;
  std::unordered_map<std::string, bool> owned;
  int64_t owned_count = 0;
  /// Distinct rule windows (-> rules with it), and what the ownership was
  /// last computed from (recompute_owners).
  std::map<cqrs::millis, size_t> windows;
  std::string owner_signature;
  /// Instance item key -> its unsent notification (instance_record::unsent).
  std::unordered_map<std::string, std::string> unsent;
  /// Notice key -> this node's outbox entries of it not finished yet.
  std::unordered_map<std::string, size_t> outstanding;
  /// Rules that moved here: their unsent notices are looked at once.
  std::set<std::string> taken_over;
  static inline const char* name = "cairn.alert_manager";
};

using manager_actor = caf::stateful_actor<manager_state>;

void update_gauges(manager_actor* self) {
  auto& st = self->state;
  st.rules_gauge->store(static_cast<int64_t>(st.rules.size()));
  int64_t counts[4] = {};
  st.ev->for_each([&](const alerts::rule&, const std::vector<cqrs::tag>&,
                      const alerts::instance& x) {
    ++counts[static_cast<int>(x.state)];
  });
  for (int i = 0; i < 4; ++i)
    st.state_gauges[i]->store(counts[i]);
  if (!st.cluster)
    st.owned_gauge->store(static_cast<int64_t>(st.rules.size()));
}

/// Partitions send closed buckets only while there are rules.
void follow_partitions(manager_actor* self) {
  auto& st = self->state;
  bool want = !st.rules.empty();
  if (want == st.subscribed)
    return;
  st.subscribed = want;
  auto me = caf::actor_cast<caf::actor>(self);
  for (auto& p : st.partitions) {
    if (want)
      caf::anon_send(p, subscribe_atom::value, me);
    else
      caf::anon_send(p, unsubscribe_atom::value, me);
  }
}

void arm_tick(manager_actor* self) {
  auto& st = self->state;
  if (st.tick_armed || st.rules.empty())
    return;
  st.tick_armed = true;
  auto now = cqrs::wall_clock_now();
  auto next = runtime::align_down(now, st.resolution) + st.resolution
              + st.settings->live_grace + 100;
  self->delayed_send(self, std::chrono::milliseconds{next - now},
                     tick_atom::value);
}

// -- replication and ownership (docs/alerting.md, "Cluster") ------------------

/// True if this node evaluates rule `name` now.
bool owns(manager_actor* self, const std::string& name) {
  auto& st = self->state;
  if (!st.cluster)
    return true;
  if (!st.released || cqrs::wall_clock_now() < st.no_eval_before)
    return false;
  auto it = st.owned.find(name);
  return it != st.owned.end() && it->second;
}

/// The live members with how long they have been up (alerts/replica).
std::vector<alerts::member_age> live_ages(manager_actor* self,
                                          cqrs::millis now) {
  std::vector<alerts::member_age> ages;
  for (auto& [name, started] : self->state.live_started)
    ages.push_back({name, now - started});
  return ages;
}

/// The owner of rule `r` as this node sees the cluster: among the live
/// members whose window of it is complete, if any.
std::string owner_of(const alerts::rule& r,
                     const std::vector<alerts::member_age>& ages) {
  return alerts::rule_owner(r.name, r.window, ages, warm_slack);
}

std::string owner_of(manager_actor* self, const alerts::rule& r,
                     cqrs::millis now) {
  return owner_of(r, live_ages(self, now));
}

/// Sets whether this node evaluates rule `name`; a gain of a known rule
/// waits takeover_delay, so a member that evaluated it until now noticed
/// first.
void set_owned(manager_actor* self, const std::string& name, bool mine,
               cqrs::millis now) {
  auto& st = self->state;
  auto [it, fresh] = st.owned.try_emplace(name, false);
  // A rule new here has had no evaluator anywhere: nothing to wait for.
  if (mine && !it->second && !fresh) {
    st.taken_over.insert(name);
    st.no_eval_before = now + takeover_delay;
  }
  if (mine != it->second)
    st.owned_count += mine ? 1 : -1;
  it->second = mine;
}

/// What ownership depends on besides the rules: the live members and, per
/// distinct rule window, which of them hold a complete window.
std::string ownership_signature(manager_actor* self, cqrs::millis now) {
  auto& st = self->state;
  std::string sig = st.released ? "r" : "h";
  for (auto& [name, started] : st.live_started) {
    sig += '\0';
    sig += name;
  }
  for (auto& [window, n] : st.windows) {
    sig += '|';
    for (auto& [name, started] : st.live_started)
      sig += now - started >= window + warm_slack ? '1' : '0';
  }
  return sig;
}

/// Recomputes the live members and, when they or their complete windows
/// changed (or `force`), which rules this node evaluates.
void recompute_owners(manager_actor* self, bool force = false) {
  auto& st = self->state;
  if (!st.cluster)
    return;
  auto now = cqrs::wall_clock_now();
  std::vector<std::string> live;
  st.live_started.clear();
  if (st.released) {
    live.push_back(st.self_name);
    st.live_started.emplace_back(st.self_name, st.started_at);
  }
  for (auto& p : st.peers)
    if (p.evaluating && now - p.heard < live_lease) {
      live.push_back(p.name);
      st.live_started.emplace_back(p.name, p.started);
    }
  std::sort(live.begin(), live.end());
  std::sort(st.live_started.begin(), st.live_started.end());
  if (live != st.live) {
    std::string names;
    for (auto& n : live)
      names += (names.empty() ? "" : ",") + n;
    spdlog::info("alerting: evaluating members now [{}]", names);
  }
  st.live = std::move(live);
  auto sig = ownership_signature(self, now);
  if (!force && sig == st.owner_signature)
    return;
  st.owner_signature = std::move(sig);
  auto ages = live_ages(self, now);
  for (auto& [name, r] : st.rules)
    set_owned(self, name, st.released && owner_of(r, ages) == st.self_name,
              now);
  st.owned_gauge->store(st.owned_count);
}

/// Ownership of one rule that was created, changed or deleted.
void update_owner(manager_actor* self, const std::string& name) {
  auto& st = self->state;
  if (!st.cluster)
    return;
  auto now = cqrs::wall_clock_now();
  auto it = st.rules.find(name);
  if (it == st.rules.end()) {
    auto o = st.owned.find(name);
    if (o != st.owned.end()) {
      st.owned_count -= o->second ? 1 : 0;
      st.owned.erase(o);
    }
  } else {
    set_owned(self, name,
              st.released && owner_of(self, it->second, now) == st.self_name,
              now);
  }
  st.owned_gauge->store(st.owned_count);
}

/// The rule map's writes, keeping the distinct windows counted.
void put_rule(manager_actor* self, const alerts::rule& r) {
  auto& st = self->state;
  auto it = st.rules.find(r.name);
  if (it != st.rules.end() && --st.windows[it->second.window] == 0)
    st.windows.erase(it->second.window);
  ++st.windows[r.window];
  st.rules[r.name] = r;
}

void erase_rule(manager_actor* self, const std::string& name) {
  auto& st = self->state;
  auto it = st.rules.find(name);
  if (it == st.rules.end())
    return;
  if (--st.windows[it->second.window] == 0)
    st.windows.erase(it->second.window);
  st.rules.erase(it);
}

void send_peer(manager_actor* self, peer_view& p, alerts::peer_kind kind,
               std::string body, uint64_t digest = 0) {
  if (!p.link)
    return;
  alert_peer_msg msg;
  msg.kind = static_cast<uint8_t>(kind);
  msg.from = self->state.self_name;
  msg.digest = digest;
  msg.body = std::move(body);
  self->send(p.link, alert_sync_atom::value, std::move(msg));
}

void send_items(manager_actor* self, peer_view& p,
                const std::vector<const alerts::replica_item*>& items) {
  for (size_t i = 0; i < items.size(); i += items_per_message) {
    auto last = std::min(items.size(), i + items_per_message);
    std::vector<const alerts::replica_item*> part(items.begin() + i,
                                                  items.begin() + last);
    send_peer(self, p, alerts::peer_kind::items, alerts::encode_items(part));
  }
}

/// Pushes local writes to every peer (anti-entropy repairs what is lost).
void broadcast_keys(manager_actor* self, const std::vector<std::string>& keys) {
  auto& st = self->state;
  if (!st.cluster || keys.empty())
    return;
  std::vector<const alerts::replica_item*> items;
  for (auto& k : keys)
    if (auto* x = st.replica.find(k))
      items.push_back(x);
  for (auto& p : st.peers)
    send_items(self, p, items);
}

void send_digest(manager_actor* self, peer_view& p) {
  auto& st = self->state;
  // "<1 evaluating | 0 holding> <uptime ms>": the uptime (not a start time:
  // clocks of members may differ) says whose windows are complete.
  auto uptime = cqrs::wall_clock_now() - st.started_at;
  send_peer(self, p, alerts::peer_kind::digest,
            std::string{st.released ? "1 " : "0 "} + std::to_string(uptime),
            st.replica.digest());
}

/// Merges a rule item into the replica. True if it superseded what was
/// held; then it is appended to the rule log (with its stamp).
bool merge_rule_item(manager_actor* self, alerts::replica_item item) {
  auto& st = self->state;
  auto known = st.replica.find(item.key) != nullptr;
  if (!st.replica.merge(item))
    return false;
  if (!known)
    ++st.rule_items;
  auto name = std::string{alerts::rule_name_of(item.key)};
  bool existed = st.rules.count(name) > 0;
  json value = item.deleted ? json(nullptr)
                            : json::parse(item.value, nullptr, false);
  alerts::rule_event e{0,
                       item.deleted ? alerts::rule_event_kind::deleted
                       : existed    ? alerts::rule_event_kind::updated
                                    : alerts::rule_event_kind::created,
                       name, value, item.at, item.st};
  // Not synced: the origin holds it durably; after a crash here the next
  // anti-entropy round brings it back.
  if (!st.store->append(e, false))
    spdlog::error("alerting: rule '{}' from {} not stored (the next "
                  "anti-entropy round brings it again after a restart)",
                  name, item.st.origin);
  return true;
}

/// Removes rule `name` with its instances (store, replica, evaluator).
void drop_rule(manager_actor* self, const std::string& name) {
  auto& st = self->state;
  std::vector<alerts::instance_record> gone;
  st.ev->for_each([&](const alerts::rule& r,
                      const std::vector<cqrs::tag>& labels,
                      const alerts::instance& x) {
    if (r.name == name)
      gone.push_back({r.name, alerts::group_key(labels), labels, x, true});
  });
  alerts::alert_store::batch b;
  for (auto& g : gone)
    st.store->journal(b, g);
  (void)st.store->commit(b);
  st.ev->remove(name);
  erase_rule(self, name);
  st.replica.drop_instances_of(name);
  for (auto it = st.unsent.begin(); it != st.unsent.end();)
    it = alerts::instance_rule_of(it->first) == name ? st.unsent.erase(it)
                                                     : std::next(it);
}

/// Applies the replica's rule item `key` to the rule map and evaluator.
void apply_rule(manager_actor* self, const std::string& key) {
  auto& st = self->state;
  auto* item = st.replica.find(key);
  if (!item)
    return;
  auto name = std::string{alerts::rule_name_of(key)};
  if (item->deleted) {
    if (st.rules.count(name) > 0)
      drop_rule(self, name);
    return;
  }
  auto parsed = alerts::parse_rule(json::parse(item->value, nullptr, false),
                                   st.resolution);
  if (auto* p = std::get_if<cqrs::problem>(&parsed)) {
    spdlog::error("alert rule '{}' (version {} from {}) is not valid here "
                  "({}); not evaluated", name, item->st.clock,
                  item->st.origin, p->message);
    if (st.rules.count(name) > 0)
      drop_rule(self, name);
    return;
  }
  auto r = std::get<alerts::rule>(std::move(parsed));
  r.version = item->st.clock;
  put_rule(self, r);
  st.ev->upsert(std::move(r));
}

/// Applies a replicated instance item (its rule must be live here).
void apply_instance(manager_actor* self, const alerts::replica_item& item,
                    alerts::alert_store::batch& b) {
  auto& st = self->state;
  auto rule = std::string{alerts::instance_rule_of(item.key)};
  auto group = item.key.substr(2 + rule.size() + 1);
  if (item.deleted) {
    alerts::instance_record rec{rule, group, {}, {}, true};
    st.store->journal(b, rec);
    st.ev->erase_instance(rule, group);
    st.unsent.erase(item.key);
    return;
  }
  auto rec = alerts::instance_from_json(json::parse(item.value, nullptr, false));
  if (!rec)
    return;
  if (rec->unsent.empty())
    st.unsent.erase(item.key);
  else
    st.unsent[item.key] = rec->unsent;
  rec->clock = item.st.clock;
  rec->origin = item.st.origin;
  st.store->journal(b, *rec);
  st.ev->restore(*rec);
}

void after_rule_change(manager_actor* self,
                       const std::vector<std::string>& changed);

/// Items from a peer: rules first (an instance needs its rule), then the
/// instances of live rules.
void on_items(manager_actor* self, std::vector<alerts::replica_item> items) {
  auto& st = self->state;
  std::vector<std::string> changed;
  // One unsynced write for the history of every rule item (and below the
  // instance states): the origin holds them durably.
  alerts::alert_store::batch b;
  for (auto& x : items) {
    if (alerts::is_instance_key(x.key))
      continue;
    auto key = x.key;
    auto origin = x.st.origin;
    auto deleted = x.deleted;
    auto clock = x.st.clock;
    if (!merge_rule_item(self, std::move(x)))
      continue;
    apply_rule(self, key);
    changed.emplace_back(alerts::rule_name_of(key));
    st.store->record(b, json{{"kind", "rule"},
                          {"rule", std::string{alerts::rule_name_of(key)}},
                          {"event", deleted ? "deleted" : "replicated"},
                          {"version", clock},
                          {"origin", origin},
                          {"at", cqrs::wall_clock_now()}});
  }
  bool states_changed = false;
  for (auto& x : items) {
    if (!alerts::is_instance_key(x.key))
      continue;
    // Kept for a rule the replica holds (valid here or not, so digests
    // agree); applied only to a rule this node evaluates.
    auto rule = std::string{alerts::instance_rule_of(x.key)};
    auto* r = st.replica.find(alerts::rule_item_key(rule));
    if (!r || r->deleted)
      continue;
    auto key = x.key;
    if (!st.replica.merge(std::move(x)))
      continue;
    if (st.rules.count(rule) == 0)
      continue;
    apply_instance(self, *st.replica.find(key), b);
    states_changed = true;
  }
  // Not synced either: the owner's write is the durable one.
  if (!st.store->commit(b, false))
    spdlog::error("alerting: replicated instance states not stored");
  if (!changed.empty())
    after_rule_change(self, changed);
  else if (states_changed)
    update_gauges(self);
}

/// Sends the finest tier's buckets of watched metrics from this node's
/// partitions to every peer: every member keeps every rule's window, so
/// whoever evaluates a rule sees the data of every node.
void forward_buckets(manager_actor* self, const closed_batch& batch) {
  auto& st = self->state;
  if (!st.cluster || st.peers.empty())
    return;
  std::vector<const cqrs::closed_bucket*> out;
  for (auto& b : batch.buckets)
    if (b.tier == 0 && st.ev->watches(cqrs::series_metric(b.key)))
      out.push_back(&b);
  if (out.empty())
    return;
  std::string body;
  alerts::encode_buckets(out, body);
  for (auto& p : st.peers)
    send_peer(self, p, alerts::peer_kind::buckets, body);
}

void arm_evaluation(manager_actor* self, std::chrono::milliseconds delay) {
  auto& st = self->state;
  if (st.eval_armed)
    return;
  st.eval_armed = true;
  self->delayed_send(self, delay, evaluate_atom::value);
}

/// The outbox of the previous run, once this node has the cluster's
/// instance states: an entry whose instance carries no unsent notice, or
/// one queued by another member, was delivered (the confirmation was not on
/// disk yet) or taken over while this node was down; it is dropped. The
/// others go out again (same keys).
void resume_outbox(manager_actor* self) {
  auto& st = self->state;
  std::vector<std::string> handled;
  st.outstanding.clear();
  for (auto& [id, entry] : st.store->outbox()) {
    auto rule = entry.value("rule", std::string{});
    auto key = entry.value("key", std::string{});
    auto ikey = alerts::instance_item_key(rule, entry.value("group", std::string{}));
    bool mine = true;
    if (st.rules.count(rule) > 0) {
      auto u = st.unsent.find(ikey);
      auto j = u == st.unsent.end() ? json{} : json::parse(u->second, nullptr, false);
      // Absent: every receiver had the instance's last notice (lanes keep
      // order, so its earlier ones too). Queued by another member: that one
      // took the instance over and sent its last notice.
      mine = j.is_object() && j.value("by", std::string{}) == st.self_name;
    }
    if (mine)
      ++st.outstanding[key];
    else
      handled.push_back(id);
  }
  if (!handled.empty())
    spdlog::info("alerting: {} notifications of the previous run were handled "
                 "by other members meanwhile; not sent again", handled.size());
  self->send(st.notifier, notify_atom::value, std::move(handled));
}

/// Releases the start-up hold once every peer synced (or the hold expired).
void check_release(manager_actor* self) {
  auto& st = self->state;
  if (st.released)
    return;
  auto now = cqrs::wall_clock_now();
  bool all = true;
  for (auto& p : st.peers)
    all = all && p.synced && now - p.heard < live_lease;
  if (!all && now < st.hold_until)
    return;
  st.released = true;
  spdlog::info("alerting: start-up hold over ({}); this node evaluates rules",
               all ? "every member synced" : "hold expired");
  resume_outbox(self);
  recompute_owners(self);
  for (auto& p : st.peers)
    send_digest(self, p);
}

void clear_unsent(manager_actor* self, const std::string& ikey,
                  const std::string& key, bool tell);

void on_peer(manager_actor* self, alert_peer_msg& msg) {
  auto& st = self->state;
  auto it = std::find_if(st.peers.begin(), st.peers.end(),
                         [&](const peer_view& p) { return p.name == msg.from; });
  if (it == st.peers.end())
    return;
  auto& p = *it;
  auto now = cqrs::wall_clock_now();
  bool was_live = now - p.heard < live_lease;
  p.heard = now;
  if (!was_live) {
    p.synced = false;
    p.differing = 1;  // it may have missed everything: compare at once
    send_digest(self, p);
  }
  switch (static_cast<alerts::peer_kind>(msg.kind)) {
    case alerts::peer_kind::digest: {
      bool evaluating = !msg.body.empty() && msg.body[0] == '1';
      auto uptime = msg.body.size() > 2
                      ? std::strtoll(msg.body.c_str() + 2, nullptr, 10)
                      : 0;
      p.started = now - uptime;
      bool equal = msg.digest == st.replica.digest();
      // Two differing digests in a row: a push in flight explains one.
      p.differing = equal ? 0 : p.differing + 1;
      if (equal)
        p.synced = true;
      else if (p.differing >= 2 && now - p.stamps_sent >= stamps_interval) {
        p.stamps_sent = now;
        send_peer(self, p, alerts::peer_kind::stamps,
                  alerts::encode_stamps(st.replica), st.replica.digest());
      }
      if (evaluating != p.evaluating || !was_live) {
        p.evaluating = evaluating;
        recompute_owners(self);
      }
      check_release(self);
      break;
    }
    case alerts::peer_kind::stamps: {
      std::vector<std::pair<std::string, alerts::stamp>> theirs;
      if (!alerts::decode_stamps(msg.body, theirs))
        break;
      std::vector<std::string> push, pull;
      st.replica.diff(theirs, push, pull);
      std::vector<const alerts::replica_item*> items;
      for (auto& k : push)
        if (auto* x = st.replica.find(k))
          items.push_back(x);
      send_items(self, p, items);
      for (size_t i = 0; i < pull.size(); i += items_per_message) {
        std::vector<std::string> part(
          pull.begin() + i, pull.begin() + std::min(pull.size(), i + items_per_message));
        send_peer(self, p, alerts::peer_kind::pull, alerts::encode_keys(part));
      }
      break;
    }
    case alerts::peer_kind::pull: {
      std::vector<std::string> keys;
      if (!alerts::decode_keys(msg.body, keys))
        break;
      std::vector<const alerts::replica_item*> items;
      for (auto& k : keys)
        if (auto* x = st.replica.find(k))
          items.push_back(x);
      send_items(self, p, items);
      break;
    }
    case alerts::peer_kind::items: {
      std::vector<alerts::replica_item> items;
      if (alerts::decode_items(msg.body, items))
        on_items(self, std::move(items));
      break;
    }
    case alerts::peer_kind::buckets: {
      std::vector<cqrs::closed_bucket> buckets;
      if (!alerts::decode_buckets(msg.body, buckets))
        break;
      st.ev->add(buckets, 0);
      arm_evaluation(self, cluster_coalesce);
      break;
    }
    case alerts::peer_kind::done: {
      auto j = json::parse(msg.body, nullptr, false);
      if (j.is_array() && j.size() == 2 && j[0].is_string() && j[1].is_string())
        clear_unsent(self, j[0].get<std::string>(), j[1].get<std::string>(),
                     false);
      break;
    }
  }
}

/// Compacts the rule log once superseded events outnumber the rules.
void maybe_compact(manager_actor* self) {
  auto& st = self->state;
  if (st.store->rule_event_count() < 2 * st.rule_items + 100)
    return;
  auto before = st.store->rule_event_count();
  auto dropped = st.store->compact();
  spdlog::info("alerting: rule log compacted, {} of {} events superseded",
               dropped, before);
  st.events_gauge->store(static_cast<int64_t>(st.store->rule_event_count()));
}

/// One view per other member with a link: the members this node started
/// with, and any that joined since (docs/cluster.md, "Joining through
/// seeds"). True if a peer was added.
bool add_peers(manager_actor* self) {
  auto& st = self->state;
  auto& c = st.settings->cluster;
  std::vector<caf::actor> links;
  if (!st.cluster || !c.members->refresh(links, st.links_seen))
    return false;
  auto members = c.members->members();
  bool added = false;
  for (size_t i = 0; i < members->size() && i < links.size(); ++i) {
    auto& name = (*members)[i].name;
    if (i == c.self_index || !links[i]
        || std::any_of(st.peers.begin(), st.peers.end(),
                       [&](const peer_view& p) { return p.name == name; }))
      continue;
    st.peers.push_back(peer_view{name, links[i]});
    added = true;
  }
  return added;
}

void sync_tick(manager_actor* self) {
  auto& st = self->state;
  auto now = cqrs::wall_clock_now();
  if (add_peers(self))
    spdlog::info("alerting: a member joined; {} peers", st.peers.size());
  for (auto& p : st.peers) {
    if (p.heard != 0 && now - p.heard >= live_lease && p.synced) {
      p.synced = false;
      spdlog::info("alerting: no word from {} for {} ms", p.name, now - p.heard);
    }
    send_digest(self, p);
  }
  recompute_owners(self);
  check_release(self);
  st.replica.expire(now - tombstone_keep);
  self->delayed_send(self, std::chrono::milliseconds{sync_interval},
                     alert_sync_atom::value);
}

/// Puts notice `n` in the outbox (one entry per receiver) within `b`; the
/// entries go to the notifier once `b` is durable.
void queue_notice(manager_actor* self, alerts::alert_store::batch& b,
                  const alerts::notice& n, cqrs::millis now,
                  std::vector<std::pair<std::string, std::string>>& sends) {
  auto& st = self->state;
  auto base = alerts::to_json(n);
  base["created_at"] = now;
  for (size_t i = 0; i < n.receivers.size(); ++i) {
    auto entry = base;
    entry["receiver"] = i;
    entry["attempts"] = 0;
    auto id = st.store->add_outbox(b, entry);
    entry["id"] = id;
    sends.emplace_back(id, entry.dump(-1, ' ', false,
                                      json::error_handler_t::replace));
  }
  if (st.cluster && !n.receivers.empty())
    st.outstanding[n.key] += n.receivers.size();
}

/// The unsent-notification text of an instance state (docs/alerting.md,
/// "Cluster"): who queued it and the notice.
std::string unsent_text(const std::string& by, const alerts::notice& n) {
  return json{{"by", by}, {"notice", alerts::to_json(n)}}.dump(
    -1, ' ', false, json::error_handler_t::replace);
}

/// Takeover: the unsent notifications of rules that moved here, queued by
/// a member that is not live any more, are sent again from this node (same
/// idempotency keys). Returns the instances whose records changed.
std::vector<alerts::instance_record>
resend_taken_over(manager_actor* self, alerts::alert_store::batch& b,
                  cqrs::millis now,
                  std::vector<std::pair<std::string, std::string>>& sends) {
  auto& st = self->state;
  std::vector<alerts::instance_record> out;
  if (st.taken_over.empty() || !st.released || now < st.no_eval_before)
    return out;
  auto taken = std::move(st.taken_over);
  st.taken_over.clear();
  for (auto& [ikey, text] : st.unsent) {
    auto rule = std::string{alerts::instance_rule_of(ikey)};
    if (taken.count(rule) == 0 || !owns(self, rule))
      continue;
    auto j = json::parse(text, nullptr, false);
    if (!j.is_object())
      continue;
    auto by = j.value("by", std::string{});
    auto n = alerts::notice_from_json(j.value("notice", json::object()));
    // Its member still delivers it (or this node does, or did).
    if (!n || by == st.self_name
        || std::binary_search(st.live.begin(), st.live.end(), by)
        || st.outstanding.count(n->key) > 0)
      continue;
    auto group = ikey.substr(2 + rule.size() + 1);
    auto rec = st.ev->record_of(rule, group);
    if (!rec)
      continue;
    spdlog::info("alerting: {} notification {} of rule '{}' queued by {} "
                 "(not live) is sent again from here", n->status, n->key,
                 rule, by);
    queue_notice(self, b, *n, now, sends);
    text = unsent_text(st.self_name, *n);
    out.push_back(std::move(*rec));
  }
  return out;
}

/// Runs an evaluation and makes its outcome durable: outbox entries first,
/// then the instances' journal, then history, then the notifier.
void run_evaluation(manager_actor* self) {
  auto& st = self->state;
  auto now = cqrs::wall_clock_now();
  std::function<bool(const alerts::rule&)> mine;
  if (st.cluster) {
    bool allowed = st.released && now >= st.no_eval_before;
    mine = [&st, allowed](const alerts::rule& r) {
      auto it = st.owned.find(r.name);
      return allowed && it != st.owned.end() && it->second;
    };
  }
  // One synced write for the whole evaluation: outbox entries, instance
  // states and history land together, before the notifier hears of them.
  alerts::alert_store::batch b;
  std::vector<std::pair<std::string, std::string>> sends;
  auto resent = st.cluster ? resend_taken_over(self, b, now, sends)
                           : std::vector<alerts::instance_record>{};
  auto e = st.ev->evaluate(now, mine);
  st.evaluations->fetch_add(static_cast<int64_t>(e.evaluated));
  for (auto& n : e.notices) {
    queue_notice(self, b, n, now, sends);
    if (st.cluster && !n.receivers.empty())
      st.unsent[alerts::instance_item_key(n.rule, n.group)] =
        unsent_text(st.self_name, n);
  }
  // Instances of a re-sent notice that this evaluation did not journal.
  for (auto& rec : resent) {
    bool listed = std::any_of(e.journal.begin(), e.journal.end(),
                              [&](const alerts::instance_record& x) {
                                return x.rule == rec.rule && x.group == rec.group;
                              });
    if (!listed)
      e.journal.push_back(std::move(rec));
  }
  // Each journaled state is the next write of its replicated item.
  for (auto& rec : e.journal) {
    auto key = alerts::instance_item_key(rec.rule, rec.group);
    auto* prev = st.replica.find(key);
    rec.clock = (prev ? prev->st.clock : 0) + 1;
    rec.origin = st.self_name;
    if (st.cluster) {
      auto u = st.unsent.find(key);
      if (rec.erased && u != st.unsent.end())
        st.unsent.erase(u);
      else if (u != st.unsent.end())
        rec.unsent = u->second;
    }
    st.store->journal(b, rec);
  }
  for (auto& c : e.changes) {
    json labels = json::object();
    for (auto& [k, v] : c.at.labels)
      labels[k] = v;
    auto v = c.at.state.value;
    st.store->record(b, json{{"kind", "state"},
                             {"rule", c.at.rule},
                             {"group", c.at.group},
                             {"labels", labels},
                             {"from", std::string{to_string(c.from)}},
                             {"to", std::string{to_string(c.to)}},
                             {"value", std::isfinite(v) ? json(v) : json(nullptr)},
                             {"at", c.time}});
  }
  if (!st.store->commit(b)) {
    // Not durable: nothing is sent, so nothing is sent twice either; the
    // instances' in-memory states stay (retried on no write).
    spdlog::error("alert store write failed: {} notifications and {} state "
                  "changes not recorded", sends.size(), e.changes.size());
    sends.clear();
  } else {
    // Durable here: the other members learn the states (a takeover then
    // continues the episode instead of starting a new one).
    std::vector<std::string> keys;
    for (auto& rec : e.journal) {
      auto key = alerts::instance_item_key(rec.rule, rec.group);
      alerts::replica_item item{key, {rec.clock, rec.origin}, rec.erased,
                                rec.erased ? std::string{}
                                           : alerts::to_json(rec).dump(
                                             -1, ' ', false,
                                             json::error_handler_t::replace),
                                now};
      if (st.replica.merge(std::move(item)))
        keys.push_back(std::move(key));
    }
    broadcast_keys(self, keys);
  }
  st.transitions->fetch_add(static_cast<int64_t>(e.changes.size()));
  for (auto& [id, text] : sends)
    self->send(st.notifier, notify_atom::value, id, text);
  if (!e.changes.empty() || !e.journal.empty())
    update_gauges(self);
}

json instances_of(manager_actor* self, const std::string& name) {
  auto out = json::array();
  self->state.ev->for_each([&](const alerts::rule& r,
                               const std::vector<cqrs::tag>& labels,
                               const alerts::instance& x) {
    if (r.name != name)
      return;
    json l = json::object();
    for (auto& [k, v] : labels)
      l[k] = v;
    out.push_back({{"group", alerts::group_key(labels)},
                   {"labels", l},
                   {"state", std::string{to_string(x.state)}},
                   {"value", std::isfinite(x.value) ? json(x.value) : json(nullptr)},
                   {"active_since", x.active_since},
                   {"fired_at", x.fired_at},
                   {"resolved_at", x.resolved_at},
                   {"episode", x.episode}});
  });
  return out;
}

json state_counts(manager_actor* self, const std::string& name) {
  json c{{"inactive", 0}, {"pending", 0}, {"firing", 0}, {"resolved", 0}};
  self->state.ev->for_each([&](const alerts::rule& r,
                               const std::vector<cqrs::tag>&,
                               const alerts::instance& x) {
    if (r.name == name)
      c[std::string{to_string(x.state)}] = c[std::string{to_string(x.state)}].get<int>() + 1;
  });
  return c;
}

std::string fail(const json& id, cqrs::error_code code, std::string msg) {
  return error_reply(id, code, msg);
}

/// The name of an alert.delete / alert.get request ("name" or "rule").
std::optional<std::string> name_of(const json& req) {
  for (auto* key : {"name", "rule"}) {
    auto it = req.find(key);
    if (it != req.end() && it->is_string())
      return it->get<std::string>();
  }
  return std::nullopt;
}

std::string handle(manager_actor* self, const std::string& line) {
  auto& st = self->state;
  auto req = json::parse(line, nullptr, false);
  if (req.is_discarded() || !req.is_object())
    return fail(no_id(), cqrs::error_code::bad_request,
                "a request must be one JSON object");
  json id = req.contains("id") ? req["id"] : no_id();
  auto op = req.value("op", std::string{});
  auto now = cqrs::wall_clock_now();
  if (op == "alert.create" || op == "alert.update") {
    auto it = req.find("rule");
    if (it == req.end())
      return fail(id, cqrs::error_code::bad_request, "\"rule\" is required");
    auto parsed = alerts::parse_rule(*it, st.resolution);
    if (auto* p = std::get_if<cqrs::problem>(&parsed))
      return fail(id, p->code, p->message);
    auto r = std::get<alerts::rule>(std::move(parsed));
    auto old = st.rules.find(r.name);
    bool create = op == "alert.create";
    if (create && old != st.rules.end())
      return fail(id, cqrs::error_code::rule_exists,
                  "rule '" + r.name + "' already exists (use alert.update)");
    if (!create && old == st.rules.end())
      return fail(id, cqrs::error_code::unknown_rule,
                  "no rule named '" + r.name + "'");
    if (create && st.rules.size() >= max_rules)
      return fail(id, cqrs::error_code::too_large,
                  "this node already holds " + std::to_string(max_rules)
                    + " rules");
    // The rule's next replicated write: its clock is the version.
    auto key = alerts::rule_item_key(r.name);
    auto* prev = st.replica.find(key);
    r.version = (prev ? prev->st.clock : 0) + 1;
    alerts::replica_item item{key, {r.version, st.self_name}, false,
                              alerts::to_json(r).dump(
                                -1, ' ', false, json::error_handler_t::replace),
                              now};
    alerts::rule_event e{0,
                         create ? alerts::rule_event_kind::created
                                : alerts::rule_event_kind::updated,
                         r.name, alerts::to_json(r), now, item.st};
    if (!st.store->append(e))
      return fail(id, cqrs::error_code::unavailable,
                  "the rule could not be stored durably");
    if (!prev)
      ++st.rule_items;
    (void)st.replica.merge(std::move(item));
    put_rule(self, r);
    st.ev->upsert(r);
    st.store->record(json{{"kind", "rule"},
                          {"rule", r.name},
                          {"event", std::string{to_string(e.kind)}},
                          {"version", r.version},
                          {"at", now}});
    broadcast_keys(self, {key});
    after_rule_change(self, {r.name});
    json out{{"ok", true}, {"rule", alerts::to_json(r)}};
    return finish_reply(out, id);
  }
  if (op == "alert.delete" || op == "alert.get") {
    auto name = name_of(req);
    if (!name)
      return fail(id, cqrs::error_code::bad_request,
                  "\"name\" must be a rule name");
    auto it = st.rules.find(*name);
    if (it == st.rules.end())
      return fail(id, cqrs::error_code::unknown_rule,
                  "no rule named '" + *name + "'");
    if (op == "alert.get") {
      json out{{"ok", true},
               {"rule", alerts::to_json(it->second)},
               {"instances", instances_of(self, *name)}};
      if (st.cluster)
        out["owner"] = owner_of(self, it->second, now);
      return finish_reply(out, id);
    }
    auto key = alerts::rule_item_key(*name);
    auto* prev = st.replica.find(key);
    alerts::replica_item item{key, {(prev ? prev->st.clock : 0) + 1, st.self_name},
                              true, {}, now};
    alerts::rule_event e{0, alerts::rule_event_kind::deleted, *name, nullptr,
                         now, item.st};
    if (!st.store->append(e))
      return fail(id, cqrs::error_code::unavailable,
                  "the deletion could not be stored durably");
    (void)st.replica.merge(std::move(item));
    drop_rule(self, *name);
    st.store->record(json{{"kind", "rule"},
                          {"rule", *name},
                          {"event", "deleted"},
                          {"at", now}});
    broadcast_keys(self, {key});
    after_rule_change(self, {*name});
    json out{{"ok", true}, {"deleted", *name}};
    return finish_reply(out, id);
  }
  if (op == "alert.list") {
    auto rules = json::array();
    for (auto& [name, r] : st.rules) {
      auto j = alerts::to_json(r);
      j["instances"] = state_counts(self, name);
      if (st.cluster)
        j["owner"] = owner_of(self, r, now);
      rules.push_back(std::move(j));
    }
    json out{{"ok", true}, {"rules", rules}};
    return finish_reply(out, id);
  }
  if (op == "alert.history") {
    size_t limit = 100;
    if (auto it = req.find("limit"); it != req.end()) {
      if (!it->is_number_unsigned() || it->get<uint64_t>() == 0
          || it->get<uint64_t>() > 10000)
        return fail(id, cqrs::error_code::bad_request,
                    "\"limit\" must be an integer in [1, 10000]");
      limit = it->get<size_t>();
    }
    std::string rule;
    if (auto it = req.find("rule"); it != req.end()) {
      if (!it->is_string())
        return fail(id, cqrs::error_code::bad_request,
                    "\"rule\" must be a string");
      rule = it->get<std::string>();
    }
    auto dead = json::array();
    for (auto& d : st.store->dead_letters())
      if (rule.empty() || d.value("rule", std::string{}) == rule)
        dead.push_back(std::move(d));
    json out{{"ok", true},
             {"history", st.store->history(limit, rule)},
             {"dead_letters", dead}};
    return finish_reply(out, id);
  }
  return fail(id, cqrs::error_code::unknown_op, "unknown alert op '" + op + "'");
}

/// Notification `key` of instance `ikey` reached every receiver: the
/// instance no longer carries it as unsent. The rule's owner makes that a
/// replicated write (so a later owner does not send it again); another
/// member (the one that queued it before the rule moved) only tells the
/// others, and the owner writes it.
void clear_unsent(manager_actor* self, const std::string& ikey,
                  const std::string& key, bool tell) {
  auto& st = self->state;
  auto u = st.unsent.find(ikey);
  if (u == st.unsent.end())
    return;
  auto j = json::parse(u->second, nullptr, false);
  if (!j.is_object()
      || j.value("notice", json::object()).value("key", "") != key)
    return;
  st.unsent.erase(u);
  auto rule = std::string{alerts::instance_rule_of(ikey)};
  auto group = ikey.substr(2 + rule.size() + 1);
  auto rec = st.ev->record_of(rule, group);
  if (!owns(self, rule) || !rec) {
    if (tell)
      for (auto& p : st.peers)
        send_peer(self, p, alerts::peer_kind::done,
                  json::array({ikey, key}).dump(-1, ' ', false,
                                                json::error_handler_t::replace));
    return;
  }
  auto* prev = st.replica.find(ikey);
  rec->clock = (prev ? prev->st.clock : 0) + 1;
  rec->origin = st.self_name;
  alerts::alert_store::batch b;
  st.store->journal(b, *rec);
  // Not synced: a lost write only means a re-send under the same key.
  (void)st.store->commit(b, false);
  (void)st.replica.merge({ikey, {rec->clock, rec->origin}, false,
                          alerts::to_json(*rec).dump(
                            -1, ' ', false, json::error_handler_t::replace),
                          cqrs::wall_clock_now()});
  broadcast_keys(self, {ikey});
}

/// One receiver is done with notification `key` (cluster only).
void on_delivered(manager_actor* self, const std::string& rule,
                  const std::string& group, const std::string& key) {
  auto& st = self->state;
  auto it = st.outstanding.find(key);
  if (it == st.outstanding.end())
    return;
  if (--it->second > 0)
    return;
  st.outstanding.erase(it);
  clear_unsent(self, alerts::instance_item_key(rule, group), key, true);
}

void after_rule_change(manager_actor* self,
                       const std::vector<std::string>& changed) {
  follow_partitions(self);
  arm_tick(self);
  for (auto& name : changed)
    update_owner(self, name);
  recompute_owners(self);
  update_gauges(self);
  maybe_compact(self);
  self->state.events_gauge->store(
    static_cast<int64_t>(self->state.store->rule_event_count()));
}

caf::behavior manager_impl(manager_actor* self, settings_ptr s,
                           std::vector<partition_actor> partitions,
                           std::vector<caf::actor> links,
                           std::shared_ptr<alerts::alert_store> store) {
  auto& st = self->state;
  st.settings = s;
  st.partitions = std::move(partitions);
  st.store = std::move(store);
  st.resolution = s->tiers[0].resolution;
  st.ev.emplace(st.resolution, s->mapping, cqrs::wall_clock_now());
  auto& m = *s->metrics;
  st.rules_gauge = &m.gauge("cairn_alert_rules", "Alert rules on this node");
  const char* names[4] = {"inactive", "pending", "firing", "resolved"};
  for (int i = 0; i < 4; ++i)
    st.state_gauges[i] = &m.gauge("cairn_alert_instances",
                                  "Alert instances, by state",
                                  {{"state", names[i]}});
  st.evaluations = &m.counter("cairn_alert_evaluations_total",
                              "Alert instance evaluations");
  st.transitions = &m.counter("cairn_alert_transitions_total",
                              "Alert instance state changes");
  st.owned_gauge = &m.gauge("cairn_alert_rules_owned",
                            "Alert rules this node evaluates (in a cluster, "
                            "the rules it owns)");
  st.events_gauge = &m.gauge("cairn_alert_rule_events",
                             "Rule events in the alert store's log");
  // Cluster: one view per other member, reached through its peer link.
  st.cluster = s->cluster.enabled;
  st.started_at = cqrs::wall_clock_now();
  st.self_name = s->cluster.enabled ? s->cluster.self_name : s->node_name;
  if (st.cluster) {
    add_peers(self);
    st.released = st.peers.empty();
    auto hold = s->cluster.connection_timeout.count() + 2 * live_lease;
    st.hold_until = cqrs::wall_clock_now() + hold;
  }
  // Rules are the fold of their events (the newest of each name, deleted
  // ones kept as tombstones); instances continue where the journal left
  // them.
  for (auto& [name, e] : st.store->rule_heads()) {
    alerts::replica_item item{alerts::rule_item_key(name), e.st,
                              e.kind == alerts::rule_event_kind::deleted,
                              e.kind == alerts::rule_event_kind::deleted
                                ? std::string{}
                                : e.rule.dump(-1, ' ', false,
                                              json::error_handler_t::replace),
                              e.at};
    ++st.rule_items;
    auto key = item.key;
    (void)st.replica.merge(std::move(item));
    apply_rule(self, key);
  }
  size_t restored = 0;
  for (auto& rec : st.store->load_instances()) {
    if (st.rules.count(rec.rule) == 0)
      continue;
    auto key = alerts::instance_item_key(rec.rule, rec.group);
    (void)st.replica.merge({key, {rec.clock, rec.origin}, false,
                            alerts::to_json(rec).dump(
                              -1, ' ', false, json::error_handler_t::replace),
                            0});
    st.ev->restore(rec);
    if (st.cluster && !rec.unsent.empty())
      st.unsent[key] = rec.unsent;
    ++restored;
  }

  if (!st.rules.empty())
    spdlog::info("alerting: {} rules, {} instances restored", st.rules.size(),
                 restored);
  st.notifier = spawn_alert_notifier(
    self->system(), s, st.store,
    st.cluster && !st.peers.empty() ? caf::actor_cast<caf::actor>(self)
                                    : caf::actor{});
  self->link_to(st.notifier);
  after_rule_change(self, {});
  recompute_owners(self, true);
  if (st.cluster)
    self->send(self, alert_sync_atom::value);
  return {
    [=](alert_atom, const std::string& line) { return handle(self, line); },
    [=](closed_atom, const closed_batch_ptr& batch) {
      auto& st = self->state;
      st.ev->add(batch->buckets, 0);
      forward_buckets(self, *batch);
      arm_evaluation(self, st.cluster ? cluster_coalesce : coalesce);
    },
    [=](evaluate_atom) {
      self->state.eval_armed = false;
      run_evaluation(self);
    },
    [=](tick_atom) {
      self->state.tick_armed = false;
      run_evaluation(self);
      arm_tick(self);
    },
    // -- cluster (docs/alerting.md, "Cluster") --
    [=](alert_sync_atom) { sync_tick(self); },
    [=](alert_sync_atom, alert_peer_msg& msg) { on_peer(self, msg); },
    [=](delivered_atom, const std::string& rule, const std::string& group,
        const std::string& key) { on_delivered(self, rule, group, key); },
  };
}

} // namespace

caf::actor spawn_alert_manager(caf::actor_system& sys, settings_ptr settings,
                               std::vector<partition_actor> partitions,
                               std::vector<caf::actor> links) {
  // Durable only when the node persists (its journal is open): a node
  // without storage, and the tests' in-memory nodes, keep alerts in memory.
  std::unique_ptr<alerts::kv_store> kv;
  if (settings->alerts.path.empty() || !settings->journal) {
    kv = alerts::make_memory_kv();
  } else {
    std::error_code ec;
    std::filesystem::create_directories(settings->alerts.path, ec);
    kv = alerts::open_leveldb_kv(settings->alerts.path);
  }
  auto store = std::make_shared<alerts::alert_store>(std::move(kv),
                                                     settings->alerts.history);
  return sys.spawn(manager_impl, std::move(settings), std::move(partitions),
                   std::move(links), std::move(store));
}

} // namespace cairn::actors
