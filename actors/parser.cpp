#include "actors/parser.hpp"

#include "actors/access_guard.hpp"
#include "actors/introspection.hpp"
#include "actors/messages.hpp"
#include "actors/reply.hpp"
#include "cqrs/event_parser.hpp"
#include "cqrs/influx_parser.hpp"
#include "cqrs/protocol_op.hpp"
#include "promwire/remote_write.hpp"
#include "runtime/log.hpp"
#include "runtime/pool_sizer.hpp"

#include <caf/actor_pool.hpp>
#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <unordered_map>

#include <memory>
#include <optional>

namespace cairn::actors {

namespace {

using nlohmann::json;

/// The processing state of one chunk.
struct chunk_job {
  runtime::chunk c;
  size_t pos = 0;
  uint64_t line = 0;
  cqrs::millis now = 0;
  std::chrono::steady_clock::time_point received;
  /// Reply texts in line order; async replies own a reserved slot.
  std::vector<std::string> slots{1};
  size_t outstanding = 0;
  bool paused = false;
  cqrs::event_batch pending;
  // -- authentication and rate limits (actors/access_guard.hpp) --------------
  /// Who the chunk's lines act as (null: the node has no access policy).
  std::shared_ptr<const runtime::auth::principal> who;
  /// The chunk passed the connection check and its events were charged.
  bool gated = false;
  /// > 0: the rate limit refused the chunk's events; retry after (ms).
  int64_t refused_ms = 0;
  bool refusal_reported = false;
  /// The request line at `pos` already waited for its rate limit.
  bool request_charged = false;
  /// Nothing more of the chunk is handled (an unauthenticated client).
  bool stopped = false;
  /// Held while the job lives (a parser retires once none does).
  std::shared_ptr<char> alive;

  size_t reserve_slot() {
    slots.emplace_back();
    auto index = slots.size() - 1;
    slots.emplace_back();
    return index;
  }

