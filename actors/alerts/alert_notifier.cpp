#include "actors/alerts/alert_notifier.hpp"

#include "actors/messages.hpp"
#include "alerts/webhook_payload.hpp"
#include "alerts/webhook_pool.hpp"
#include "runtime/circuit_breaker.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include <spdlog/spdlog.h>

#include <deque>
#include <map>
#include <random>
#include <set>

namespace cairn::actors {

namespace {

using nlohmann::json;

struct delivery {
  json entry;
  alerts::notice n;
  std::string url;
  std::string lane;
  uint32_t attempts = 0;
};

struct notifier_state {
  settings_ptr settings;
  std::shared_ptr<alerts::alert_store> store;
  /// Told when a notification is done at one receiver (cluster handoff).
  caf::actor manager;
  std::unique_ptr<alerts::webhook_pool> pool;
  alerts::backoff_policy backoff;
  std::map<std::string, runtime::circuit_breaker> breakers;
  std::map<std::string, delivery> deliveries;
  std::map<std::string, std::deque<std::string>> lanes;
  std::mt19937_64 rng{std::random_device{}()};
  std::atomic<int64_t>* delivered = nullptr;
  std::atomic<int64_t>* failed = nullptr;
  std::atomic<int64_t>* dead = nullptr;
  std::atomic<int64_t>* rejected = nullptr;
  std::atomic<int64_t>* opened = nullptr;
  std::atomic<int64_t>* reused = nullptr;
  std::atomic<int64_t>* open = nullptr;
  std::atomic<int64_t>* queued = nullptr;
  static inline const char* name = "cairn.alert_notifier";

