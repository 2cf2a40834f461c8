#include "actors/peer_link.hpp"

#include "actors/hint_queue.hpp"
#include "actors/introspection.hpp"
#include "actors/map_commands.hpp"
#include "actors/messages.hpp"
#include "runtime/journal.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/response_promise.hpp>
#include <caf/sec.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>
#include <map>
#include <random>
#include <set>

namespace cairn::actors {

namespace {

using nlohmann::json;
using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto tick_interval = 100ms;

enum class peer_status : uint8_t { connecting, up, unreachable };

const char* to_string(peer_status s) {
  switch (s) {
    case peer_status::connecting:
      return "connecting";
    case peer_status::up:
      return "up";
    case peer_status::unreachable:
      return "unreachable";
  }
  return "unknown";
}

/// A forwarded ingest waiting for credits or in flight.
struct pending_ingest {
  remote_ingest msg;
  caf::response_promise promise;
  uint64_t events = 0;
  bool settled = false;
  /// Arrival + cluster.ingest-timeout: past it, the write is hinted
  /// instead of waiting longer for the owner (waiting for credits counts).
  clock_type::time_point deadline;
};

using pending_ptr = std::shared_ptr<pending_ingest>;


struct counters {
  std::atomic<int64_t>* hints_stored;
  std::atomic<int64_t>* hints_delivered;
  std::atomic<int64_t>* hints_refused;
  std::atomic<int64_t>* forwarded;
  std::atomic<int64_t>* breaker_opened;
  std::atomic<int64_t>* reconnects;
  std::atomic<int64_t>* peer_downs;
  /// 0 closed, 1 half-open, 2 open (docs/operations.md, "Metrics").
  std::atomic<int64_t>* breaker_state;
  std::atomic<int64_t>* hints_pending;
};

/// The value of cairn_cluster_breaker_state for `s`.
int64_t breaker_gauge_value(runtime::breaker_state s) {
  switch (s) {
    case runtime::breaker_state::closed:
      return 0;
    case runtime::breaker_state::half_open:
      return 1;
    case runtime::breaker_state::open:
      return 2;
  }
  return 2;
}

struct link_state {
  settings_ptr settings;
  uint32_t index = 0;
  cqrs::member_address addr;
  counters metrics{};

  // -- membership -------------------------------------------------------------
  /// True if this node opens the connection to the peer: the member whose
  /// name sorts first dials, the other waits for its hello. Dialing from
  /// both ends at once makes CAF close one of the two connections as
  /// redundant, and under TLS the slower handshakes made both ends drop
  /// "their" connection again and again (docs/cluster.md, "Who dials").
  bool dials = true;
  /// This node's own node actor, sent to the peer in the hello.
  caf::actor home;
  caf::actor remote;
  std::string remote_node;
  peer_status status = peer_status::connecting;
  cqrs::millis since = 0;
  bool connecting = false;
  uint64_t attempts = 0;
  uint64_t connects = 0;
  std::chrono::milliseconds backoff{0};
  clock_type::time_point next_connect{};
  std::string last_error;
  std::minstd_rand rng{std::random_device{}()};

  /// The peer's node said `ready` to a ping since this connection came up:
  /// a recovering owner refuses writes, so nothing is sent before.
  bool peer_ready = false;
  bool checking_ready = false;
  clock_type::time_point next_ready_check{};

  // -- breaker ----------------------------------------------------------------
  runtime::circuit_breaker breaker;
  bool probing = false;
  /// The state last logged, so that every transition (open -> half-open,
  /// which happens by time alone, included) is logged exactly once.
  runtime::breaker_state logged_state = runtime::breaker_state::closed;

  // -- completeness (docs/cluster.md, "The completeness invariant") -----------
  /// Announcements of this node's pending-hint partitions: requested when a
  /// hint adds a partition, done when every member answered.
  uint64_t announce_requested = 0;
  uint64_t announce_done = 0;
  /// Version of the node's pending set last acknowledged by this peer.
  uint64_t announced_version = ~uint64_t{0};
  bool announcing = false;

  // -- partition map (docs/cluster.md, "Partition map") ------------------------
  /// Next comparison of map versions with the peer (a ping), and whether a
  /// pull or push is out.
  clock_type::time_point next_map_check{};
  bool map_syncing = false;
  uint64_t map_pulls = 0;
  uint64_t map_pushes = 0;
  uint64_t rerouted = 0;

  // -- ingest -----------------------------------------------------------------
  std::set<pending_ptr> in_flight;
  std::deque<pending_ptr> waiting;
  uint64_t forwarded_events = 0;

  // -- hints ------------------------------------------------------------------
  /// The queue's bookkeeping (actors/hint_queue: order, durability,
  /// delivery epochs); the clients waiting for its hints, by seq.
  hint_queue hints;
  std::map<uint64_t, caf::response_promise> hint_promises;
  uint64_t hints_stored = 0;
  uint64_t hints_delivered = 0;
  uint64_t hints_refused = 0;

  static inline const char* name = "cairn.peer_link";

