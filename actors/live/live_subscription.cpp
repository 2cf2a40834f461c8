#include "actors/live/live_subscription.hpp"

#include "actors/introspection.hpp"
#include "cqrs/query.hpp"
#include "cqrs/time.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <set>

namespace cairn::actors {

namespace {

using json = nlohmann::json;

/// Notices of one window arriving within this of the first one are answered
/// by one query (every partition publishes its own batch at the same
/// moment).
constexpr cqrs::millis debounce_ms = 2;

/// Windows remembered as answered (for corrections), at most.
constexpr size_t answered_kept = 4096;

struct live_client {
  stream_sink_ptr sink;
  std::string id_json;  ///< the client's id, as JSON text
  std::string key;      ///< the coalescing key (the id)
};

struct live_subscription_state {
  settings_ptr settings;
  caf::actor coordinator;
  json query;  ///< "op":"query" plus the client's query object
  bool running = false;
  live_counters counters;
  cqrs::millis step = 0;

  std::vector<live_client> clients;
  std::vector<live_client> waiting;  ///< for the next snapshot
  bool snapshot_in_flight = false;

  /// Windows (start) to answer; a query for them is in flight or armed.
  std::set<cqrs::millis> due;
  bool window_query_in_flight = false;
  bool flush_armed = false;
  /// Windows with a timer at their end + grace.
  std::set<cqrs::millis> armed;
  /// Answered windows -> wall time their query was sent.
  std::map<cqrs::millis, cqrs::millis> answered;
  /// The last update's body (after its '{'; shared by every client's
  /// queued message) and when its query was sent.
  runtime::shared_text last_body;
  cqrs::millis last_sent_at = 0;
  /// Cluster: the next window whose end the window timer waits for.
  cqrs::millis cluster_next = 0;

