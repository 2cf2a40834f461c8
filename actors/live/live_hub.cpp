#include "actors/live/live_hub.hpp"

#include "actors/live/live_subscription.hpp"
#include "actors/introspection.hpp"
#include "actors/messages.hpp"
#include "actors/reply.hpp"
#include "cqrs/query.hpp"
#include "cqrs/series_key.hpp"
#include "cqrs/time.hpp"

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>

namespace cairn::actors {

namespace {

using json = nlohmann::json;

struct hub_client {
  stream_sink_ptr sink;
  /// Subscription id (JSON text) -> query key.
  std::map<std::string, std::string> subs;
};

struct hub_subscription {
  caf::actor actor;
  std::string metric;
  size_t clients = 0;
};

/// Another member's hub that follows closed windows of these metrics here.
struct hub_follower {
  caf::actor hub;
  std::set<std::string> metrics;
  cqrs::millis expires = 0;
};

/// How often a hub renews its follow requests, and how long one lasts.
constexpr cqrs::millis follow_renew_ms = 2000;
constexpr cqrs::millis follow_lease_ms = 3 * follow_renew_ms;

struct live_hub_state {
  settings_ptr settings;
  std::vector<partition_actor> partitions;
  caf::actor coordinator;
  /// Cluster: the peer links (null for this node), the metrics last asked
  /// of the peers, and the peers' hubs that follow this node.
  std::vector<caf::actor> links;
  uint64_t links_seen = 0;  ///< member_table version of `links`
  std::vector<std::string> followed;
  std::map<caf::actor_addr, hub_follower> followers;
  bool renew_armed = false;
  live_counters counters;
  std::atomic<int64_t>* subscriptions_gauge = nullptr;
  std::atomic<int64_t>* clients_gauge = nullptr;
  std::unordered_map<uint64_t, hub_client> clients;
  std::unordered_map<std::string, hub_subscription> subs;
  /// Metric -> the subscriptions of it.
  std::unordered_map<std::string, std::vector<caf::actor>> by_metric;
  bool on_partitions = false;
  uint32_t finest_tier = 0;

  static inline const char* name = "cairn.live_hub";

  void update_gauges() {
    subscriptions_gauge->store(static_cast<int64_t>(subs.size()));
    clients_gauge->store(static_cast<int64_t>(clients.size()));
  }