  void sync_gauges() {
    auto& c = pool->counters();
    opened->store(c.opened.load());
    reused->store(c.reused.load());
    open->store(c.open.load());
    queued->store(static_cast<int64_t>(deliveries.size()));
  }
};

using notifier_actor = caf::stateful_actor<notifier_state>;

void attempt(notifier_actor* self, const std::string& id);

void start_lane(notifier_actor* self, const std::string& lane) {
  auto it = self->state.lanes.find(lane);
  if (it == self->state.lanes.end())
    return;
  if (it->second.empty()) {
    self->state.lanes.erase(it);
    return;
  }
  attempt(self, it->second.front());
}

/// The delivery `id` is over (delivered or dead): the next of its lane goes.
void finish(notifier_actor* self, const std::string& id,
            const std::string& outcome, int status, const std::string& error) {
  auto& st = self->state;
  auto it = st.deliveries.find(id);
  if (it == st.deliveries.end())
    return;
  auto& d = it->second;
  auto now = cqrs::wall_clock_now();
  alerts::alert_store::batch b;
  json h{{"kind", "delivery"},
         {"rule", d.n.rule},
         {"group", d.n.group},
         {"status", d.n.status},
         {"key", d.n.key},
         {"receiver", d.url},
         {"outcome", outcome},
         {"http_status", status},
         {"attempts", d.attempts},
         {"at", now},
         {"latency_ms", now - d.entry.value("created_at", now)}};
  if (!error.empty())
    h["error"] = error;
  if (outcome == "dead_letter") {
    auto dead = d.entry;
    dead["attempts"] = d.attempts;
    dead["last_error"] = error.empty() ? "HTTP " + std::to_string(status) : error;
    dead["dead_at"] = now;
    st.store->put_dead_letter(b, id, dead);
    st.dead->fetch_add(1);
    spdlog::warn("alert notification {} for rule '{}' to {} parked as a dead "
                 "letter after {} attempts: {}",
                 d.n.key, d.n.rule, d.url, d.attempts,
                 dead["last_error"].get<std::string>());
  } else {
    st.delivered->fetch_add(1);
  }
  st.store->erase_outbox(b, id);
  st.store->record(b, std::move(h));
  // Not synced: a lost outcome means a re-send with the same key.
  (void)st.store->commit(b, outcome == "dead_letter");
  if (st.manager)
    self->send(st.manager, delivered_atom::value, d.n.rule, d.n.group, d.n.key);
  auto lane = d.lane;
  st.deliveries.erase(it);
  auto& q = st.lanes[lane];
  if (!q.empty() && q.front() == id)
    q.pop_front();
  st.sync_gauges();
  start_lane(self, lane);
}

void attempt(notifier_actor* self, const std::string& id) {
  auto& st = self->state;
  auto it = st.deliveries.find(id);
  if (it == st.deliveries.end())
    return;
  auto& d = it->second;
  auto& br = st.breakers[d.url];
  auto now = runtime::circuit_breaker::clock::now();
  if (!br.allow(now)) {
    // Open (or its probe is out): wait for the probe slot; not an attempt.
    st.rejected->fetch_add(1);
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
      br.reopen_at() - now);
    self->delayed_send(self, std::max(wait, std::chrono::milliseconds{50}),
                       retry_atom::value, id);
    return;
  }
  auto idx = d.entry.value("receiver", size_t{0});
  const auto& rc = d.n.receivers.at(idx);
  auto body = alerts::webhook_body(d.n, d.url, "cairn://" + st.settings->node_name);
  alerts::webhook_pool::headers hdrs;
  hdrs.emplace_back("Idempotency-Key", d.n.key);
  if (!rc.secret.empty())
    hdrs.emplace_back("X-Cairn-Signature", alerts::hmac_signature(rc.secret, body));
  for (auto& [k, v] : rc.headers)
    hdrs.emplace_back(k, v);
  caf::actor me = caf::actor_cast<caf::actor>(self);
  st.pool->post(d.url, std::move(hdrs), std::move(body),
                [me, id](alerts::http_result r) {
                  caf::anon_send(me, delivered_atom::value, id, r.status,
                                 r.error, r.reused,
                                 static_cast<int64_t>(r.elapsed.count()));
                });
}

void enqueue(notifier_actor* self, const std::string& id, json entry) {
  auto& st = self->state;
  auto n = alerts::notice_from_json(entry);
  auto idx = entry.value("receiver", size_t{0});
  if (!n || idx >= n->receivers.size()) {
    spdlog::warn("alert outbox entry {} does not decode; dropped", id);
    st.store->erase_outbox(id);
    return;
  }
  delivery d;
  d.url = n->receivers[idx].url;
  d.lane = d.url + '\n' + n->rule + '\n' + n->group;
  d.attempts = entry.value("attempts", uint32_t{0});
  d.n = std::move(*n);
  d.entry = std::move(entry);
  auto lane = d.lane;
  st.deliveries[id] = std::move(d);
  auto& q = st.lanes[lane];
  q.push_back(id);
  st.sync_gauges();
  if (q.size() == 1)
    attempt(self, id);
}

caf::behavior notifier_impl(notifier_actor* self, settings_ptr s,
                            std::shared_ptr<alerts::alert_store> store,
                            caf::actor manager, bool hold_outbox) {
  auto& st = self->state;
  st.settings = s;
  st.store = std::move(store);
  st.manager = std::move(manager);
  alerts::pool_options po;
  po.max_connections = s->alerts.max_connections;
  po.connect_timeout = s->alerts.connect_timeout;
  po.request_timeout = s->alerts.request_timeout;
  po.idle_timeout = s->alerts.idle_timeout;
  po.tls_ca_file = s->alerts.tls_ca_file;
  st.pool = std::make_unique<alerts::webhook_pool>(po);
  st.backoff.initial = s->alerts.retry_initial;
  st.backoff.cap = s->alerts.retry_cap;
  st.backoff.max_attempts = s->alerts.max_attempts;
  auto& m = *s->metrics;
  // Attempts by outcome: delivered (2xx), failed (retried), dead (parked
  // as a dead letter), breaker_rejected (held by an open breaker).
  auto outcome = [&m](const char* name) {
    return &m.counter("cairn_alert_notifications_total",
                      "Alert notification attempts, by outcome",
                      {{"outcome", name}});
  };
  st.delivered = outcome("delivered");
  st.failed = outcome("failed");
  st.dead = outcome("dead");
  st.rejected = outcome("breaker_rejected");
  st.opened = &m.counter("cairn_alert_pool_connections_opened_total",
                         "Webhook sockets connected");
  st.reused = &m.counter("cairn_alert_pool_connections_reused_total",
                         "Webhook requests sent on a reused keep-alive socket");
  st.open = &m.gauge("cairn_alert_pool_connections_open",
                     "Webhook sockets open now");
  st.queued = &m.gauge("cairn_alert_notifications_queued",
                       "Alert notifications waiting for delivery");
  // The outbox of the previous run goes out again (same keys); in a
  // cluster once the manager said which entries another member handled.
  if (!hold_outbox)
    for (auto& [id, entry] : st.store->outbox())
      enqueue(self, id, std::move(entry));
  return {
    [=](notify_atom, const std::vector<std::string>& handled) {
      auto& st = self->state;
      std::set<std::string> drop{handled.begin(), handled.end()};
      for (auto& [id, entry] : st.store->outbox()) {
        if (drop.count(id) == 0) {
          enqueue(self, id, std::move(entry));
          continue;
        }
        st.store->erase_outbox(id);
        st.store->record(json{{"kind", "delivery"},
                              {"rule", entry.value("rule", std::string{})},
                              {"group", entry.value("group", std::string{})},
                              {"status", entry.value("status", std::string{})},
                              {"key", entry.value("key", std::string{})},
                              {"outcome", "handled_elsewhere"},
                              {"at", cqrs::wall_clock_now()}});
      }
    },
    [=](notify_atom, const std::string& id, const std::string& text) {
      auto entry = json::parse(text, nullptr, false);
      if (!entry.is_discarded())
        enqueue(self, id, std::move(entry));
    },
    [=](retry_atom, const std::string& id) { attempt(self, id); },
    [=](delivered_atom, const std::string& id, int status,
        const std::string& error, bool, int64_t) {
      auto& st = self->state;
      auto it = st.deliveries.find(id);
      if (it == st.deliveries.end())
        return;
      auto& d = it->second;
      auto& br = st.breakers[d.url];
      auto now = runtime::circuit_breaker::clock::now();
      ++d.attempts;
      if (status >= 200 && status < 300) {
        br.on_success(now);
        finish(self, id, "delivered", status, {});
        return;
      }
      br.on_failure(now);
      st.failed->fetch_add(1);
      bool permanent = status >= 400 && status < 500 && status != 408
                       && status != 429;
      auto what = error.empty() ? "HTTP " + std::to_string(status) : error;
      alerts::alert_store::batch b;
      st.store->record(b, json{{"kind", "delivery"},
                            {"rule", d.n.rule},
                            {"group", d.n.group},
                            {"status", d.n.status},
                            {"key", d.n.key},
                            {"receiver", d.url},
                            {"outcome", "failed"},
                            {"http_status", status},
                            {"attempts", d.attempts},
                            {"error", what},
                            {"at", cqrs::wall_clock_now()}});
      if (permanent || d.attempts >= st.backoff.max_attempts) {
        (void)st.store->commit(b, false);
        finish(self, id, "dead_letter", status, error);
        return;
      }
      d.entry["attempts"] = d.attempts;
      st.store->put_outbox(b, id, d.entry);
      (void)st.store->commit(b, false);
      std::uniform_real_distribution<double> u{0, 1};
      auto delay = alerts::backoff_delay(st.backoff, d.attempts - 1, u(st.rng));
      self->delayed_send(self, std::chrono::milliseconds{delay},
                         retry_atom::value, id);
      st.sync_gauges();
    },
  };
}

} // namespace

caf::actor spawn_alert_notifier(caf::actor_system& sys, settings_ptr settings,
                                std::shared_ptr<alerts::alert_store> store,
                                caf::actor manager) {
  bool hold = static_cast<bool>(manager);
  return sys.spawn(notifier_impl, std::move(settings), std::move(store),
                   std::move(manager), hold);
}

} // namespace cairn::actors