  static inline const char* name = "cairn.live_subscription";
};

using sub_pointer = introspectable_actor<live_subscription_state>*;

/// `{"id":ID,"type":TYPE,`: a client's head of a message.
std::string message_head(const std::string& id_json, std::string_view type) {
  std::string out;
  out.reserve(id_json.size() + type.size() + 20);
  out += "{\"id\":";
  out += id_json;
  out += ",\"type\":\"";
  out += type;
  out += "\",";
  return out;
}

/// Sends an update to every client, dropping the ones that are gone. The
/// body is built once and shared by every client's queued message; each
/// client adds only its head (docs/architecture.md, "Live subscriptions").
void fan_out(sub_pointer self, std::string_view type,
             const runtime::shared_text& body,
             std::string_view key_suffix = {}) {
  auto& st = self->state;
  int64_t sent = 0, coalesced = 0;
  auto& cs = st.clients;
  std::string key;
  for (auto& c : cs) {
    key.assign(c.key).append(key_suffix);
    auto r = c.sink->update(key, message_head(c.id_json, type), body);
    if (r == runtime::stream_sink::offer::queued)
      ++sent;
    else if (r == runtime::stream_sink::offer::coalesced) {
      ++sent;
      ++coalesced;
    }
  }
  cs.erase(std::remove_if(cs.begin(), cs.end(),
                          [](const live_client& c) { return c.sink->closed(); }),
           cs.end());
  if (st.counters.updates)
    st.counters.updates->fetch_add(sent);
  if (st.counters.coalesced)
    st.counters.coalesced->fetch_add(coalesced);
}

/// The reply without its opening brace (empty if it is not an object).
runtime::shared_text body_of(const std::string& reply) {
  if (reply.size() < 2 || reply.front() != '{')
    return std::make_shared<const std::string>();
  return std::make_shared<const std::string>(reply, 1);
}

bool has_points(const std::string& reply) {
  auto j = json::parse(reply, nullptr, false);
  if (j.is_discarded() || !j.value("ok", false))
    return false;
  auto it = j.find("series");
  if (it == j.end() || !it->is_array())
    return false;
  for (auto& s : *it)
    if (s.contains("points") && !s["points"].empty())
      return true;
  return false;
}

void start_snapshot(sub_pointer self) {
  auto& st = self->state;
  if (st.snapshot_in_flight || st.waiting.empty())
    return;
  st.snapshot_in_flight = true;
  auto clients = std::make_shared<std::vector<live_client>>();
  clients->swap(st.waiting);
  auto sent_at = cqrs::wall_clock_now();
  auto finish = [self, clients, sent_at](const std::string& reply) {
    auto& st = self->state;
    st.snapshot_in_flight = false;
    auto body = body_of(reply);
    for (auto& c : *clients) {
      if (!c.sink->send(message_head(c.id_json, "snapshot"), body))
        continue;
      // An update computed while this snapshot was on its way may hold a
      // window the snapshot saw only in part: send it after.
      if (st.last_body && st.last_sent_at >= sent_at)
        c.sink->update(c.key, message_head(c.id_json, "update"), st.last_body);
      st.clients.push_back(std::move(c));
    }
    start_snapshot(self);
  };
  self
    ->request(st.coordinator, st.settings->query_timeout * 2,
              query_atom::value, st.query.dump())
    .then([finish](std::string& reply) { finish(reply); },
          [finish](caf::error& err) {
            json out{{"ok", false},
                     {"error",
                      {{"code", "timeout"},
                       {"message", "snapshot failed: " + to_string(err)}}}};
            finish(out.dump());
          });
}

/// Queries the due windows (one request for all of them) unless one is in
/// flight; the reply becomes one update.
void flush_due(sub_pointer self) {
  auto& st = self->state;
  if (st.window_query_in_flight || st.due.empty() || st.step <= 0)
    return;
  auto from = *st.due.begin();
  auto to = *st.due.rbegin() + st.step;
  auto q = st.query;
  q["from"] = from;
  q["to"] = to;
  q["step"] = st.step;
  auto sent_at = cqrs::wall_clock_now();
  for (auto w : st.due)
    st.answered[w] = sent_at;
  while (st.answered.size() > answered_kept)
    st.answered.erase(st.answered.begin());
  st.due.clear();
  st.window_query_in_flight = true;
  auto done = [self, sent_at](const std::string& reply) {
    auto& st = self->state;
    st.window_query_in_flight = false;
    // An answer identical to the last one (a window re-queried because a
    // notice from another member crossed the timer's query) is not sent again.
    if (has_points(reply)
        && !(st.last_body && reply.compare(1, std::string::npos, *st.last_body) == 0)) {
      st.last_body = body_of(reply);
      st.last_sent_at = sent_at;
      auto replied_at = cqrs::wall_clock_now();
      fan_out(self, "update", st.last_body);
      // Where a window's lag goes (docs/benchmarks.md, "Live subscriptions").
      spdlog::debug("live: window query sent at {}, answered +{} ms, queued "
                    "for {} clients +{} ms",
                    sent_at, replied_at - sent_at, st.clients.size(),
                    cqrs::wall_clock_now() - replied_at);
    }
    flush_due(self);
  };
  self
    ->request(st.coordinator, st.settings->query_timeout * 2,
              query_atom::value, q.dump())
    .then([done](std::string& reply) { done(reply); },
          [self](caf::error& err) {
            auto& st = self->state;
            st.window_query_in_flight = false;
            spdlog::warn("live: window query failed: {}", to_string(err));
            flush_due(self);
          });
}

/// Marks window `w` due; answered after the debounce.
void make_due(sub_pointer self, cqrs::millis w) {
  auto& st = self->state;
  st.due.insert(w);
  if (!st.flush_armed) {
    st.flush_armed = true;
    self->delayed_send(self, std::chrono::milliseconds{debounce_ms},
                       window_atom::value, cqrs::millis{-1});
  }
}

/// Arms the timer of window `w` at its end + grace (once).
void arm_window(sub_pointer self, cqrs::millis w, cqrs::millis now) {
  auto& st = self->state;
  if (!st.armed.insert(w).second)
    return;
  auto at = w + st.step + st.settings->live_grace;
  self->delayed_send(self, std::chrono::milliseconds{std::max<cqrs::millis>(0, at - now)},
                     window_atom::value, w);
}

/// Cluster: windows of remote owners send no notice here; answer every
/// window at its end + grace (empty answers are not sent).
void arm_cluster_timer(sub_pointer self) {
  auto& st = self->state;
  if (!st.settings->cluster.enabled || st.step <= 0)
    return;
  auto now = cqrs::wall_clock_now();
  auto current = now - now % st.step;
  if (st.cluster_next == 0)
    st.cluster_next = current;
  arm_window(self, st.cluster_next, now);
}

void on_closed(sub_pointer self, const closed_windows& cw) {
  auto& st = self->state;
  if (st.step <= 0)
    return;
  auto now = cqrs::wall_clock_now();
  std::set<cqrs::millis> seen;
  for (auto& [res, start] : cw.buckets) {
    // Buckets coarser than the step, or not dividing it, say nothing
    // about one step window.
    if (res > st.step || st.step % res != 0)
      continue;
    auto w = start - start % st.step;
    if (!seen.insert(w).second)
      continue;
    auto a = st.answered.find(w);
    if (a != st.answered.end()) {
      // Answered: again only if published after that query was sent.
      if (cw.published_at > a->second)
        make_due(self, w);
      continue;
    }
    if (w + st.step + st.settings->live_grace <= now)
      make_due(self, w);
    else
      arm_window(self, w, now);
  }
}

void on_running(sub_pointer self) {
  auto& st = self->state;
  if (!st.running || st.step <= 0)
    return;
  auto interval = std::max<cqrs::millis>(st.settings->live_running_interval,
                                         1000);
  self->delayed_send(self, std::chrono::milliseconds{interval},
                     running_atom::value);
  if (st.clients.empty())
    return;
  auto now = cqrs::wall_clock_now();
  auto q = st.query;
  q["from"] = now - now % st.step;
  q["to"] = now - now % st.step + st.step;
  q["step"] = st.step;
  self
    ->request(st.coordinator, st.settings->query_timeout, query_atom::value,
              q.dump())
    .then(
      [self](std::string& reply) {
        if (has_points(reply))
          fan_out(self, "running", body_of(reply), "\x01running");
      },
      [](caf::error&) {});
}

caf::behavior live_subscription_impl(sub_pointer self, settings_ptr s,
                                     caf::actor coordinator, json query,
                                     bool running, live_counters counters) {
  auto& st = self->state;
  st.settings = s;
  self->track_mailbox(*s->metrics);
  st.coordinator = std::move(coordinator);
  st.running = running;
  st.counters = counters;
  // The step the snapshot's reply will have (the hub validated the query).
  auto spec = cqrs::parse_query(query, cqrs::wall_clock_now(), s->tiers);
  if (auto* q = std::get_if<cqrs::query_spec>(&spec))
    st.step = q->step;
  st.query = std::move(query);
  arm_cluster_timer(self);
  if (running)
    self->send(self, running_atom::value);
  return {
    [=](subscribe_atom, stream_sink_ptr& sink, std::string& id_json,
        std::string& key) {
      self->state.waiting.push_back(
        live_client{std::move(sink), std::move(id_json), std::move(key)});
      start_snapshot(self);
    },
    [=](unsubscribe_atom, uint64_t sink_id, const std::string& key) {
      auto drop = [&](std::vector<live_client>& cs) {
        cs.erase(std::remove_if(cs.begin(), cs.end(),
                                [&](const live_client& c) {
                                  return client_key(c.sink) == sink_id
                                         && c.key == key;
                                }),
                 cs.end());
      };
      drop(self->state.clients);
      drop(self->state.waiting);
    },
    [=](closed_atom, const closed_windows_ptr& cw) { on_closed(self, *cw); },
    [=](window_atom, cqrs::millis w) {
      auto& st = self->state;
      if (w < 0) {
        st.flush_armed = false;
        flush_due(self);
        return;
      }
      st.armed.erase(w);
      if (st.settings->cluster.enabled && w == st.cluster_next) {
        st.cluster_next = w + st.step;
        arm_cluster_timer(self);
      }
      if (st.answered.count(w) == 0)
        make_due(self, w);
    },
    [=](running_atom) { on_running(self); },
  };
}

} // namespace

caf::actor spawn_live_subscription(caf::actor_system& sys,
                                   settings_ptr settings,
                                   caf::actor coordinator, json query,
                                   bool running, live_counters counters) {
  return sys.spawn(live_subscription_impl, std::move(settings),
                   std::move(coordinator), std::move(query), running, counters);
}

} // namespace cairn::actors