  void rebuild_metric_index() {
    by_metric.clear();
    for (auto& [key, sub] : subs)
      by_metric[sub.metric].push_back(sub.actor);
  }
};

using hub_pointer = introspectable_actor<live_hub_state>*;

/// Subscribes to (or leaves) every partition's closed-bucket stream as the
/// first subscription comes (or the last goes).
void follow_partitions(hub_pointer self) {
  auto& st = self->state;
  bool want = !st.subs.empty() || !st.followers.empty();
  if (want == st.on_partitions)
    return;
  st.on_partitions = want;
  caf::actor me = caf::actor_cast<caf::actor>(self);
  for (auto& p : st.partitions) {
    if (want)
      caf::anon_send(p, subscribe_atom::value, me);
    else
      caf::anon_send(p, unsubscribe_atom::value, me);
  }
}

/// Cluster: asks every other member's hub for the closed windows of the
/// metrics subscribed here (partitions there send no notices here
/// otherwise, so late events for windows they own would not be streamed
/// again). Renewed every follow_renew_ms while anything is subscribed; an
/// empty list tells the peers to stop.
void follow_peers(hub_pointer self, bool renew) {
  auto& st = self->state;
  // A member that joined is followed too (at the next renewal at latest).
  if (auto& table = st.settings->cluster.members)
    renew = table->refresh(st.links, st.links_seen) || renew;
  if (st.links.empty())
    return;
  std::vector<std::string> metrics;
  for (auto& [metric, subs] : st.by_metric)
    metrics.push_back(metric);
  std::sort(metrics.begin(), metrics.end());
  if (!renew && metrics == st.followed)
    return;
  if (metrics.empty() && st.followed.empty())
    return;
  st.followed = metrics;
  auto me = caf::actor_cast<caf::actor>(self);
  for (auto& link : st.links)
    if (link)
      caf::anon_send(link, live_follow_atom::value, me, metrics);
  if (!st.renew_armed && !metrics.empty()) {
    st.renew_armed = true;
    self->delayed_send(self, std::chrono::milliseconds{follow_renew_ms},
                       tick_atom::value);
  }
}

void reply_error(const stream_sink_ptr& sink, const json& id,
                 cqrs::error_code code, const std::string& message) {
  sink->send(error_reply(id, code, message));
}

/// Drops subscription `id_key` of the client `sink_id` (client_key).
void drop_subscription(hub_pointer self, uint64_t sink_id,
                       const std::string& id_key,
                       const std::string& query_key) {
  auto& st = self->state;
  auto it = st.subs.find(query_key);
  if (it == st.subs.end())
    return;
  caf::anon_send(it->second.actor, unsubscribe_atom::value, sink_id, id_key);
  if (--it->second.clients == 0) {
    self->unlink_from(it->second.actor);
    caf::anon_send_exit(it->second.actor, caf::exit_reason::user_shutdown);
    st.subs.erase(it);
    st.rebuild_metric_index();
    follow_peers(self, false);
  }
}

void subscribe(hub_pointer self, const stream_sink_ptr& sink, const json& req,
               const json& id) {
  auto& st = self->state;
  if (auto status = st.settings->status.load(); status != node_status::ready)
    return reply_error(sink, id, cqrs::error_code::unavailable,
                       std::string{"node is "} + to_string(status));
  if (id.is_discarded() || id.is_null() || id.is_object() || id.is_array())
    return reply_error(sink, id, cqrs::error_code::bad_request,
                       "subscribe needs an \"id\" (a string or a number) "
                       "that names the subscription");
  auto qit = req.find("query");
  if (qit == req.end() || !qit->is_object())
    return reply_error(sink, id, cqrs::error_code::bad_request,
                       "\"query\" must be an object (the fields of a query "
                       "request)");
  bool running = false;
  if (auto r = req.find("running"); r != req.end()) {
    if (!r->is_boolean())
      return reply_error(sink, id, cqrs::error_code::bad_request,
                         "\"running\" must be true or false");
    running = r->get<bool>();
  }
  json q = *qit;
  q.erase("id");
  q["op"] = "query";
  auto parsed = cqrs::parse_query(q, cqrs::wall_clock_now(),
                                  st.settings->tiers);
  if (auto* p = std::get_if<cqrs::problem>(&parsed))
    return reply_error(sink, id, p->code, "query: " + p->message);
  auto& spec = std::get<cqrs::query_spec>(parsed);
  auto id_key = id.dump();
  auto& client = st.clients[client_key(sink)];
  if (!client.sink) {
    client.sink = sink;
    caf::weak_actor_ptr weak = caf::actor_cast<caf::weak_actor_ptr>(self);
    auto sink_id = client_key(sink);
    sink->on_close([weak, sink_id] {
      if (auto hub = caf::actor_cast<caf::actor>(weak))
        caf::anon_send(hub, unsubscribe_atom::value, sink_id);
    });
  }
  if (client.subs.count(id_key) > 0)
    return reply_error(sink, id, cqrs::error_code::bad_request,
                       "\"id\" " + id_key
                         + " is already subscribed on this connection");
  if (client.subs.size() >= st.settings->live_max_subscriptions)
    return reply_error(sink, id, cqrs::error_code::too_many_subscriptions,
                       "at most "
                         + std::to_string(st.settings->live_max_subscriptions)
                         + " subscriptions per connection "
                           "(cairn.live.max-subscriptions)");
  // One subscription per distinct query: the parsed request's canonical
  // text (keys sorted) is the key.
  auto query_key = q.dump() + (running ? "|running" : "");
  auto it = st.subs.find(query_key);
  if (it == st.subs.end()) {
    auto actor = spawn_live_subscription(self->system(), st.settings,
                                         st.coordinator, q, running,
                                         st.counters);
    self->link_to(actor);
    it = st.subs.emplace(query_key, hub_subscription{actor, spec.metric, 0})
           .first;
    st.rebuild_metric_index();
    follow_peers(self, false);
  }
  ++it->second.clients;
  client.subs.emplace(id_key, query_key);
  caf::anon_send(it->second.actor, subscribe_atom::value, sink, id_key,
                 id_key);
  follow_partitions(self);
  st.update_gauges();
}

void unsubscribe(hub_pointer self, const stream_sink_ptr& sink,
                 const json& id) {
  auto& st = self->state;
  auto id_key = id.is_discarded() ? std::string{} : id.dump();
  auto c = st.clients.find(client_key(sink));
  if (c == st.clients.end() || c->second.subs.count(id_key) == 0)
    return reply_error(sink, id, cqrs::error_code::unknown_subscription,
                       "no subscription with \"id\" "
                         + (id_key.empty() ? std::string{"(none)"} : id_key)
                         + " on this connection");
  auto query_key = c->second.subs[id_key];
  c->second.subs.erase(id_key);
  drop_subscription(self, client_key(sink), id_key, query_key);
  sink->forget(id_key);
  json out{{"ok", true}, {"type", "unsubscribed"}};
  sink->send(finish_reply(out, id));
  if (c->second.subs.empty())
    st.clients.erase(c);
  follow_partitions(self);
  st.update_gauges();
}

void on_request(hub_pointer self, const stream_sink_ptr& sink,
                const std::string& line) {
  auto req = json::parse(line, nullptr, false);
  if (req.is_discarded() || !req.is_object())
    return reply_error(sink, no_id(), cqrs::error_code::bad_request,
                       "a message must be one JSON object");
  auto id = req.contains("id") ? req["id"] : no_id();
  auto op = req.find("op");
  if (op == req.end() || !op->is_string())
    return reply_error(sink, id, cqrs::error_code::bad_request,
                       "\"op\" must be a non-empty string");
  auto name = op->get<std::string>();
  if (name == "subscribe")
    return subscribe(self, sink, req, id);
  if (name == "unsubscribe")
    return unsubscribe(self, sink, id);
  reply_error(sink, id, cqrs::error_code::unknown_op,
              "unknown op '" + name
                + "' on a live stream (known: subscribe, unsubscribe)");
}

/// Hands the closed windows of `metric` to its subscriptions here.
void dispatch(hub_pointer self, const std::string& metric,
              closed_windows_ptr cw) {
  auto& st = self->state;
  auto it = st.by_metric.find(metric);
  if (it == st.by_metric.end())
    return;
  for (auto& sub : it->second)
    caf::anon_send(sub, closed_atom::value, cw);
}

/// Forwards a partition's batch: the finest tier's buckets, by metric, to
/// the subscriptions of that metric here and to the followers of it.
void on_closed(hub_pointer self, const closed_batch& batch) {
  auto& st = self->state;
  if (st.by_metric.empty() && st.followers.empty())
    return;
  auto res = st.settings->tiers[st.finest_tier].resolution;
  // Metric -> starts (in publishing order, consecutive repeats dropped).
  std::map<std::string_view, std::vector<cqrs::millis>> by_metric;
  for (auto& b : batch.buckets) {
    if (b.tier != st.finest_tier)
      continue;
    auto& starts = by_metric[cqrs::series_metric(b.key)];
    if (starts.empty() || starts.back() != b.start)
      starts.push_back(b.start);
  }
  for (auto& [metric, starts] : by_metric) {
    std::string name{metric};
    if (st.by_metric.count(name) == 0)
      continue;
    auto cw = std::make_shared<closed_windows>();
    cw->published_at = batch.published_at;
    for (auto start : starts)
      cw->buckets.emplace_back(res, start);
    dispatch(self, name, std::move(cw));
  }
  for (auto& [addr, f] : st.followers) {
    remote_closed out;
    out.published_at = batch.published_at;
    out.resolution = res;
    for (auto& [metric, starts] : by_metric) {
      if (f.metrics.count(std::string{metric}) == 0)
        continue;
      out.metrics.emplace_back(metric);
      out.offsets.push_back(static_cast<uint32_t>(out.starts.size()));
      out.starts.insert(out.starts.end(), starts.begin(), starts.end());
    }
    if (out.metrics.empty())
      continue;
    out.offsets.push_back(static_cast<uint32_t>(out.starts.size()));
    caf::anon_send(f.hub, closed_atom::value, std::move(out));
  }
}

/// A follower's windows arrived: the same as a local batch for the
/// subscriptions here.
void on_remote_closed(hub_pointer self, const remote_closed& rc) {
  if (rc.offsets.size() != rc.metrics.size() + 1)
    return;
  for (size_t i = 0; i < rc.metrics.size(); ++i) {
    auto first = std::min<size_t>(rc.offsets[i], rc.starts.size());
    auto last = std::min<size_t>(rc.offsets[i + 1], rc.starts.size());
    if (first >= last)
      continue;
    auto cw = std::make_shared<closed_windows>();
    cw->published_at = rc.published_at;
    for (auto k = first; k < last; ++k)
      cw->buckets.emplace_back(rc.resolution, rc.starts[k]);
    dispatch(self, rc.metrics[i], std::move(cw));
  }
}

/// A peer's hub asks for (or, with no metrics, stops) the closed windows
/// of `metrics` here.
void on_follow(hub_pointer self, caf::actor hub,
               std::vector<std::string> metrics) {
  auto& st = self->state;
  if (!hub)
    return;
  auto addr = hub.address();
  if (metrics.empty()) {
    if (st.followers.erase(addr) > 0)
      self->demonitor(hub);
  } else {
    auto [it, added] = st.followers.try_emplace(addr);
    if (added)
      self->monitor(hub);
    it->second.hub = std::move(hub);
    it->second.metrics = {metrics.begin(), metrics.end()};
    it->second.expires = cqrs::wall_clock_now() + follow_lease_ms;
    if (!st.renew_armed) {
      st.renew_armed = true;
      self->delayed_send(self, std::chrono::milliseconds{follow_renew_ms},
                         tick_atom::value);
    }
  }
  follow_partitions(self);
}

/// Renews this hub's follow requests and expires followers that stopped
/// renewing theirs (a member that restarted never says so).
void on_renew(hub_pointer self) {
  auto& st = self->state;
  st.renew_armed = false;
  auto now = cqrs::wall_clock_now();
  for (auto it = st.followers.begin(); it != st.followers.end();) {
    if (it->second.expires <= now) {
      self->demonitor(it->second.hub);
      it = st.followers.erase(it);
    } else {
      ++it;
    }
  }
  follow_partitions(self);
  follow_peers(self, true);
  if (!st.renew_armed && !st.followers.empty()) {
    st.renew_armed = true;
    self->delayed_send(self, std::chrono::milliseconds{follow_renew_ms},
                       tick_atom::value);
  }
}

caf::behavior live_hub_impl(hub_pointer self, settings_ptr s,
                            std::vector<partition_actor> partitions,
                            caf::actor coordinator,
                            std::vector<caf::actor> links) {
  auto& st = self->state;
  st.settings = s;
  if (s->cluster.enabled)
    st.links = std::move(links);
  self->set_down_handler([self](caf::down_msg& dm) {
    if (self->state.followers.erase(dm.source) > 0)
      follow_partitions(self);
  });
  self->track_mailbox(*s->metrics);
  st.partitions = std::move(partitions);
  st.coordinator = std::move(coordinator);
  auto& m = *s->metrics;
  st.counters.updates = &m.counter("cairn_live_updates_total",
                                   "Live updates handed to clients");
  st.counters.coalesced = &m.counter(
    "cairn_live_coalesced_total",
    "Live updates replaced by a newer one before a slow client read them");
  st.subscriptions_gauge = &m.gauge(
    "cairn_live_subscriptions", "Distinct live subscriptions (queries)");
  st.clients_gauge = &m.gauge("cairn_live_clients",
                              "Clients with a live subscription");
  for (uint32_t i = 0; i < s->tiers.size(); ++i)
    if (s->tiers[i].resolution < s->tiers[st.finest_tier].resolution)
      st.finest_tier = i;
  return {
    [=](request_atom, stream_sink_ptr& sink, std::string& line) {
      on_request(self, sink, line);
    },
    // The client's connection closed.
    [=](unsubscribe_atom, uint64_t sink_id) {
      auto& st = self->state;
      auto c = st.clients.find(sink_id);
      if (c == st.clients.end())
        return;
      for (auto& [id_key, query_key] : c->second.subs)
        drop_subscription(self, sink_id, id_key, query_key);
      st.clients.erase(c);
      follow_partitions(self);
      st.update_gauges();
    },
    [=](closed_atom, const closed_batch_ptr& batch) {
      on_closed(self, *batch);
    },
    [=](closed_atom, const remote_closed& rc) { on_remote_closed(self, rc); },
    [=](live_follow_atom, caf::actor& hub, std::vector<std::string>& metrics) {
      on_follow(self, std::move(hub), std::move(metrics));
    },
    [=](tick_atom) { on_renew(self); },
  };
}

} // namespace

caf::actor spawn_live_hub(caf::actor_system& sys, settings_ptr settings,
                          std::vector<partition_actor> partitions,
                          caf::actor coordinator,
                          std::vector<caf::actor> links) {
  return sys.spawn(live_hub_impl, std::move(settings), std::move(partitions),
                   std::move(coordinator), std::move(links));
}

} // namespace cairn::actors