  const cluster_settings& cluster() const { return settings->cluster; }
};

using link_pointer = introspectable_actor<link_state>*;

void pump(link_pointer self);
void drain_hints(link_pointer self);

// -- breaker bookkeeping ------------------------------------------------------

/// Runs `f` on the breaker and logs / counts a state change it caused.
/// Logs (once) and counts a breaker state change since the last call.
void observe_breaker(link_pointer self) {
  auto& st = self->state;
  auto now_state = st.breaker.state(clock_type::now());
  if (now_state == st.logged_state)
    return;
  if (now_state == runtime::breaker_state::open)
    st.metrics.breaker_opened->fetch_add(1);
  st.metrics.breaker_state->store(breaker_gauge_value(now_state));
  auto level = now_state == runtime::breaker_state::closed
                 ? spdlog::level::info
                 : spdlog::level::warn;
  spdlog::log(level, "breaker of peer {}: {} -> {}", st.addr.name,
              runtime::to_string(st.logged_state),
              runtime::to_string(now_state));
  st.logged_state = now_state;
}

/// Runs `f` on the breaker and logs / counts the state change it caused.
template <class F>
void with_breaker(link_pointer self, F f) {
  auto& st = self->state;
  // An open -> half-open change by time alone is logged before f's own.
  observe_breaker(self);
  f(st.breaker);
  observe_breaker(self);
}

bool usable(link_pointer self) {
  auto& st = self->state;
  return st.remote && st.peer_ready
         && st.breaker.state(clock_type::now()) == runtime::breaker_state::closed;
}

/// Connected with a closed breaker, but the peer has not said `ready` on
/// this connection yet (the ping is out): writes wait for it, within their
/// deadline, rather than go to the hint queue.
bool about_to_be_usable(link_pointer self) {
  auto& st = self->state;
  return st.remote && !st.peer_ready
         && st.breaker.state(clock_type::now()) == runtime::breaker_state::closed;
}

/// True if `err` says the owner is still recovering (not a fault of the
/// link: nothing for the breaker, wait for `ready`).
bool is_recovering(const caf::error& err) {
  return to_string(err).find("recovering") != std::string::npos;
}

// -- completeness -------------------------------------------------------------

/// Publishes the partitions this link holds hints for to the node's view.
/// True if the node's set gained a partition (then every member must hear
/// of it before a hinted write is acknowledged).
bool publish_pending(link_pointer self) {
  auto& st = self->state;
  if (!st.cluster().pending)
    return false;
  return st.cluster().pending->set_local(st.index, st.hints.partitions());
}

/// Answers the client of hint `seq` (once) with its event count.
void answer_hint(link_pointer self, uint64_t seq, uint64_t events) {
  auto& st = self->state;
  if (auto i = st.hint_promises.find(seq); i != st.hint_promises.end()) {
    i->second.deliver(events);
    st.hint_promises.erase(i);
  }
}

/// Answers the clients of hints that are durable and announced.
void settle_hints(link_pointer self) {
  auto& st = self->state;
  for (auto seq : st.hints.settle(st.announce_done))
    if (auto* e = st.hints.find(seq))
      answer_hint(self, seq, e->events);
}

/// Tells the peer this node's pending-hint partitions (when they changed
/// since it last acknowledged them). `done` runs after its answer, or at
/// once when the peer is not connected.
void announce_to_peer(link_pointer self, std::function<void()> done) {
  auto& st = self->state;
  if (!st.remote || !st.cluster().pending) {
    if (done)
      done();
    return;
  }
  auto [parts, version] = st.cluster().pending->local_union();
  st.announcing = true;
  self
    ->request(st.remote, st.cluster().request_timeout, pending_atom::value,
              st.cluster().self_name, std::move(parts))
    .then(
      [self, version, done](bool) {
        self->state.announcing = false;
        self->state.announced_version = version;
        if (done)
          done();
      },
      [self, done](caf::error& err) {
        self->state.announcing = false;
        spdlog::warn("announcing pending hints to peer {} failed: {}",
                     self->state.addr.name, to_string(err));
        if (done)
          done();
      });
}

/// A hint added a partition to this node's pending set: every member hears
/// of it (through the node actor, which asks every link) before the hints
/// stored up to now are acknowledged.
void request_announcement(link_pointer self) {
  auto& st = self->state;
  auto gen = ++st.announce_requested;
  auto finish = [self, gen] {
    auto& st = self->state;
    st.announce_done = std::max(st.announce_done, gen);
    settle_hints(self);
  };
  if (!st.home) {
    finish();
    return;
  }
  self->request(st.home, st.cluster().request_timeout * 2, pending_atom::value)
    .then([finish](bool) { finish(); },
          [self, finish](caf::error& err) {
            spdlog::warn("announcing pending hints (peer {}) failed: {}",
                         self->state.addr.name, to_string(err));
            finish();
          });
}

// -- partition map ------------------------------------------------------------

/// True if `err` is an owner's refusal of partitions it does not own by its
/// map (nothing was applied there).
bool is_not_owner(const caf::error& err) {
  return to_string(err).find("not_owner") != std::string::npos;
}

/// True if every partition of `partitions` belongs to this link's peer by
/// this node's current map.
bool peer_owns(link_pointer self, const std::vector<uint32_t>& partitions) {
  auto& st = self->state;
  for (auto p : partitions)
    if (p >= st.cluster().map->partitions()
        || st.cluster().map->owner_index(p) != st.index)
      return false;
  return true;
}

/// Hands `msg` back to this node's ingestor to be routed by the current
/// map; `done(ok, events, error)` runs with its answer.
template <class F>
void reroute(link_pointer self, remote_ingest msg, F done) {
  auto& st = self->state;
  ++st.rerouted;
  if (!st.home) {
    done(false, 0, std::string{"node actor unknown"});
    return;
  }
  self
    ->request(st.home, st.settings->ingest_timeout, reroute_atom::value,
              std::move(msg))
    .then([done](uint64_t n) mutable { done(true, n, std::string{}); },
          [done](caf::error& err) mutable {
            done(false, 0, to_string(err));
          });
}

/// Compares the peer's map version (from a ping reply) with ours: pulls a
/// higher map (map.get, then adopt), pushes ours to a peer that is behind
/// (map.adopt). So a member that was down converges without a coordinator.
void sync_map(link_pointer self, const json& ping) {
  auto& st = self->state;
  if (!st.remote || st.map_syncing || !ping.contains("map_version")
      || !ping["map_version"].is_number_unsigned())
    return;
  auto theirs = ping["map_version"].get<uint64_t>();
  auto ours = st.cluster().map->version();
  if (theirs == ours)
    return;
  st.map_syncing = true;
  auto done = [self](caf::error* err) {
    self->state.map_syncing = false;
    self->state.next_map_check = clock_type::now();  // compare again soon
    if (err)
      spdlog::warn("partition map sync with peer {} failed: {}",
                   self->state.addr.name, to_string(*err));
  };
  if (theirs > ours) {
    ++st.map_pulls;
    self
      ->request(st.remote, st.cluster().request_timeout, control_atom::value,
                std::string{R"({"cmd":"map.get"})"}, std::string{})
      .then(
        [self, done](std::string& reply, std::string&) {
          auto j = json::parse(reply, nullptr, false);
          std::string error = "no map in the reply";
          std::optional<cqrs::partition_map> m;
          if (j.is_object() && j.value("ok", false) && j.contains("map"))
            m = cqrs::partition_map_from_json(j["map"], &error);
          if (!m)
            spdlog::warn("partition map from peer {}: {}",
                         self->state.addr.name, error);
          else
            adopt_map(*self->state.settings, *m, self->state.addr.name);
          done(nullptr);
        },
        [done](caf::error& err) { done(&err); });
  } else {
    ++st.map_pushes;
    json cmd{{"cmd", "map.adopt"},
             {"from", st.cluster().self_name},
             {"map", cqrs::to_json(*st.cluster().map->current())}};
    self
      ->request(st.remote, st.cluster().request_timeout, control_atom::value,
                cmd.dump(), std::string{})
      .then(
        [self, done](std::string& reply, std::string&) {
          auto j = json::parse(reply, nullptr, false);
          if (!j.is_object() || !j.value("ok", false))
            spdlog::warn("peer {} refused this node's partition map: {}",
                         self->state.addr.name, reply);
          done(nullptr);
        },
        [done](caf::error& err) { done(&err); });
  }
}

// -- hints --------------------------------------------------------------------

/// The bound on hints is for all peers together (cluster.hints-max-bytes).
/// Every change of the hint queue passes here (after the change).
void add_hint_bytes(link_pointer self, int64_t delta) {
  auto& st = self->state;
  st.settings->hint_bytes.fetch_add(static_cast<size_t>(delta));
  st.metrics.hints_pending->store(static_cast<int64_t>(st.hints.size()));
}

/// Moves a forwarded ingest into the hinted-handoff queue; its promise is
/// delivered once the hint is durable (or with an error if the queue is
/// full or the write fails).
void to_hint(link_pointer self, const pending_ptr& item) {
  auto& st = self->state;
  item->settled = true;
  cqrs::hint_record rec;
  rec.key = std::move(item->msg.key);
  rec.partitions = std::move(item->msg.partitions);
  rec.batches = std::move(item->msg.batches);
  auto bytes = rec.bytes();
  auto limit = st.cluster().hints_max_bytes;
  if (st.settings->hint_bytes.load() + bytes > limit) {
    ++st.hints_refused;
    st.metrics.hints_refused->fetch_add(1);
    item->promise.deliver(caf::make_error(
      caf::sec::runtime_error,
      "unavailable: peer " + st.addr.name
        + " is unreachable and the hinted-handoff queue is full"));
    return;
  }
  // A hint for a partition this link holds none for yet needs the next
  // announcement (links hold disjoint partitions: their owners differ).
  auto held = st.hints.partitions();
  bool grows = std::any_of(rec.partitions.begin(), rec.partitions.end(),
                           [&](uint32_t p) {
                             return std::find(held.begin(), held.end(), p)
                                    == held.end();
                           });
  std::string encoded;
  if (st.cluster().hints)
    cqrs::encode_hint(rec, encoded);
  auto seq = st.hints.push(std::move(rec), item->events,
                           st.announce_requested + (grows ? 1 : 0));
  st.hint_promises.emplace(seq, item->promise);
  add_hint_bytes(self, static_cast<int64_t>(bytes));
  ++st.hints_stored;
  st.metrics.hints_stored->fetch_add(1);
  if (auto& store = st.cluster().hints) {
    auto hdl = caf::actor_cast<caf::actor>(self);
    store->append(st.index, seq, std::move(encoded),
                  [hdl, seq](bool ok, std::string err) {
                    caf::anon_send(hdl, hinted_atom::value, seq, ok,
                                   std::move(err));
                  });
  } else {
    // Persistence off: hints live in memory only (documented).
    st.hints.mark_durable(seq);
  }
  publish_pending(self);
  if (grows)
    request_announcement(self);
  settle_hints(self);
}

/// Pops the delivered prefix of the queue and deletes it from the store.
void pop_delivered(link_pointer self) {
  auto& st = self->state;
  auto popped = st.hints.pop_delivered();
  auto upto = popped.upto;
  add_hint_bytes(self, -static_cast<int64_t>(popped.bytes));
  st.hints_delivered += popped.count;
  st.metrics.hints_delivered->fetch_add(static_cast<int64_t>(popped.count));
  // The owner applied these: their clients may be answered now.
  for (auto [seq, events] : popped.answer)
    answer_hint(self, seq, events);
  if (upto > 0) {
    publish_pending(self);
    if (st.hints.empty() && st.home) {
      // Drained: every member hears it now rather than at its link's next
      // tick, so answers there are complete again at once.
      self->request(st.home, st.cluster().request_timeout * 2,
                    pending_atom::value)
        .then([](bool) {}, [](caf::error&) {});
    }
  }
  if (upto > 0 && st.cluster().hints)
    st.cluster().hints->prune(st.index, 0, upto,
                              [](bool ok, std::string err) {
                                if (!ok)
                                  spdlog::error("hint prune failed: {}", err);
                              });
  if (upto > 0 && st.hints.empty())
    spdlog::info("hinted handoff to peer {} drained ({} delivered in total)",
                 st.addr.name, st.hints_delivered);
}

/// True if this node's current map says the peer left the cluster (a
/// decommissioned or evicted member owns nothing).
bool peer_left(link_pointer self) {
  auto& st = self->state;
  return st.cluster().map->current()->has_left(st.index);
}

/// Sends queued hints in order, at most `credits` in flight. Hints for a
/// peer that left are re-routed to their partitions' owners whether it is
/// up or not: one that was evicted is gone for good (docs/cluster.md,
/// "Evicting a member that is gone").
void drain_hints(link_pointer self) {
  auto& st = self->state;
  if (!usable(self) && (st.hints.empty() || !peer_left(self)))
    return;
  auto epoch = st.hints.epoch();
  for (auto seq : st.hints.next_to_send(st.cluster().credits)) {
    auto& rec = st.hints.find(seq)->rec;
    remote_ingest msg{rec.partitions, rec.batches, rec.key};
    if (!peer_owns(self, rec.partitions)) {
      // The partition moved since the write was hinted: delivered to its
      // new owner (through the ingestor, by the current map) under the
      // same key; delivered here once the new route acknowledged it.
      reroute(self, std::move(msg),
              [self, seq, epoch](bool ok, uint64_t, const std::string& err) {
                auto& st = self->state;
                if (ok) {
                  st.hints.on_delivered(seq);
                  pop_delivered(self);
                  drain_hints(self);
                  if (st.hints.empty())
                    pump(self);
                  return;
                }
                spdlog::warn("hint {} (moved partition) re-route failed: {}",
                             seq, err);
                st.hints.on_failed(epoch);
              });
      continue;
    }
    self
      ->request(st.remote, st.cluster().ingest_timeout, forward_atom::value,
                std::move(msg))
      .then(
        [self, seq](uint64_t) {
          auto& st = self->state;
          with_breaker(self, [](auto& b) { b.on_success(clock_type::now()); });
          // Applied by the owner, whatever the epoch it was sent in.
          st.hints.on_delivered(seq);
          pop_delivered(self);
          drain_hints(self);
          if (st.hints.empty())
            pump(self);
        },
        [self, seq, epoch](caf::error& err) {
          auto& st = self->state;
          // A stale answer is ignored; a current one starts a new epoch in
          // which everything not applied is sent again, in order.
          if (!st.hints.on_failed(epoch))
            return;
          if (is_not_owner(err)) {
            // Maps differ: compare versions now; the next attempt goes to
            // whoever owns the partition by then.
            st.next_map_check = clock_type::now();
            spdlog::info("hint {} to peer {}: {}", seq, st.addr.name,
                         to_string(err));
          } else if (is_recovering(err)) {
            // Not a fault: wait until the owner says it is ready.
            st.peer_ready = false;
            st.next_ready_check = clock_type::now() + 200ms;
            spdlog::info("hint {} to peer {}: owner still recovering; "
                         "waiting for it to be ready",
                         seq, st.addr.name);
          } else {
            spdlog::warn("hint {} to peer {} failed: {}", seq, st.addr.name,
                         to_string(err));
            with_breaker(self,
                         [](auto& b) { b.on_failure(clock_type::now()); });
          }
        });
  }
}

// -- live forwarding ----------------------------------------------------------

void send_live(link_pointer self, pending_ptr item) {
  auto& st = self->state;
  st.in_flight.insert(item);
  st.metrics.forwarded->fetch_add(1);
  // What is left of cluster.ingest-timeout since the write arrived.
  auto left = std::max<std::chrono::milliseconds>(
    10ms, std::chrono::duration_cast<std::chrono::milliseconds>(
            item->deadline - clock_type::now()));
  self->request(st.remote, left, forward_atom::value, item->msg)
    .then(
      [self, item](uint64_t n) {
        auto& st = self->state;
        st.in_flight.erase(item);
        if (item->settled)
          return;
        item->settled = true;
        st.forwarded_events += item->events;
        with_breaker(self, [](auto& b) { b.on_success(clock_type::now()); });
        // The client's "duplicate" detection compares applied and accepted
        // counts: report the owner's count unchanged.
        item->promise.deliver(n);
        pump(self);
      },
      [self, item](caf::error& err) {
        auto& st = self->state;
        st.in_flight.erase(item);
        if (item->settled)
          return;
        if (is_not_owner(err)) {
          // Nothing was applied there. Moved by our map meanwhile: route
          // it again; else the maps differ the other way round: hint it
          // (retried once the versions agree) and compare versions now.
          st.next_map_check = clock_type::now();
          if (!peer_owns(self, item->msg.partitions)) {
            item->settled = true;
            reroute(self, std::move(item->msg),
                    [item](bool ok, uint64_t n, const std::string& e) {
                      if (ok)
                        item->promise.deliver(n);
                      else
                        item->promise.deliver(caf::make_error(
                          caf::sec::runtime_error,
                          "unavailable: re-route failed: " + e));
                    });
          } else {
            to_hint(self, item);
          }
          pump(self);
          return;
        }
        spdlog::warn("forward to peer {} failed ({}); hinting {} events",
                     st.addr.name, to_string(err), item->events);
        if (is_recovering(err)) {
          st.peer_ready = false;
          st.next_ready_check = clock_type::now() + 200ms;
        } else {
          with_breaker(self, [](auto& b) { b.on_failure(clock_type::now()); });
        }
        to_hint(self, item);
        pump(self);
      });
}

/// Sends waiting writes while credits allow; diverts them to hints when the
/// peer is not usable or hints are pending (keeps the order).
void pump(link_pointer self) {
  auto& st = self->state;
  auto now = clock_type::now();
  while (!st.waiting.empty()) {
    if (st.hints.empty() && about_to_be_usable(self)
        && st.waiting.front()->deadline > now)
      return;  // the readiness ping answers soon; the tick pumps again
    if (!st.hints.empty() || !usable(self)
        || st.waiting.front()->deadline <= now) {
      auto item = std::move(st.waiting.front());
      st.waiting.pop_front();
      to_hint(self, item);
      continue;
    }
    if (st.in_flight.size() >= st.cluster().credits)
      return;
    auto item = std::move(st.waiting.front());
    st.waiting.pop_front();
    send_live(self, std::move(item));
  }
}

// -- connection ---------------------------------------------------------------

void schedule_reconnect(link_pointer self) {
  auto& st = self->state;
  auto& c = st.cluster();
  if (st.backoff.count() == 0)
    st.backoff = c.reconnect_min;
  // Full jitter in [backoff/2, backoff], then double up to the cap.
  std::uniform_int_distribution<int64_t> jitter{st.backoff.count() / 2,
                                                st.backoff.count()};
  st.next_connect = clock_type::now()
                    + std::chrono::milliseconds{jitter(st.rng)};
  st.backoff = std::min(c.reconnect_max, st.backoff * 2);
}

/// The peer's node actor is known and answers: the link is up.
void peer_up(link_pointer self, caf::actor remote, std::string node) {
  auto& st = self->state;
  st.remote = std::move(remote);
  self->monitor(st.remote);
  st.remote_node = std::move(node);
  st.status = peer_status::up;
  st.since = cqrs::wall_clock_now();
  st.backoff = std::chrono::milliseconds{0};
  st.last_error.clear();
  if (st.connects++ > 0)
    st.metrics.reconnects->fetch_add(1);
  spdlog::info("peer {} up at {}:{} (node {}, {})", st.addr.name,
               st.addr.host, st.addr.port, st.remote_node,
               st.dials ? "dialed, attempt " + std::to_string(st.attempts)
                        : std::string{"it dialed us"});
  st.attempts = 0;
  st.peer_ready = false;
  st.next_ready_check = clock_type::now();
  // Tell it our pending-hint set first: until it heard it, its answers are
  // all partial.
  st.announced_version = ~uint64_t{0};
  announce_to_peer(self, nullptr);
  // A breaker opened while the peer was gone probes it (half-open) when its
  // reset timeout expires; hints and writes wait until the peer says it is
  // ready (see the tick).
  pump(self);
}

void connect_failed(link_pointer self, std::string error) {
  auto& st = self->state;
  st.connecting = false;
  st.last_error = std::move(error);
  if (st.attempts == 1 || st.attempts % 20 == 0)
    spdlog::info("peer {} not reachable yet ({}), retrying", st.addr.name,
                 st.last_error);
  schedule_reconnect(self);
}

/// Dials the peer (only the member whose name sorts first does), then says
/// hello with this node's name and node actor so that the peer adopts the
/// same connection instead of opening one of its own.
void try_connect(link_pointer self) {
  auto& st = self->state;
  if (!st.dials || !st.home || st.connecting || st.remote)
    return;
  st.connecting = true;
  ++st.attempts;
  auto& sys = self->system();
  // TLS: through this node's outbound tunnel on loopback (docs/cluster.md).
  auto tunnel = st.cluster().members->tunnel(st.addr.name);
  bool tunneled = tunnel.has_value();
  auto mm = st.cluster().tls && !tunneled
              ? sys.openssl_manager().actor_handle()
              : sys.middleman().actor_handle();
  auto timeout = std::max<std::chrono::milliseconds>(
    2s, st.cluster().connection_timeout);
  self
    ->request(mm, timeout, caf::connect_atom::value,
              tunneled ? std::string{"127.0.0.1"} : st.addr.host,
              tunneled ? *tunnel : st.addr.port)
    .then(
      [self, timeout](const caf::node_id& nid, caf::strong_actor_ptr& ptr,
                      const std::set<std::string>&) {
        auto& st = self->state;
        if (!ptr) {
          connect_failed(self, "no actor published on the peer's port");
          return;
        }
        auto remote = caf::actor_cast<caf::actor>(std::move(ptr));
        self
          ->request(remote, timeout, hello_atom::value, st.cluster().self_name,
                    st.home)
          .then(
            [self, remote, node = to_string(nid)](bool accepted) {
              auto& st = self->state;
              if (!accepted) {
                connect_failed(self, "the peer does not list "
                                       + st.cluster().self_name
                                       + " as a member");
                return;
              }
              st.connecting = false;
              peer_up(self, remote, node);
            },
            [self](caf::error& err) { connect_failed(self, to_string(err)); });
      },
      [self](caf::error& err) { connect_failed(self, to_string(err)); });
}

void peer_lost(link_pointer self, const caf::error& reason) {
  auto& st = self->state;
  if (!st.remote)
    return;
  self->demonitor(st.remote);
  st.remote = nullptr;
  st.status = peer_status::unreachable;
  st.since = cqrs::wall_clock_now();
  st.last_error = to_string(reason);
  st.metrics.peer_downs->fetch_add(1);
  spdlog::warn("peer {} unreachable: {}", st.addr.name, st.last_error);
  with_breaker(self, [](auto& b) { b.trip(clock_type::now()); });
  // In-flight forwards would only fail at their timeout: hint them now (a
  // redelivery of one the owner did apply is deduplicated by its key).
  auto in_flight = std::move(st.in_flight);
  st.in_flight.clear();
  for (auto& item : in_flight)
    if (!item->settled)
      to_hint(self, item);
  st.hints.restart_epoch();
  st.peer_ready = false;
  pump(self);
  st.backoff = std::chrono::milliseconds{0};
  if (st.dials)
    schedule_reconnect(self);
  else
    st.last_error += "; waiting for " + st.addr.name + " to dial";
}

json describe(link_pointer self) {
  auto& st = self->state;
  auto now = clock_type::now();
  auto state = st.breaker.state(now);
  auto& c = st.breaker.counters();
  json b{{"state", std::string{runtime::to_string(state)}},
         {"consecutive_failures", st.breaker.consecutive_failures()},
         {"opened", c.opened},
         {"half_opened", c.half_opened},
         {"closed", c.closed},
         {"rejected", c.rejected},
         {"successes", c.successes},
         {"failures", c.failures}};
  if (state == runtime::breaker_state::open)
    b["reopen_in_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                          st.breaker.reopen_at() - now)
                          .count();
  json out{{"name", st.addr.name},
           {"address", st.addr.host + ":" + std::to_string(st.addr.port)},
           {"status", to_string(st.status)},
           {"since", st.since},
           {"node_id", st.remote_node},
           {"breaker", b},
           {"ready", st.peer_ready},
           {"in_flight", st.in_flight.size()},
           {"waiting", st.waiting.size()},
           {"forwarded_events", st.forwarded_events},
           {"map", {{"pulls", st.map_pulls}, {"pushes", st.map_pushes},
                    {"rerouted", st.rerouted}}},
           {"hints",
            {{"pending", st.hints.size()},
             {"bytes", st.hints.bytes()},
             {"in_flight", st.hints.in_flight()},
             {"stored", st.hints_stored},
             {"delivered", st.hints_delivered},
             {"refused", st.hints_refused}}}};
  if (auto& view = st.cluster().pending) {
    // The completeness view (docs/cluster.md): what this peer announced it
    // holds hints for; until it announced, every answer here is partial.
    auto [known, parts] = view->announced(st.index);
    out["announced"] = {{"known", known}, {"pending_partitions", parts}};
  }
  if (!st.last_error.empty())
    out["last_error"] = st.last_error;
  return out;
}

caf::behavior link_impl(link_pointer self, settings_ptr s, uint32_t index,
                        std::deque<stored_hint> loaded) {
  auto& st = self->state;
  st.settings = s;
  st.index = index;
  st.addr = *s->cluster.members->at(index);
  st.breaker = runtime::circuit_breaker{s->cluster.breaker};
  st.since = cqrs::wall_clock_now();
  auto& m = *s->metrics;
  self->track_mailbox(m);
  runtime::metric_labels peer{{"peer", st.addr.name}};
  st.metrics = counters{
    &m.counter("cairn_cluster_hints_stored_total",
               "Forwarded writes stored in the hinted-handoff queue", peer),
    &m.counter("cairn_cluster_hints_delivered_total",
               "Hints delivered to their owner", peer),
    &m.counter("cairn_cluster_hints_refused_total",
               "Writes refused because the hint queue was full", peer),
    &m.counter("cairn_cluster_forwarded_total",
               "Batches forwarded to their owner node", peer),
    &m.counter("cairn_cluster_breaker_opened_total",
               "Transitions of a peer breaker to open", peer),
    &m.counter("cairn_cluster_reconnects_total", "Reconnections to a peer",
               peer),
    &m.counter("cairn_cluster_peer_down_total", "Peers seen going down", peer),
    &m.gauge("cairn_cluster_breaker_state",
             "Breaker of a peer: 0 closed, 1 half-open, 2 open", peer),
    &m.gauge("cairn_cluster_hints_pending",
             "Hints waiting for their owner", peer)};
  for (auto& h : loaded)
    st.hints.load(h.seq, std::move(h.record));
  add_hint_bytes(self, static_cast<int64_t>(st.hints.bytes()));
  if (!st.hints.empty())
    spdlog::info("{} hints pending for peer {} from a previous run",
                 st.hints.size(), st.addr.name);
  publish_pending(self);
  st.dials = s->cluster.self_name < st.addr.name;
  if (!st.dials)
    st.last_error = "waiting for " + st.addr.name + " to dial";
  self->set_down_handler([self](caf::down_msg& dm) {
    if (dm.source == self->state.remote.address())
      peer_lost(self, dm.reason);
  });
  self->delayed_send(self, tick_interval, tick_atom::value);
  return {
    // This node's own node actor (sent once it is spawned): dial now.
    [self](hello_atom, caf::actor& home) {
      self->state.home = std::move(home);
      try_connect(self);
    },
    // The peer dialed us and said hello (through our node actor).
    // The live hub follows the peer's closed windows (docs/architecture.md,
    // "Live subscriptions"); dropped while the peer is away (renewed).
    [self](live_follow_atom, caf::actor& hub, std::vector<std::string>& metrics) {
      if (auto& remote = self->state.remote)
        caf::anon_send(remote, live_follow_atom::value, std::move(hub),
                       std::move(metrics));
    },
    // Alert replication (docs/alerting.md, "Cluster"): dropped while the
    // peer is away (anti-entropy repairs it when the peer is back).
    [self](alert_sync_atom a, alert_peer_msg& msg) {
      if (auto& remote = self->state.remote)
        caf::anon_send(remote, a, std::move(msg));
    },
    [self](hello_atom, const std::string&, caf::actor& remote) -> bool {
      auto& st = self->state;
      if (st.dials) {
        spdlog::warn("peer {} dialed although {} dials it; accepted",
                     st.addr.name, st.cluster().self_name);
      }
      if (st.remote == remote)
        return true;
      if (st.remote)  // a restarted peer: the old connection is stale
        peer_lost(self, caf::make_error(caf::sec::runtime_error,
                                        "peer reconnected"));
      auto node = to_string(remote->node());
      peer_up(self, std::move(remote), std::move(node));
      return true;
    },
    // A console command meant for the peer (actors NODE, inspect on NODE):
    // passed to the peer's node actor while the link is up.
    [self](request_atom, std::string& text) -> caf::result<std::string> {
      auto& st = self->state;
      if (!st.remote)
        return nlohmann::json{{"ok", false},
                              {"error", "node " + st.addr.name
                                          + " is unreachable"}}
          .dump();
      self->delegate(st.remote, request_atom::value, std::move(text));
      return caf::delegated<std::string>{};
    },
    // The control plane (docs/cluster.md, "Partition map"): relayed to the
    // peer's node actor; answered `unreachable` while the peer is away.
    [self](control_atom, std::string& cmd, std::string& payload)
      -> caf::result<std::string, std::string> {
      auto& st = self->state;
      if (!st.remote)
        return {control_error("unreachable",
                              "node " + st.addr.name + " is unreachable"),
                std::string{}};
      self->delegate(st.remote, control_atom::value, std::move(cmd),
                     std::move(payload));
      return caf::delegated<std::string, std::string>{};
    },
    [self](ingest_atom, remote_ingest& msg) -> caf::result<uint64_t> {
      auto& st = self->state;
      auto item = std::make_shared<pending_ingest>();
      for (auto& b : msg.batches)
        item->events += b.size();
      item->msg = std::move(msg);
      item->deadline = clock_type::now() + st.cluster().ingest_timeout;
      item->promise = self->make_response_promise();
      auto rp = item->promise;
      if (st.hints.empty() && about_to_be_usable(self))
        st.waiting.push_back(item);
      else if (!st.hints.empty() || !usable(self))
        to_hint(self, item);
      else if (st.in_flight.size() < st.cluster().credits && st.waiting.empty())
        send_live(self, item);
      else
        st.waiting.push_back(item);
      return caf::delegated<uint64_t>{};
    },
    [self](partial_atom, remote_query& q) -> caf::result<remote_partial> {
      auto& st = self->state;
      if (!st.remote)
        return caf::make_error(caf::sec::runtime_error,
                               "peer " + st.addr.name + " is unreachable");
      auto state = st.breaker.state(clock_type::now());
      if (state != runtime::breaker_state::closed) {
        // Counted, but the half-open probe slot stays with the tick's ping,
        // the one call whose outcome is reported (docs/cluster.md).
        st.breaker.note_rejected();
        observe_breaker(self);
        return caf::make_error(caf::sec::runtime_error,
                               "breaker of peer " + st.addr.name + " is "
                                 + std::string{runtime::to_string(state)});
      }
      auto rp = self->make_response_promise<remote_partial>();
      self
        ->request(st.remote, st.cluster().request_timeout, partial_atom::value,
                  std::move(q))
        .then(
          [self, rp](remote_partial& p) mutable {
            with_breaker(self,
                         [](auto& b) { b.on_success(clock_type::now()); });
            rp.deliver(std::move(p));
          },
          [self, rp](caf::error& err) mutable {
            with_breaker(self,
                         [](auto& b) { b.on_failure(clock_type::now()); });
            rp.deliver(std::move(err));
          });
      return rp;
    },
    [self](cluster_atom) -> std::string { return describe(self).dump(); },
    [self](hinted_atom, uint64_t seq, bool ok, std::string& err) {
      auto& st = self->state;
      if (ok) {
        st.hints.mark_durable(seq);
        settle_hints(self);
        pop_delivered(self);
        return;
      }
      spdlog::error("hint {} for peer {} not durable: {}", seq, st.addr.name,
                    err);
      if (auto e = st.hints.drop(seq)) {
        add_hint_bytes(self, -static_cast<int64_t>(e->bytes));
        publish_pending(self);
      }
      if (auto i = st.hint_promises.find(seq); i != st.hint_promises.end()) {
        i->second.deliver(caf::make_error(
          caf::sec::runtime_error, "unavailable: hint write failed: " + err));
        st.hint_promises.erase(i);
      }
    },
    // From the node actor: tell the peer our pending-hint partitions now.
    [self](pending_atom, bool) -> caf::result<bool> {
      auto rp = self->make_response_promise<bool>();
      announce_to_peer(self, [rp]() mutable { rp.deliver(true); });
      return rp;
    },
    [self](tick_atom) {
      auto& st = self->state;
      auto now = clock_type::now();
      observe_breaker(self);
      if (!st.remote && !st.connecting && now >= st.next_connect)
        try_connect(self);
      auto half_open = st.remote && !st.probing
                       && st.breaker.state(now)
                            == runtime::breaker_state::half_open;
      auto check_ready = st.remote && !st.probing && !st.checking_ready
                         && ((!st.peer_ready && now >= st.next_ready_check)
                             || now >= st.next_map_check);
      if (check_ready && now >= st.next_map_check)
        st.next_map_check = now + 1s;
      if (half_open || check_ready) {
        // A ping to the peer's node actor: the single half-open probe (only
        // the code that reports a probe's outcome takes the slot), and the
        // readiness check: hints go out only once the owner is `ready`.
        bool probe = half_open && st.breaker.allow(now);
        if (probe) {
          st.probing = true;
          spdlog::info("breaker of peer {}: probing", st.addr.name);
        }
        st.checking_ready = true;
        self
          ->request(st.remote, st.cluster().request_timeout,
                    request_atom::value, std::string{R"({"cmd":"ping"})"})
          .then(
            [self, probe](std::string& text) {
              auto& st = self->state;
              st.checking_ready = false;
              auto reply = json::parse(text, nullptr, false);
              auto status = reply.is_object()
                              ? reply.value("status", std::string{})
                              : std::string{};
              if (probe) {
                st.probing = false;
                with_breaker(self,
                             [](auto& b) { b.on_success(clock_type::now()); });
              }
              if (reply.is_object())
                sync_map(self, reply);
              if (status == "ready") {
                if (!st.peer_ready)
                  spdlog::info("peer {} is ready; {} hints to deliver",
                               st.addr.name, st.hints.size());
                st.peer_ready = true;
              } else {
                st.next_ready_check = clock_type::now() + 200ms;
              }
              drain_hints(self);
              pump(self);
            },
            [self, probe](caf::error&) {
              auto& st = self->state;
              st.checking_ready = false;
              st.next_ready_check = clock_type::now() + 500ms;
              if (probe) {
                st.probing = false;
                with_breaker(self,
                             [](auto& b) { b.on_failure(clock_type::now()); });
              }
            });
      }
      // The node's pending-hint set changed since this peer last heard it
      // (a shrink after a drain, or a new connection): tell it.
      if (st.remote && !st.announcing && st.cluster().pending
          && st.cluster().pending->local_union().second
               != st.announced_version)
        announce_to_peer(self, nullptr);
      drain_hints(self);
      pump(self);
      self->delayed_send(self, tick_interval, tick_atom::value);
    },
  };
}

} // namespace

std::deque<stored_hint> load_hints(const settings_ptr& settings,
                                   uint32_t index) {
  std::deque<stored_hint> out;
  auto& store = settings->cluster.hints;
  if (!store)
    return out;
  store->scan(index, 0, [&](uint64_t seq, std::string_view bytes) {
    stored_hint h;
    h.seq = seq;
    if (!cqrs::decode_hint(bytes, h.record)) {
      spdlog::error("hint {} of peer {} is corrupt; skipped", seq, index);
      return true;
    }
    out.push_back(std::move(h));
    return true;
  });
  return out;
}

caf::actor spawn_peer_link(caf::actor_system& sys, settings_ptr settings,
                           uint32_t index, std::deque<stored_hint> hints) {
  return sys.spawn(link_impl, std::move(settings), index, std::move(hints));
}

} // namespace cairn::actors
