#include "actors/alerts/alert_manager.hpp"

#include "actors/alerts/alert_notifier.hpp"
#include "actors/messages.hpp"
#include "actors/reply.hpp"
#include "alerts/alert_store.hpp"
#include "alerts/evaluator.hpp"
#include "cqrs/time.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include <spdlog/spdlog.h>

#include <filesystem>
#include <map>
#include <optional>

namespace cairn::actors {

namespace {

using nlohmann::json;
using alerts::alert_state;

/// Evaluation this long after the first closed batch of a pass, so that the
/// batches of every partition's close pass are in.
constexpr std::chrono::milliseconds coalesce{20};
/// Rules per node (a bound on memory and evaluation time).
constexpr size_t max_rules = 100000;

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

/// Runs an evaluation and makes its outcome durable: outbox entries first,
/// then the instances' journal, then history, then the notifier.
void run_evaluation(manager_actor* self) {
  auto& st = self->state;
  auto now = cqrs::wall_clock_now();
  auto e = st.ev->evaluate(now);
  st.evaluations->fetch_add(static_cast<int64_t>(e.evaluated));
  // One synced write for the whole evaluation: outbox entries, instance
  // states and history land together, before the notifier hears of them.
  alerts::alert_store::batch b;
  std::vector<std::pair<std::string, std::string>> sends;
  for (auto& n : e.notices) {
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
  }
  for (auto& rec : e.journal)
    st.store->journal(b, rec);
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
    r.version = create ? 1 : old->second.version + 1;
    alerts::rule_event e{0,
                         create ? alerts::rule_event_kind::created
                                : alerts::rule_event_kind::updated,
                         r.name, alerts::to_json(r), now};
    if (!st.store->append(e))
      return fail(id, cqrs::error_code::unavailable,
                  "the rule could not be stored durably");
    st.rules[r.name] = r;
    st.ev->upsert(r);
    st.store->record(json{{"kind", "rule"},
                          {"rule", r.name},
                          {"event", std::string{to_string(e.kind)}},
                          {"version", r.version},
                          {"at", now}});
    follow_partitions(self);
    arm_tick(self);
    update_gauges(self);
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
      return finish_reply(out, id);
    }
    alerts::rule_event e{0, alerts::rule_event_kind::deleted, *name, nullptr,
                         now};
    if (!st.store->append(e))
      return fail(id, cqrs::error_code::unavailable,
                  "the deletion could not be stored durably");
    std::vector<alerts::instance_record> gone;
    st.ev->for_each([&](const alerts::rule& r,
                        const std::vector<cqrs::tag>& labels,
                        const alerts::instance& x) {
      if (r.name == *name)
        gone.push_back({r.name, alerts::group_key(labels), labels, x, true});
    });
    for (auto& g : gone)
      (void)st.store->journal(g);
    st.ev->remove(*name);
    st.rules.erase(it);
    st.store->record(json{{"kind", "rule"},
                          {"rule", *name},
                          {"event", "deleted"},
                          {"at", now}});
    follow_partitions(self);
    update_gauges(self);
    json out{{"ok", true}, {"deleted", *name}};
    return finish_reply(out, id);
  }
  if (op == "alert.list") {
    auto rules = json::array();
    for (auto& [name, r] : st.rules) {
      auto j = alerts::to_json(r);
      j["instances"] = state_counts(self, name);
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

caf::behavior manager_impl(manager_actor* self, settings_ptr s,
                           std::vector<partition_actor> partitions,
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
  // Rules are the fold of their events; instances continue where the
  // journal left them.
  for (auto& [name, j] : st.store->load_rules()) {
    auto parsed = alerts::parse_rule(j, st.resolution);
    if (auto* p = std::get_if<cqrs::problem>(&parsed)) {
      spdlog::error("stored alert rule '{}' no longer valid ({}); skipped",
                    name, p->message);
      continue;
    }
    auto r = std::get<alerts::rule>(std::move(parsed));
    r.version = j.value("version", uint64_t{1});
    st.rules[name] = r;
    st.ev->upsert(std::move(r));
  }
  size_t restored = 0;
  for (auto& rec : st.store->load_instances()) {
    st.ev->restore(rec);
    ++restored;
  }
  if (!st.rules.empty())
    spdlog::info("alerting: {} rules, {} instances restored", st.rules.size(),
                 restored);
  st.notifier = spawn_alert_notifier(self->system(), s, st.store);
  self->link_to(st.notifier);
  follow_partitions(self);
  arm_tick(self);
  update_gauges(self);
  return {
    [=](alert_atom, const std::string& line) { return handle(self, line); },
    [=](closed_atom, const closed_batch_ptr& batch) {
      auto& st = self->state;
      st.ev->add(batch->buckets, 0);
      if (!st.eval_armed) {
        st.eval_armed = true;
        self->delayed_send(self, coalesce, evaluate_atom::value);
      }
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
  };
}

} // namespace

caf::actor spawn_alert_manager(caf::actor_system& sys, settings_ptr settings,
                               std::vector<partition_actor> partitions) {
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
                   std::move(store));
}

} // namespace cairn::actors