  void emit(std::string text) {
    auto& s = slots.back();
    s += text;
    s += '\n';
  }
};

using job_ptr = std::shared_ptr<chunk_job>;

struct parser_state {
  settings_ptr settings;
  caf::actor ingestor;
  caf::actor coordinator;
  caf::actor live;  ///< the live hub (may be null)
  caf::actor alerts;  ///< the alert manager (may be null)
  caf::actor sagas;   ///< the saga coordinator (null on a single node)
  std::optional<cqrs::event_parser> parser;
  std::optional<cqrs::influx_parser> influx;
  std::vector<cqrs::event_batch> split;
  std::atomic<int64_t>* accepted = nullptr;
  std::atomic<int64_t>* rejected = nullptr;
  std::atomic<int64_t>* requests = nullptr;
  runtime::latency_histogram* ack_latency = nullptr;
  /// Line-protocol lines / fields and remote_write samples not stored.
  std::atomic<int64_t>* influx_rejected = nullptr;
  std::atomic<int64_t>* remote_write_rejected = nullptr;
  /// Jobs waiting for their rate limit, by ticket (resume_atom).
  std::unordered_map<uint64_t, job_ptr> waiting;
  uint64_t next_ticket = 0;
  /// CPU ns send_events counted as `split` so far: process() leaves it out
  /// of `parse` (runtime/ingest_costs.hpp).
  int64_t split_ns = 0;
  /// Copied into every job: use_count() == 1 when no job is alive.
  std::shared_ptr<char> jobs = std::make_shared<char>(0);
  static inline const char* name = "cairn.parser";
};

using parser_pointer = introspectable_actor<parser_state>*;

void process(parser_pointer self, const job_ptr& j);

void complete(const job_ptr& j) {
  std::string text;
  size_t total = 0;
  for (auto& s : j->slots)
    total += s.size();
  text.reserve(total);
  for (auto& s : j->slots)
    text += s;
  j->c.conn->complete(j->c.seq, std::move(text));
}

/// Called whenever an asynchronous step of `j` finished.
void resume(parser_pointer self, const job_ptr& j) {
  if (--j->outstanding != 0)
    return;
  if (j->paused) {
    j->paused = false;
    process(self, j);
  } else if (j->pos >= j->c.data.size()) {
    complete(j);
  }
}

/// Sends `batch` to the ingestor; `done(applied)` or `failed(error)` runs
/// when the ingestor answers.
template <class OnDone, class OnFail>
void send_events(parser_pointer self, cqrs::event_batch& batch,
                 std::string key, OnDone done, OnFail failed) {
  auto& st = self->state;
  auto* costs = st.settings->costs.get();
  auto start = costs ? runtime::thread_cpu_ns() : 0;
  auto events = batch.size();
  std::vector<cqrs::event_batch> by_partition;
  cqrs::split_by_partition(batch, st.settings->partitions, by_partition);
  batch.clear();
  auto handle = self->request(st.ingestor, st.settings->ingest_timeout,
                              ingest_atom::value, std::move(by_partition),
                              std::move(key));
  if (costs) {
    auto ns = runtime::thread_cpu_ns() - start;
    costs->add(runtime::ingest_stage::split, ns, events);
    st.split_ns += ns;
  }
  // CAF 0.17 keeps a request's timeout entry in the actor clock until it
  // expires, answered or not; cancel it on the answer, or a fast fill holds
  // a minute of them (docs/architecture.md, "Ingest path").
  auto id = handle.id();
  handle.then(
    [self, id, done = std::move(done)](uint64_t applied) mutable {
      self->clock().cancel_request_timeout(self, id);
      done(applied);
    },
    std::move(failed));
}

/// Dispatches the fire-and-forget events gathered so far.
void dispatch_pending(parser_pointer self, const job_ptr& j) {
  if (j->pending.empty())
    return;
  auto n = static_cast<uint64_t>(j->pending.size());
  auto slot = j->reserve_slot();
  ++j->outstanding;
  send_events(
    self, j->pending, std::string{},
    [self, j, n](uint64_t) {
      j->c.conn->accepted.fetch_add(n);
      self->state.accepted->fetch_add(static_cast<int64_t>(n));
      resume(self, j);
    },
    [self, j, n, slot](caf::error& err) {
      j->c.conn->rejected.fetch_add(n);
      self->state.rejected->fetch_add(static_cast<int64_t>(n));
      spdlog::warn("{} events not acknowledged: {}", n, to_string(err));
      if (!j->c.replies)
        return resume(self, j); // logged above; the client reads nothing
      j->slots[slot] = error_reply(no_id(), ack_error_code(err),
                                   std::to_string(n)
                                     + " events were not acknowledged: "
                                     + to_string(err))
                       + '\n';
      resume(self, j);
    });
}

/// The cardinality guard (cqrs/series_registry.hpp, docs/protocol.md
/// `too_many_series`): false if the event of series `hash` would create a
/// series on this node past cairn.limits.max-series. Events for partitions
/// of other nodes are left to their owner. Logs at most once a minute.
bool admitted(parser_pointer self, uint64_t hash, cqrs::millis now) {
  auto& st = self->state;
  auto& reg = *st.settings->series_registry;
  if (reg.limit() == 0 || reg.size() < reg.limit())
    return true;
  if (!st.settings->cluster.local(
        cqrs::partition_of(hash, st.settings->partitions))
      || reg.admits(hash))
    return true;
  reg.rejected.fetch_add(1, std::memory_order_relaxed);
  if (reg.should_log(now))
    spdlog::warn("series limit reached: {} series on this node "
                 "(cairn.limits.max-series = {}); events that would create "
                 "a new series are rejected with too_many_series ({} so far)",
                 reg.size(), reg.limit(), reg.rejected.load());
  return false;
}

cqrs::problem too_many_series(parser_pointer self) {
  auto& reg = *self->state.settings->series_registry;
  return {cqrs::error_code::too_many_series,
          "the event would create a new series, and this node already holds "
            + std::to_string(reg.size()) + " series (cairn.limits.max-series = "
            + std::to_string(reg.limit())
            + "); events of existing series are still accepted"};
}

json request_id(const json& req) {
  if (req.is_object())
    if (auto i = req.find("id"); i != req.end())
      return *i;
  return no_id();
}

/// Pauses `j` for `delay` (its rate limit): nothing of the connection is
/// read meanwhile once its window is full (docs/protocol.md, "Rate
/// limits"); resume() goes on where it stopped.
void wait_for_rate(parser_pointer self, const job_ptr& j,
                   std::chrono::milliseconds delay) {
  auto& st = self->state;
  auto ticket = st.next_ticket++;
  st.waiting.emplace(ticket, j);
  j->paused = true;
  ++j->outstanding;
  self->delayed_send(self, delay, resume_atom::value, ticket);
}

/// An unauthenticated client on a node that requires a token: one
/// `unauthorized` line, nothing more of the chunk, and the connection closes
/// once its replies are written.
void refuse_unauthenticated(parser_pointer self, const job_ptr& j,
                            const json& id, std::optional<uint64_t> line,
                            const std::string& message) {
  auto& access = *self->state.settings->access;
  access.unauthorized.fetch_add(1, std::memory_order_relaxed);
  auto reply = line ? line_error_reply(*line, {cqrs::error_code::unauthorized, message})
                    : error_reply(id, cqrs::error_code::unauthorized, message);
  j->emit(reply);
  j->c.conn->request_close();
  j->stopped = true;
}

/// The connection check of a chunk, once, before its first line: the
/// principal (the connection's, else anonymous), a token that expired
/// since it was presented, and the events' rate. Returns false if the job
/// must not go on now (it waits, or it is finished).
bool gate(parser_pointer self, const job_ptr& j) {
  j->gated = true;
  auto* access = self->state.settings->access.get();
  if (!access)
    return true;
  auto& conn = *j->c.conn;
  if (conn.close_requested()) {
    j->stopped = true;
    return true;
  }
  auto who = conn.principal();
  if (!who) {
    who = access->anonymous(conn.peer());
    conn.set_principal(who);
  }
  j->who = who;
  if (!access->still_valid(*who, j->now)) {
    refuse_unauthenticated(self, j, no_id(), j->c.first_line,
                           "the token expired; authenticate again");
    return true;
  }
  if (j->c.format == runtime::chunk_format::remote_write)
    return true; // its samples are counted once decoded
  // Events by lines (a barrier chunk holds a request); one take per chunk.
  auto lines = static_cast<uint64_t>(
    std::count(j->c.data.begin(), j->c.data.end(), '\n'));
  if (j->c.barrier && lines > 0)
    --lines;
  if (lines == 0)
    return true;
  auto d = access->rates().take(*who, runtime::rate_kind::events, lines,
                                runtime::rate_limiter::clock::now(), true);
  if (!d.admitted) {
    j->refused_ms = d.retry_after.count();
  } else if (d.delay.count() > 0) {
    wait_for_rate(self, j, d.delay);
    return false;
  }
  return true;
}

/// An event line of a chunk the rate limit refused: counted as rejected,
/// one `rate_limited` line per chunk.
void refuse_event(parser_pointer self, const job_ptr& j, uint64_t line_no) {
  j->c.conn->rejected.fetch_add(1);
  self->state.rejected->fetch_add(1);
  if (j->refusal_reported || !j->c.replies)
    return;
  j->refusal_reported = true;
  j->emit(rate_limited_reply(
    no_id(), line_no, j->refused_ms,
    "events past the rate limit of " + j->who->key()
      + ": this line and the chunk's later events were not stored"));
}

/// An event line of a principal without scope ingest: `unauthorized`
/// (and the connection closes) if the node requires a token and none was
/// presented, else `forbidden` for the line.
void refuse_unscoped_event(parser_pointer self, const job_ptr& j,
                           uint64_t line_no) {
  j->c.conn->rejected.fetch_add(1);
  self->state.rejected->fetch_add(1);
  auto& access = *self->state.settings->access;
  if (access.required() && !j->who->authenticated)
    return refuse_unauthenticated(
      self, j, no_id(), line_no,
      "authenticate first: {\"op\":\"auth\",\"token\":...}");
  access.forbidden.fetch_add(1, std::memory_order_relaxed);
  j->emit(line_error_reply(
    line_no, {cqrs::error_code::forbidden,
              forbidden_message("an event", static_cast<runtime::auth::scope_set>(
                                               runtime::auth::scope::ingest),
                                j->who->scopes)}));
}

enum class admission : uint8_t { handle, answered, wait };

/// The access check of a request line: authentication, scope and the
/// requests' rate: handle it, or it was answered (refused), or it must wait
/// (the job is paused and the line handled again later).
admission admit_request(parser_pointer self, const job_ptr& j,
                   std::optional<cqrs::protocol_op> op, std::string_view line) {
  auto* access = self->state.settings->access.get();
  // auth, and ping (a liveness probe that shows nothing private), need no
  // token.
  if (!access || !j->who
      || (op && (*op == cqrs::protocol_op::auth || *op == cqrs::protocol_op::ping)))
    return admission::handle;
  const auto& who = *j->who;
  if (access->required() && !who.authenticated) {
    refuse_unauthenticated(self, j, request_id(json::parse(line, nullptr, false)),
                           std::nullopt,
                           "authenticate first: {\"op\":\"auth\",\"token\":...}");
    return admission::answered;
  }
  auto needed = op ? required_scopes(*op) : runtime::auth::scope_set{0};
  if (needed != 0 && (who.scopes & needed) == 0) {
    access->forbidden.fetch_add(1, std::memory_order_relaxed);
    j->emit(error_reply(request_id(json::parse(line, nullptr, false)),
                        cqrs::error_code::forbidden,
                        forbidden_message(to_string(*op), needed, who.scopes)));
    return admission::answered;
  }
  if (j->request_charged || j->c.conn->charged_upstream) {
    j->request_charged = false;
    return admission::handle;
  }
  auto d = access->rates().take(who, runtime::rate_kind::requests, 1,
                                runtime::rate_limiter::clock::now(), true);
  if (!d.admitted) {
    j->emit(rate_limited_reply(request_id(json::parse(line, nullptr, false)),
                               std::nullopt, d.retry_after.count(),
                               "requests past the rate limit of " + who.key()));
    return admission::answered;
  }
  if (d.delay.count() > 0) {
    j->request_charged = true;
    wait_for_rate(self, j, d.delay);
    return admission::wait;
  }
  return admission::handle;
}

/// Handles {"op":"auth","token":".."}: verifies the token and makes its
/// principal the connection's. A refused token on a node that requires one
/// closes the connection; elsewhere the connection stays anonymous.
void handle_auth(parser_pointer self, const job_ptr& j, std::string_view line) {
  auto* access = self->state.settings->access.get();
  auto req = json::parse(line, nullptr, false);
  auto id = request_id(req);
  auto token = auth_token(req);
  auto& conn = *j->c.conn;
  if (!access || !access->verifies()) {
    auto out = auth_reply(runtime::auth::principal{}, false);
    j->emit(finish_reply(out, id));
    return;
  }
  auto refuse = [&](const std::string& message) {
    runtime::log_limited(spdlog::level::warn, "auth:refused", std::chrono::seconds{10},
                         fmt::format("auth: connection {} ({}) refused: {}",
                                     conn.id(), conn.peer(), message));
    if (access->required() && !(j->who && j->who->authenticated))
      return refuse_unauthenticated(self, j, id, std::nullopt, message);
    access->unauthorized.fetch_add(1, std::memory_order_relaxed);
    j->emit(error_reply(id, cqrs::error_code::unauthorized, message));
  };
  if (!token)
    return refuse("auth needs \"token\": a JWT string");
  auto r = access->authenticate(*token, conn.peer());
  if (auto* no = std::get_if<runtime::auth::jwt_refusal>(&r))
    return refuse(no->message);
  auto who = std::get<std::shared_ptr<const runtime::auth::principal>>(std::move(r));
  conn.set_principal(who);
  j->who = who;
  auto out = auth_reply(*who, true);
  j->emit(finish_reply(out, id));
}

/// Handles {"op":"ingest",...}: validates every event, sends the accepted
/// ones as one request and answers after they are acknowledged.
void handle_ingest(parser_pointer self, const job_ptr& j,
                   std::string_view line) {
  auto& st = self->state;
  // simdjson walks the request once; no DOM, no re-serialization per event.
  cqrs::event_batch batch;
  auto r = st.parser->parse_ingest(line, j->now, batch);
  // Cost budget: the CPU is process()'s `parse` timer's, the events these.
  if (auto* costs = st.settings->costs.get())
    costs->add(runtime::ingest_stage::parse, 0, r.total);
  json id = no_id();
  if (!r.id.empty())
    id = json::parse(r.id, nullptr, false);
  if (!r.ok) {
    j->emit(error_reply(id, r.error.code, r.error.message));
    return;
  }
  // The events' rate: an ingest request is one take for all its events,
  // refused whole (the request's rate was taken in admit_request).
  if (auto* access = st.settings->access.get(); access && j->who && !batch.empty()) {
    auto d = access->rates().take(*j->who, runtime::rate_kind::events,
                                  static_cast<uint64_t>(batch.size()),
                                  runtime::rate_limiter::clock::now(), false);
    if (!d.admitted) {
      st.rejected->fetch_add(static_cast<int64_t>(batch.size()));
      j->emit(rate_limited_reply(id, std::nullopt, d.retry_after.count(),
                                 "events past the rate limit of " + j->who->key()
                                   + ": none of the request's events were stored"));
      return;
    }
  }
  auto key = std::move(r.idempotency_key);
  // The cardinality guard rejects events one by one like validation does:
  // entries are the request's events minus r.rejected, in order.
  auto& reg = *st.settings->series_registry;
  if (reg.limit() != 0 && reg.size() >= reg.limit()) {
    size_t index = 0;
    size_t next_rejected = 0;
    size_t kept = 0;
    std::vector<std::pair<size_t, cqrs::problem>> guarded;
    for (auto& e : batch.entries) {
      while (next_rejected < r.rejected.size()
             && r.rejected[next_rejected].first == index) {
        ++next_rejected;
        ++index;
      }
      if (admitted(self, e.hash, j->now))
        batch.entries[kept++] = e;
      else
        guarded.emplace_back(index, too_many_series(self));
      ++index;
    }
    batch.entries.resize(kept);
    if (!guarded.empty()) {
      r.rejected.insert(r.rejected.end(), guarded.begin(), guarded.end());
      std::sort(r.rejected.begin(), r.rejected.end(),
                [](auto& x, auto& y) { return x.first < y.first; });
    }
  }
  auto errors = json::array();
  for (auto& [index, p] : r.rejected)
    errors.push_back({{"index", index},
                      {"code", std::string{to_string(p.code)}},
                      {"message", p.message}});
  auto accepted = static_cast<uint64_t>(batch.size());
  auto rejected = static_cast<uint64_t>(errors.size());
  st.rejected->fetch_add(static_cast<int64_t>(rejected));
  auto reply = [id, accepted, rejected, errors, key](uint64_t applied) {
    json out;
    out["ok"] = true;
    out["accepted"] = accepted;
    out["rejected"] = rejected;
    out["errors"] = errors;
    if (!key.empty() && applied < accepted)
      out["duplicate"] = true;
    return finish_reply(out, id);
  };
  if (batch.empty()) {
    j->emit(reply(0));
    return;
  }
  auto slot = j->reserve_slot();
  ++j->outstanding;
  send_events(
    self, batch, key,
    [self, j, slot, reply, accepted](uint64_t applied) {
      self->state.accepted->fetch_add(static_cast<int64_t>(accepted));
      self->state.ack_latency->observe(std::chrono::steady_clock::now()
                                       - j->received);
      j->slots[slot] = reply(applied) + '\n';
      resume(self, j);
    },
    [self, j, slot, id](caf::error& err) {
      j->slots[slot] = error_reply(id, ack_error_code(err),
                                   "events were not acknowledged: "
                                     + to_string(err))
                       + '\n';
      resume(self, j);
    });
}

} // namespace

request_route route_request(std::string_view op, node_status status) noexcept {
  if (op.empty())
    return request_route::bad_request;
  auto known = cqrs::from_string(op);
  if (!known)
    return request_route::unknown_op;
  switch (*known) {
    case cqrs::protocol_op::ping:
      return request_route::ping;
    case cqrs::protocol_op::flush:
      return request_route::flush;
    case cqrs::protocol_op::ingest:
      return status == node_status::ready ? request_route::ingest
                                          : request_route::unavailable;
    case cqrs::protocol_op::stats:
    case cqrs::protocol_op::cluster:
      // Answered while recovering too: they report the recovery.
      return request_route::coordinator;
    case cqrs::protocol_op::subscribe:
      return status == node_status::ready ? request_route::live
                                          : request_route::unavailable;
    case cqrs::protocol_op::unsubscribe:
      return request_route::live;
    case cqrs::protocol_op::alert_create:
    case cqrs::protocol_op::alert_update:
    case cqrs::protocol_op::alert_delete:
    case cqrs::protocol_op::alert_list:
    case cqrs::protocol_op::alert_get:
    case cqrs::protocol_op::alert_history:
      // Rules live in their own store: answered while recovering too.
      return request_route::alerts;
    case cqrs::protocol_op::saga_list:
    case cqrs::protocol_op::saga_get:
    case cqrs::protocol_op::saga_move:
    case cqrs::protocol_op::saga_decommission:
    case cqrs::protocol_op::saga_rebalance:
    case cqrs::protocol_op::saga_join:
    case cqrs::protocol_op::saga_evict:
    case cqrs::protocol_op::saga_abort:
      // The saga log is its own store: answered while recovering too.
      return request_route::sagas;
    default:
      return status == node_status::ready ? request_route::coordinator
                                          : request_route::unavailable;
  }
}

namespace {

/// Sends request `line` to `to` (with `atom`) and puts its reply line, or a
/// timeout error naming why, into a slot of `j` reserved now.
template <class Atom>
void forward_request(parser_pointer self, const job_ptr& j, const json& id,
                     const caf::actor& to, std::chrono::milliseconds timeout,
                     Atom atom,
                     std::string_view line) {
  auto slot = j->reserve_slot();
  ++j->outstanding;
  self->request(to, timeout, atom, std::string{line})
    .then(
      [self, j, slot](std::string& reply) {
        j->slots[slot] = std::move(reply);
        j->slots[slot] += '\n';
        resume(self, j);
      },
      [self, j, slot, id](caf::error& err) {
        j->slots[slot] = error_reply(id, cqrs::error_code::timeout,
                                     "request failed: " + to_string(err))
                         + '\n';
        resume(self, j);
      });
}

/// Handles a request line. Returns false if the job must pause first (a
/// barrier with work still in flight); the line is then handled again.
///
/// The node status is read once, and the route follows from that one value:
/// reading it twice once let a request that saw `recovering` on the first
/// read and `ready` on the second fall through every branch into
/// `unknown_op` (a valid ingest answered "unknown op 'ingest'" around the
/// recovering -> ready switch).
bool handle_request(parser_pointer self, const job_ptr& j,
                    std::string_view line, const std::string& op) {
  auto& st = self->state;
  auto parsed = cqrs::from_string(op);
  if (parsed && cqrs::is_barrier(*parsed)) {
    dispatch_pending(self, j);
    if (j->outstanding > 0) {
      j->paused = true;
      return false;
    }
  }
  switch (admit_request(self, j, parsed, line)) {
    case admission::handle:
      break;
    case admission::answered:
      return true;
    case admission::wait:
      return false;
  }
  st.requests->fetch_add(1);
  if (parsed && *parsed == cqrs::protocol_op::auth) {
    handle_auth(self, j, line);
    return true;
  }
  auto status = st.settings->status.load();
  auto route = route_request(op, status);
  if (route == request_route::ingest) {
    handle_ingest(self, j, line);
    return true;
  }
  auto req = json::parse(line, nullptr, false);
  auto id = request_id(req);
  switch (route) {
    case request_route::ingest:
      break; // handled above
    case request_route::ping: {
      auto out = ping_reply(*st.settings, status);
      j->emit(finish_reply(out, id));
      break;
    }
    case request_route::flush: {
      json out{{"ok", true},
               {"accepted", j->c.conn->accepted.exchange(0)},
               {"rejected", j->c.conn->rejected.exchange(0)}};
      j->emit(finish_reply(out, id));
      break;
    }
    case request_route::unavailable:
      j->emit(error_reply(id, cqrs::error_code::unavailable,
                          std::string{"node is "} + to_string(status)));
      break;
    case request_route::coordinator:
      forward_request(self, j, id, st.coordinator,
                      st.settings->query_timeout * 2, query_atom::value, line);
      break;
    case request_route::alerts:
      if (!st.alerts) {
        j->emit(error_reply(id, cqrs::error_code::unavailable,
                            "alerting is disabled (cairn.alerts.enabled)"));
        break;
      }
      forward_request(self, j, id, st.alerts, st.settings->query_timeout,
                      alert_atom::value, line);
      break;
    case request_route::sagas:
      if (!st.sagas) {
        j->emit(error_reply(id, cqrs::error_code::unavailable,
                            "membership sagas need a cluster "
                            "(cairn.cluster.nodes)"));
        break;
      }
      forward_request(self, j, id, st.sagas, st.settings->query_timeout,
                      request_atom::value, line);
      break;
    case request_route::live: {
      // The answer (and every later message of the subscription) comes
      // through the connection's stream, not as this line's reply.
      auto sink = j->c.conn->stream();
      if (!sink) {
        j->emit(error_reply(id, cqrs::error_code::bad_request,
                            "subscribe needs a stream: a WebSocket of "
                            "/v1/live or an NDJSON connection"));
      } else if (!st.live) {
        j->emit(error_reply(id, cqrs::error_code::unavailable,
                            "live subscriptions are not running"));
      } else {
        caf::anon_send(st.live, request_atom::value, std::move(sink),
                       std::string{line});
      }
      break;
    }
    case request_route::bad_request:
      j->emit(error_reply(id, cqrs::error_code::bad_request,
                          "\"op\" must be a non-empty string"));
      break;
    case request_route::unknown_op:
      j->emit(error_reply(id, cqrs::error_code::unknown_op,
                          "unknown op '" + op + "' (known: "
                            + cqrs::known_ops() + ")"));
      break;
  }
  return true;
}

/// The events of `j->pending` from `first` on that the node cannot take
/// now (not ready, or the cardinality guard): removed, and the problem that
/// applies returned (nullopt if all stay).
std::optional<cqrs::problem> admit_tail(parser_pointer self, const job_ptr& j,
                                        size_t first, node_status status) {
  auto& entries = j->pending.entries;
  if (first >= entries.size())
    return std::nullopt;
  if (status != node_status::ready) {
    entries.resize(first);
    return cqrs::problem{cqrs::error_code::unavailable,
                         std::string{"node is "} + to_string(status)};
  }
  auto kept = first;
  for (auto i = first; i < entries.size(); ++i)
    if (admitted(self, entries[i].hash, j->now))
      entries[kept++] = entries[i];
  if (kept == entries.size())
    return std::nullopt;
  entries.resize(kept);
  return too_many_series(self);
}

/// A problem of line-protocol line `line_no`: a reply line for a client
/// that reads them (HTTP), else counted and logged rate-limited (the TCP
/// port, where InfluxDB too answers nothing).
void influx_problem(parser_pointer self, const job_ptr& j, uint64_t line_no,
                    const cqrs::problem& p) {
  auto& st = self->state;
  j->c.conn->rejected.fetch_add(1);
  st.rejected->fetch_add(1);
  st.influx_rejected->fetch_add(1);
  if (j->c.replies) {
    j->emit(line_error_reply(line_no, p));
    return;
  }
  runtime::log_limited(spdlog::level::warn, "influx:line",
                       std::chrono::seconds{10},
                       fmt::format("influx: connection {} ({}) line {}: {}: {}",
                                   j->c.conn->id(), j->c.conn->peer(), line_no,
                                   to_string(p.code), p.message));
}

/// A chunk of Influx line protocol: events only, batched and acknowledged
/// like NDJSON fire-and-forget events; a problem per malformed line or
/// unstored field (influx_problem).
void process_influx(parser_pointer self, const job_ptr& j) {
  auto& st = self->state;
  const auto& data = j->c.data;
  auto max_batch = st.settings->max_batch_events;
  auto precision = static_cast<cqrs::influx_precision>(j->c.precision);
  auto status = st.settings->status.load();
  if (j->stopped || j->refused_ms > 0) {
    // Past the rate limit: nothing of the chunk is stored.
    auto lines = static_cast<uint64_t>(std::count(data.begin(), data.end(), '\n'));
    j->c.conn->rejected.fetch_add(lines);
    st.rejected->fetch_add(static_cast<int64_t>(lines));
    if (j->refused_ms > 0 && j->c.replies)
      j->emit(rate_limited_reply(no_id(), j->c.first_line, j->refused_ms,
                                 "events past the rate limit of " + j->who->key()
                                   + ": the chunk's lines were not stored"));
    complete(j);
    return;
  }
  // Cost budget: as process() for NDJSON.
  runtime::stage_timer parse{st.settings->costs.get(),
                             runtime::ingest_stage::parse};
  auto split_before = st.split_ns;
  auto leave_out_split = [&] { parse.exclude(st.split_ns - split_before); };
  while (j->pos < data.size()) {
    auto nl = data.find('\n', j->pos);
    if (nl == std::string::npos)
      nl = data.size();
    std::string_view line{data.data() + j->pos, nl - j->pos};
    if (!line.empty() && line.back() == '\r')
      line.remove_suffix(1);
    auto line_no = j->c.first_line + j->line;
    auto before = j->pending.size();
    auto r = st.influx->parse_line(line, j->now, precision, j->pending);
    parse.count(1);
    for (auto& p : r.problems)
      influx_problem(self, j, line_no, p);
    if (auto p = admit_tail(self, j, before, status))
      influx_problem(self, j, line_no, *p);
    if (j->pending.size() >= max_batch)
      dispatch_pending(self, j);
    j->pos = nl + 1;
    ++j->line;
  }
  dispatch_pending(self, j);
  leave_out_split();
  if (j->outstanding == 0)
    complete(j);
}

/// A remote_write body (promwire): decoded, validated and acknowledged as
/// one batch. The reply is one summary line, {"ok":true,"accepted":A,
/// "rejected":R,"stale":S,"errors":[...]}, or {"ok":false,...} for a body
/// that cannot be decoded; the HTTP route turns it into a status.
void process_remote_write(parser_pointer self, const job_ptr& j) {
  auto& st = self->state;
  auto status = st.settings->status.load();
  auto r = promwire::decode_remote_write(j->c.data, j->now,
                                         st.settings->limits, j->pending);
  j->c.data.clear();
  j->c.data.shrink_to_fit();
  if (!r.ok) {
    st.remote_write_rejected->fetch_add(1);
    runtime::log_limited(spdlog::level::warn, "remote_write:body",
                         std::chrono::seconds{10},
                         "remote_write: request refused: " + r.error);
    j->emit(error_reply(no_id(), cqrs::error_code::bad_request, r.error));
    complete(j);
    return;
  }
  // The samples' rate (docs/protocol.md, "Rate limits"): one take for the
  // request, refused whole, so the sender retries it as it is (429).
  if (auto* access = st.settings->access.get(); access && j->who && !j->pending.empty()) {
    auto n = static_cast<uint64_t>(j->pending.size());
    auto d = access->rates().take(*j->who, runtime::rate_kind::events, n,
                                  runtime::rate_limiter::clock::now(), false);
    if (!d.admitted) {
      st.rejected->fetch_add(static_cast<int64_t>(n));
      st.remote_write_rejected->fetch_add(static_cast<int64_t>(n));
      j->pending.clear();
      j->emit(rate_limited_reply(no_id(), std::nullopt, d.retry_after.count(),
                                 "samples past the rate limit of " + j->who->key()
                                   + ": none of the request's " + std::to_string(n)
                                   + " samples were stored"));
      complete(j);
      return;
    }
  }
  auto errors = json::array();
  for (auto& p : r.problems)
    errors.push_back({{"code", std::string{to_string(p.code)}},
                      {"message", p.message}});
  auto before = j->pending.size();
  if (auto p = admit_tail(self, j, 0, status)) {
    r.rejected += before - j->pending.size();
    errors.push_back({{"code", std::string{to_string(p->code)}},
                      {"message", p->message}});
  }
  r.accepted = j->pending.size();
  st.rejected->fetch_add(static_cast<int64_t>(r.rejected));
  st.remote_write_rejected->fetch_add(static_cast<int64_t>(r.rejected));
  // Prometheus logs nothing for a 204: the node's log says what was lost.
  if (r.rejected > 0)
    runtime::log_limited(
      spdlog::level::warn, "remote_write:samples", std::chrono::seconds{10},
      fmt::format("remote_write: {} of {} samples not stored ({} stored); "
                  "first reason: {}",
                  r.rejected, r.samples, r.accepted,
                  errors.empty() ? std::string{"?"}
                                 : errors[0].value("message", std::string{})));
  json out{{"ok", true},
           {"accepted", r.accepted},
           {"rejected", r.rejected},
           {"stale", r.stale},
           {"errors", errors}};
  j->emit(out.dump(-1, ' ', false, json::error_handler_t::replace));
  dispatch_pending(self, j);
  if (j->outstanding == 0)
    complete(j);
}

void process(parser_pointer self, const job_ptr& j) {
  auto& st = self->state;
  // Line protocol and remote_write reach here from HTTP routes whose guard
  // checked the token and scope already (actors/http_access.hpp); the gate
  // still charges line protocol's events (remote_write's once decoded).
  if (!j->gated && !gate(self, j))
    return; // waits for its rate limit; resume() calls process again
  switch (j->c.format) {
    case runtime::chunk_format::ndjson:
      break;
    case runtime::chunk_format::influx:
      return process_influx(self, j);
    case runtime::chunk_format::remote_write:
      return process_remote_write(self, j);
  }
  const auto& data = j->c.data;
  auto max_batch = st.settings->max_batch_events;
  bool may_ingest = !j->who || j->who->has(runtime::auth::scope::ingest);
  // Cost budget: this loop is `parse`, but for the `split` of the batches
  // it dispatches (runtime/ingest_costs.hpp).
  runtime::stage_timer parse{st.settings->costs.get(),
                             runtime::ingest_stage::parse};
  auto split_before = st.split_ns;
  auto leave_out_split = [&] { parse.exclude(st.split_ns - split_before); };
  // One status for the whole chunk (see handle_request for why one read).
  auto status = st.settings->status.load();
  bool ready = status == node_status::ready;
  while (j->pos < data.size()) {
    auto nl = data.find('\n', j->pos);
    if (nl == std::string::npos)
      nl = data.size();
    std::string_view line{data.data() + j->pos, nl - j->pos};
    auto line_no = j->c.first_line + j->line;
    if (j->stopped)
      break;
    auto r = st.parser->parse_line(line, j->now, j->pending);
    switch (r.kind) {
      case cqrs::line_kind::event:
        parse.count(1);
        if (!may_ingest || j->refused_ms > 0) {
          j->pending.entries.pop_back();
          if (j->refused_ms > 0 && may_ingest)
            refuse_event(self, j, line_no);
          else
            refuse_unscoped_event(self, j, line_no);
        } else if (!ready) {
          j->pending.entries.pop_back();
          j->c.conn->rejected.fetch_add(1);
          st.rejected->fetch_add(1);
          j->emit(line_error_reply(
            line_no, {cqrs::error_code::unavailable,
                      std::string{"node is "} + to_string(status)}));
        } else if (!admitted(self, j->pending.entries.back().hash, j->now)) {
          j->pending.entries.pop_back();
          j->c.conn->rejected.fetch_add(1);
          st.rejected->fetch_add(1);
          j->emit(line_error_reply(line_no, too_many_series(self)));
        } else if (j->pending.size() >= max_batch) {
          dispatch_pending(self, j);
        }
        break;
      case cqrs::line_kind::error:
        parse.count(1);
        j->c.conn->rejected.fetch_add(1);
        st.rejected->fetch_add(1);
        j->emit(line_error_reply(line_no, r.error));
        break;
      case cqrs::line_kind::request:
        if (!handle_request(self, j, line, r.op)) {
          leave_out_split();
          return; // paused; resume() calls process again
        }
        // An auth line changes what the later lines may do.
        may_ingest = !j->who || j->who->has(runtime::auth::scope::ingest);
        break;
      case cqrs::line_kind::blank:
        break;
    }
    j->pos = nl + 1;
    ++j->line;
  }
  dispatch_pending(self, j);
  leave_out_split();
  if (j->outstanding == 0)
    complete(j);
}

caf::behavior parser_impl(parser_pointer self, settings_ptr s,
                          caf::actor ingestor, caf::actor coordinator,
                          caf::actor live, caf::actor alerts,
                          caf::actor sagas) {
  auto& st = self->state;
  st.settings = s;
  st.sagas = std::move(sagas);
  st.live = std::move(live);
  st.alerts = std::move(alerts);
  st.ingestor = std::move(ingestor);
  st.coordinator = std::move(coordinator);
  st.parser.emplace(s->limits);
  st.influx.emplace(s->limits);
  st.influx_rejected = &s->metrics->counter(
    "cairn_influx_rejected_total",
    "Line-protocol lines and fields not stored (TCP and HTTP)");
  st.remote_write_rejected = &s->metrics->counter(
    "cairn_remote_write_rejected_total",
    "remote_write samples not stored, and undecodable bodies");
  st.accepted = &s->metrics->counter("cairn_events_total",
                                     "Events received, by result",
                                     {{"result", "accepted"}});
  st.rejected = &s->metrics->counter("cairn_events_total",
                                     "Events received, by result",
                                     {{"result", "rejected"}});
  st.ack_latency = &s->metrics->histogram(
    "cairn_ack_latency_seconds",
    "From a chunk holding an ingest request reaching a parser to its "
    "acknowledgement (journaled when persistence is on)");
  self->track_mailbox(*s->metrics);
  st.requests = &s->metrics->counter("cairn_requests_total",
                                     "Requests (lines with an op) handled");
  // The pool's sizer reads the time spent on chunks (runtime/pool_sizer).
  auto timed = [s](auto&& work) {
    auto start = std::chrono::steady_clock::now();
    work();
    int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::steady_clock::now() - start)
                   .count();
    s->parser_busy_ns.fetch_add(ns, std::memory_order_relaxed);
  };
  return {
    [=](resume_atom, uint64_t ticket) {
      auto i = self->state.waiting.find(ticket);
      if (i == self->state.waiting.end())
        return;
      auto j = std::move(i->second);
      self->state.waiting.erase(i);
      timed([&] { resume(self, j); });
    },
    [=](runtime::chunk& c) {
      auto j = std::make_shared<chunk_job>();
      j->c = std::move(c);
      j->now = cqrs::wall_clock_now();
      j->received = std::chrono::steady_clock::now();
      j->alive = self->state.jobs;
      timed([&] { process(self, j); });
    },
    [=](retire_atom) {
      // Out of the pool, so nothing new arrives: the chunks queued before
      // this message are done; quit once their replies are in too.
      auto& st = self->state;
      if (st.waiting.empty() && st.jobs.use_count() == 1)
        self->quit();
      else
        self->delayed_send(self, std::chrono::milliseconds{20},
                           retire_atom::value);
    },
  };
}

// -- the pool's sizer ------------------------------------------------------------

using size_tick_atom = caf::atom_constant<caf::atom("sizetick")>;

/// How often the sizer samples the parsers' busy time.
constexpr auto size_interval = std::chrono::milliseconds{100};

struct sizer_state {
  settings_ptr settings;
  caf::actor pool;
  std::function<caf::actor()> make;
  /// The pool's workers, oldest first; the newest retires first.
  std::vector<caf::actor> workers;
  std::optional<runtime::pool_sizer> sizer;
  int64_t busy_before = 0;
  std::chrono::steady_clock::time_point sampled;
  std::atomic<int64_t>* gauge = nullptr;
  static inline const char* name = "cairn.parser_sizer";
};

caf::behavior sizer_impl(caf::stateful_actor<sizer_state>* self,
                         settings_ptr s, caf::actor pool,
                         std::function<caf::actor()> make,
                         std::vector<caf::actor> workers) {
  auto& st = self->state;
  st.settings = s;
  st.pool = pool;
  st.make = std::move(make);
  st.workers = std::move(workers);
  st.sizer.emplace(1, s->parsers_max);
  st.busy_before = s->parser_busy_ns.load(std::memory_order_relaxed);
  st.sampled = std::chrono::steady_clock::now();
  st.gauge = &s->metrics->gauge("cairn_parsers",
                                "Parser actors in the ingest pool now");
  st.gauge->store(static_cast<int64_t>(st.workers.size()));
  // The sizer ends with the pool (the node's shutdown stops the pool).
  self->monitor(pool);
  self->set_down_handler([self](caf::down_msg&) { self->quit(); });
  self->send(self, size_tick_atom::value);
  return {
    [self](size_tick_atom) {
      auto& st = self->state;
      auto now = std::chrono::steady_clock::now();
      auto busy = st.settings->parser_busy_ns.load(std::memory_order_relaxed);
      auto n = st.workers.size();
      auto want = st.sizer->sample(
        static_cast<double>(busy - st.busy_before) / 1e9,
        std::chrono::duration<double>(now - st.sampled).count(), n);
      st.busy_before = busy;
      st.sampled = now;
      if (want > n) {
        auto w = st.make();
        // The pool handles its sys messages while they are enqueued: the
        // worker is in (or out of) the pool once anon_send returns.
        caf::anon_send(st.pool, caf::sys_atom::value, caf::put_atom::value, w);
        st.workers.push_back(std::move(w));
      } else if (want < n) {
        auto w = std::move(st.workers.back());
        st.workers.pop_back();
        caf::anon_send(st.pool, caf::sys_atom::value, caf::delete_atom::value, w);
        caf::anon_send(w, retire_atom::value);
      }
      if (want != n) {
        st.settings->parser_resizes.fetch_add(1, std::memory_order_relaxed);
        spdlog::debug("parser pool: {} -> {} parsers", n, st.workers.size());
      }
      st.settings->parser_count.store(st.workers.size(), std::memory_order_relaxed);
      st.gauge->store(static_cast<int64_t>(st.workers.size()));
      self->delayed_send(self, size_interval, size_tick_atom::value);
    },
  };
}

} // namespace

caf::actor spawn_parser_pool(caf::actor_system& sys, settings_ptr settings,
                             caf::actor ingestor, caf::actor coordinator,
                             caf::actor live, caf::actor alerts,
                             caf::actor sagas) {
  auto make = [&sys, settings, ingestor, coordinator, live, alerts, sagas] {
    return sys.spawn(parser_impl, settings, ingestor, coordinator, live,
                     alerts, sagas);
  };
  // Workers are added one by one (the pool handles put while it is
  // enqueued), so a sized pool and a fixed one start the same way.
  auto pool = caf::actor_pool::make(sys.dummy_execution_unit(),
                                    caf::actor_pool::round_robin());
  std::vector<caf::actor> workers;
  for (size_t i = 0; i < settings->parsers; ++i) {
    workers.push_back(make());
    caf::anon_send(pool, caf::sys_atom::value, caf::put_atom::value,
                   workers.back());
  }
  settings->parser_count.store(workers.size());
  if (settings->parsers_auto)
    sys.spawn(sizer_impl, settings, pool, std::function<caf::actor()>{make},
              std::move(workers));
  return pool;
}

} // namespace cairn::actors
