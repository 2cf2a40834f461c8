#include "actors/query_coordinator.hpp"

#include "actors/introspection.hpp"
#include "actors/reply.hpp"
#include "cqrs/partial_codec.hpp"
#include "cqrs/series_key.hpp"
#include "runtime/journal.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/response_promise.hpp>
#include <caf/sec.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include <nlohmann/json.hpp>

#include <cmath>

#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <limits>
#include <optional>
#include <memory>

namespace cairn::actors {

namespace {

using nlohmann::json;

struct scatter_deadline;

struct coordinator_state {
  settings_ptr settings;
  /// Local scatters' deadlines in expiry order (see arm_deadline), and
  /// whether a delayed message for the first one is on its way.
  std::deque<std::pair<std::chrono::steady_clock::time_point,
                       std::weak_ptr<scatter_deadline>>>
    deadlines;
  bool deadline_armed = false;
  std::vector<partition_actor> partitions;
  /// Cluster: link to each member by map index (null for this node), as
  /// of member_table version `links_seen` (refreshed when a node joined).
  std::vector<caf::actor> links;
  uint64_t links_seen = 0;
  /// Partitions this node owns by the map of version `local_version` (all
  /// of them on a single node); see owned().
  std::vector<uint32_t> local;
  uint64_t local_version = 0;

  /// The partitions this node owns by the *current* map (docs/cluster.md,
  /// "Partition map": every node routes by its current map), recomputed
  /// when the version changed.
  const std::vector<uint32_t>& owned() {
    auto& c = settings->cluster;
    auto v = c.enabled ? c.map->version() : 1;
    if (v != local_version) {
      local.clear();
      for (uint32_t p = 0; p < partitions.size(); ++p)
        if (c.local(p))
          local.push_back(p);
      local_version = v;
    }
    return local;
  }
  /// cairn_query_latency_seconds by op, for the read ops.
  std::vector<std::pair<std::string, runtime::latency_histogram*>> latency;
  /// cairn_requests_total, counted here for direct reads (the parsers count
  /// the pipeline's).
  std::atomic<int64_t>* requests = nullptr;
  static inline const char* name = "cairn.query_coordinator";

  runtime::latency_histogram* latency_of(const std::string& op) const {
    for (auto& [name, h] : latency)
      if (name == op)
        return h;
    return nullptr;
  }

  /// Console introspection.
  void describe(nlohmann::json& out) const {
    out["partitions"] = partitions.size();
    out["query_timeout_ms"] = settings->query_timeout.count();
  }
};

using coordinator_pointer = introspectable_actor<coordinator_state>*;

/// A metric value for JSON: an integer when it is one.
json metric_json(double value) {
  if (value == std::floor(value) && std::abs(value) < 9e15)
    return static_cast<int64_t>(value);
  return value;
}

/// Where a scatter goes: local partitions (`local`), and, for a request
/// from a client, every other owner through its peer link (`remote`, the
/// request as the owners will re-parse it).
struct scatter_plan {
  std::vector<uint32_t> local;
  std::optional<remote_query> remote;
  /// For a client request in a cluster: who held unapplied hinted writes
  /// when the query started (docs/cluster.md, "The completeness invariant").
  std::shared_ptr<const hint_view::snapshot_type> pending;
  /// Non-empty: only these partitions (by id) are asked, local ones (the
  /// caller filters `local`) and remote ones alike.
  std::vector<bool> only;
  /// For a client request in a cluster: partitions whose writes before the
  /// given moment went with an evicted member and that the read's range
  /// may touch (see mark_lost).
  std::vector<std::pair<uint32_t, cqrs::millis>> lost;
};

/// Fills `plan.lost` for a client read over event times [from, to) at
/// `now`: every partition the map marked lost at L whose lost writes the
/// range may hold — they had event times before L + max-future, and
/// nothing older than now - the longest retention is kept anywhere
/// (docs/cluster.md, "Evicting a member that is gone"). Reads without a
/// range (series, metrics) pass the whole of time.
void mark_lost(const node_settings& s, scatter_plan& plan, cqrs::millis from,
               cqrs::millis to, cqrs::millis now) {
  if (!plan.remote || !s.cluster.enabled)
    return;
  auto map = s.cluster.map->current();
  auto kept_since =
    now - std::max(s.tiers.max_retention(), s.raw_retention);
  for (uint32_t p = 0; p < map->partitions(); ++p) {
    auto at = map->lost_at(p);
    if (at == 0 || !(plan.only.empty() || plan.only[p]))
      continue;
    auto lost_until = at + s.limits.max_future;
    if (from < lost_until && to > kept_since && lost_until > kept_since)
      plan.lost.emplace_back(p, at);
  }
}

constexpr auto whole_time = std::numeric_limits<cqrs::millis>::max();

/// Marks every partition some member holds unapplied writes for as missing,
/// naming the holders.
void apply_pending(const hint_view::snapshot_type& pending,
                   const hint_view& view, cqrs::coverage& cov) {
  for (uint32_t p = 0; p < pending.holders.size(); ++p) {
    auto& holders = pending.holders[p];
    if (holders.empty())
      continue;
    std::vector<std::string> names;
    for (auto m : holders)
      names.push_back(view.name(m));
    std::sort(names.begin(), names.end());
    cov.pending_hints.emplace_back(p, std::move(names));
    cov.missing_partitions.push_back(p);
  }
}

/// The deadline of one scatter's local requests. Kept alive by the
/// scatter's response handlers only: once every local partition answered it
/// is gone, and the coordinator's deadline queue skips it.
struct scatter_deadline {
  std::function<void()> fire;
};

using scatter_deadline_ptr = std::shared_ptr<scatter_deadline>;
using deadline_atom = caf::atom_constant<caf::atom("deadline")>;

/// Queues `d` to fire at now + query_timeout. One delayed message to the
/// coordinator serves the whole queue (every scatter has the same timeout,
/// so the queue is in expiry order): a delayed message per scatter woke
/// CAF's clock thread once per request.
void arm_deadline(coordinator_pointer self, const scatter_deadline_ptr& d) {
  auto& st = self->state;
  st.deadlines.emplace_back(
    std::chrono::steady_clock::now() + st.settings->query_timeout, d);
  if (st.deadline_armed)
    return;
  st.deadline_armed = true;
  self->delayed_send(self, st.settings->query_timeout, deadline_atom::value);
}

/// Fires the expired deadlines still waited for and re-arms for the next.
void sweep_deadlines(coordinator_pointer self) {
  auto& st = self->state;
  st.deadline_armed = false;
  auto now = std::chrono::steady_clock::now();
  while (!st.deadlines.empty()) {
    auto& [at, weak] = st.deadlines.front();
    if (weak.expired()) {
      st.deadlines.pop_front();
      continue;
    }
    if (at > now)
      break;
    auto d = weak.lock();
    st.deadlines.pop_front();
    if (d)
      d->fire();
  }
  // Drop answered ones behind the first waiting entry too (bounded memory
  // under a steady read load).
  if (st.deadlines.size() > 1024) {
    std::deque<std::pair<std::chrono::steady_clock::time_point,
                         std::weak_ptr<scatter_deadline>>> kept;
    for (auto& e : st.deadlines)
      if (!e.second.expired())
        kept.push_back(std::move(e));
    st.deadlines = std::move(kept);
  }
  if (st.deadlines.empty())
    return;
  st.deadline_armed = true;
  auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
                st.deadlines.front().first - now)
              + std::chrono::milliseconds{1};
  self->delayed_send(self, wait, deadline_atom::value);
}

/// Sends one partial request to the planned partitions (and owners) and
/// merges the answers. `done(merged, coverage)` runs once, after the last
/// answer or timeout; partitions that did not answer (a timeout, a peer
/// unreachable or behind an open breaker) are listed as missing.
template <class Partial, class... Ts>
void scatter(coordinator_pointer self, scatter_plan plan,
             std::function<void(Partial&&, cqrs::coverage&&)> done,
             Ts... xs) {
  struct gather {
    Partial merged;
    cqrs::coverage cov;
    size_t outstanding = 0;
    /// Local partitions not answered yet (by index into plan.local); the
    /// deadline lists them as missing and answers.
    std::vector<bool> waiting;
    size_t local_waiting = 0;
    bool expired = false;
  };
  auto& st = self->state;
  auto g = std::make_shared<gather>();
  if (plan.pending && !plan.pending->empty())
    apply_pending(*plan.pending, *st.settings->cluster.pending, g->cov);
  for (auto [p, at] : plan.lost) {
    g->cov.lost_partitions.emplace_back(p, at);
    g->cov.missing_partitions.push_back(p);
  }
  // Remote owners: one request per owner node.
  std::vector<std::vector<uint32_t>> by_owner;
  auto& cluster = st.settings->cluster;
  if (plan.remote && cluster.enabled) {
    cluster.members->refresh(st.links, st.links_seen);
    by_owner.resize(st.links.size());
    // Every partition not asked here goes to its owner by the current map;
    // one whose owner became this node after plan.local was taken (a map
    // change in between) is missing rather than asked of nobody.
    std::vector<bool> asked(st.partitions.size(), false);
    for (auto p : plan.local)
      asked[p] = true;
    for (uint32_t p = 0; p < st.partitions.size(); ++p) {
      if (asked[p] || !(plan.only.empty() || plan.only[p]))
        continue;
      auto owner = cluster.map->owner_index(p);
      if (owner == cluster.self_index || owner >= by_owner.size()
          || !st.links[owner])
        g->cov.missing_partitions.push_back(p);
      else
        by_owner[owner].push_back(p);
    }
    for (auto& ps : by_owner)
      if (!ps.empty())
        ++g->outstanding;
  }
  g->outstanding += plan.local.size();
  if (g->outstanding == 0) {
    auto& missing = g->cov.missing_partitions;
    std::sort(missing.begin(), missing.end());
    done(std::move(g->merged), std::move(g->cov));
    return;
  }
  auto finish = [g, done] {
    if (g->outstanding == 0)
      return;  // answered at the deadline already
    if (--g->outstanding == 0) {
      auto& missing = g->cov.missing_partitions;
      std::sort(missing.begin(), missing.end());
      missing.erase(std::unique(missing.begin(), missing.end()),
                    missing.end());
      done(std::move(g->merged), std::move(g->cov));
    }
  };
  for (uint32_t owner = 0; owner < by_owner.size(); ++owner) {
    if (by_owner[owner].empty())
      continue;
    auto q = *plan.remote;
    q.partitions = by_owner[owner];
    auto parts = by_owner[owner];
    self
      ->request(st.links[owner], cluster.request_timeout * 2,
                partial_atom::value, std::move(q))
      .then(
        [g, finish, parts](remote_partial& r) {
          Partial x;
          if (cqrs::decode_partial(r.bytes, x)) {
            g->merged.merge(std::move(x));
            for (auto p : r.missing)
              g->cov.missing_partitions.push_back(p);
          } else {
            for (auto p : parts)
              g->cov.missing_partitions.push_back(p);
          }
          finish();
        },
        [g, finish, parts](caf::error&) {
          for (auto p : parts)
            g->cov.missing_partitions.push_back(p);
          finish();
        });
  }
  // Local partitions: requests without a timeout of their own (each timed
  // request costs two events on CAF's clock thread, a wake-up of that
  // thread each, ~16 per scatter over 8 partitions) and one deadline for
  // all of them. A local partition always answers in the end (a dead one
  // at once, with an error), so no response handler is left behind; one
  // answering after the deadline is ignored.
  if (plan.local.empty())
    return;
  g->waiting.assign(plan.local.size(), true);
  g->local_waiting = plan.local.size();
  auto local = std::make_shared<std::vector<uint32_t>>(std::move(plan.local));
  auto answered = [g](size_t i) {
    if (g->expired || !g->waiting[i])
      return false;
    g->waiting[i] = false;
    --g->local_waiting;
    return true;
  };
  auto expire = std::make_shared<scatter_deadline>();
  for (size_t i = 0; i < local->size(); ++i) {
    auto p = (*local)[i];
    self->request(st.partitions[p], caf::infinite, xs...)
      .then(
        [g, finish, answered, i, expire](Partial& x) {
          if (!answered(i))
            return;
          g->merged.merge(std::move(x));
          finish();
        },
        [g, finish, answered, i, p, expire](caf::error&) {
          if (!answered(i))
            return;
          g->cov.missing_partitions.push_back(p);
          finish();
        });
  }
  expire->fire = [g, finish, local] {
    if (g->local_waiting == 0 || g->outstanding == 0)
      return;
    g->expired = true;
    // Every local partition still waited for counts as missing; remote
    // owners keep their own timeouts.
    for (size_t i = 0; i < local->size(); ++i)
      if (g->waiting[i]) {
        g->cov.missing_partitions.push_back((*local)[i]);
        g->waiting[i] = false;
        finish();
      }
    g->local_waiting = 0;
  };
  arm_deadline(self, expire);
}

/// Collects the membership view: this node plus every peer link's state.
void gather_cluster(coordinator_pointer self,
                    std::function<void(json&&)> done) {
  auto& st = self->state;
  auto& c = st.settings->cluster;
  struct gather {
    json members = json::array();
    size_t outstanding = 0;
  };
  auto g = std::make_shared<gather>();
  auto s = st.settings;
  auto finish = [g, done, s] {
    if (g->outstanding != 0)
      return;
    auto& c = s->cluster;
    json out;
    out["enabled"] = c.enabled;
    out["self"] = c.enabled ? c.self_name : s->node_name;
    std::sort(g->members.begin(), g->members.end(),
              [](const json& x, const json& y) {
                return x["name"].get<std::string>()
                       < y["name"].get<std::string>();
              });
    out["members"] = std::move(g->members);
    json map;
    map["version"] = c.enabled ? c.map->version() : 1;
    map["partitions"] = s->partitions;
    if (c.enabled) {
      // The current map (docs/cluster.md, "Partition map").
      auto m = c.map->current();
      map = cqrs::to_json(*m);
      json owned = json::object();
      for (uint32_t i = 0; i < m->nodes().size(); ++i)
        owned[m->nodes()[i]] = m->owned_by(i);
      map["owned"] = std::move(owned);
      out["left"] = map["left"];
    }
    out["partition_map"] = std::move(map);
    uint64_t up = 0;
    for (auto& m : out["members"])
      if (m.value("status", "") == "up")
        ++up;
    out["up"] = up;
    out["unreachable"] = out["members"].size() - up;
    done(std::move(out));
  };
  g->members.push_back(
    {{"name", c.enabled ? c.self_name : s->node_name},
     {"self", true},
     {"status", "up"},
     {"since", s->started_at},
     {"status_detail", to_string(s->status.load())}});
  if (!c.enabled) {
    finish();
    return;
  }
  c.members->refresh(st.links, st.links_seen);
  auto members = c.members->members();
  for (uint32_t i = 0; i < st.links.size() && i < members->size(); ++i) {
    if (!st.links[i])
      continue;
    ++g->outstanding;
    auto name = (*members)[i].name;
    self->request(st.links[i], std::chrono::seconds{2}, cluster_atom::value)
      .then(
        [g, finish](std::string& text) {
          g->members.push_back(json::parse(text, nullptr, false));
          --g->outstanding;
          finish();
        },
        [g, finish, name](caf::error& err) {
          g->members.push_back({{"name", name},
                                {"status", "unknown"},
                                {"error", to_string(err)}});
          --g->outstanding;
          finish();
        });
  }
}

void answer_stats(coordinator_pointer self, caf::response_promise rp,
                  json id) {
  struct gather {
    std::vector<partition_stats> parts;
    std::vector<uint32_t> missing;
    size_t outstanding = 0;
  };
  auto& st = self->state;
  auto g = std::make_shared<gather>();
  // One more than the partitions: the last finish() runs after the loop, so
  // a node that owns nothing (it left the cluster) answers too.
  g->outstanding = st.owned().size() + 1;
  auto s = st.settings;
  auto finish = [self, g, rp, id, s]() mutable {
    if (--g->outstanding != 0)
      return;
    std::sort(g->parts.begin(), g->parts.end(),
              [](auto& x, auto& y) { return x.id < y.id; });
    json out;
    out["ok"] = true;
    out["node"] = s->node_name;
    out["version"] = s->version;
    out["status"] = to_string(s->status.load());
    out["uptime_ms"] = cqrs::wall_clock_now() - s->started_at;
    if (s->gateway_stats)
      s->gateway_stats(out);
    uint64_t series = 0, buckets = 0, events = 0, replayed = 0;
    int64_t recovery_ms = 0;
    auto& parts = out["partitions"] = json::array();
    for (auto& p : g->parts) {
      series += p.series;
      buckets += p.buckets;
      events += p.events;
      replayed += p.replayed_events;
      recovery_ms = std::max(recovery_ms, p.recovery_ms);
      parts.push_back(partition_stats_json(p));
    }
    out["series"] = series;
    out["buckets"] = buckets;
    out["events_applied"] = events;
    out["parsers"] = {{"mode", s->parsers_auto ? "auto" : "fixed"},
                      {"count", s->parser_count.load()},
                      {"min", s->parsers_auto ? size_t{1} : s->parsers},
                      {"max", s->parsers_max},
                      {"resizes", s->parser_resizes.load()}};
    out["recovery"] = {{"replayed_events", replayed},
                       {"time_ms", s->recovery_ms.load()},
                       {"slowest_partition_ms", recovery_ms}};
    if (s->journal) {
      auto j = s->journal->stats();
      out["journal"] = {{"appends", j.appends},
                        {"appended_bytes", j.appended_bytes},
                        {"group_commits", j.batches},
                        {"fsyncs", j.fsyncs},
                        {"snapshots", j.snapshots},
                        {"snapshot_bytes", j.snapshot_bytes},
                        {"prunes", j.prunes},
                        {"pruned_keys", j.pruned_keys},
                        {"write_errors", j.write_errors}};
    }
    auto& counters = out["counters"] = json::object();
    for (auto& [name, value] : s->metrics->snapshot())
      counters[name] = metric_json(value);
    if (s->costs) {
      // The ingest cost budget (runtime/ingest_costs.hpp); the snapshot
      // above ran the hook that reads the I/O threads' clocks.
      auto& stages = out["ingest_stages"] = json::array();
      for (auto& t : s->costs->totals())
        stages.push_back({{"stage", runtime::to_string(t.stage)},
                          {"events", t.events},
                          {"cpu_ms", static_cast<double>(t.ns) / 1e6},
                          {"ns_per_event", t.ns_per_event()}});
    }
    out["events"] = {
      {"accepted",
       counters.value("cairn_events_total{result=\"accepted\"}", int64_t{0})},
      {"rejected",
       counters.value("cairn_events_total{result=\"rejected\"}", int64_t{0})}};
    // The latency histograms as count and estimated quantiles, for the
    // console and the overview page (docs/protocol.md, `stats`).
    auto& latency = out["latency"] = json::object();
    for (auto& [series, h] : s->metrics->histograms())
      latency[series] = {{"count", h->count()},
                         {"p50_ms", h->quantile(0.5) * 1e3},
                         {"p99_ms", h->quantile(0.99) * 1e3}};
    if (!g->missing.empty()) {
      out["partial"] = true;
      out["missing_partitions"] = g->missing;
    }
    if (s->cluster.enabled) {
      // Membership sagas as the saga coordinator last published them.
      auto sagas = json::parse(s->sagas.board->get(), nullptr, false);
      if (sagas.is_object())
        out["sagas"] = std::move(sagas);
    }
    gather_cluster(self, [out, rp, id](json&& cluster) mutable {
      out["cluster"] = std::move(cluster);
      rp.deliver(finish_reply(out, id));
    });
  };
  for (auto p : st.owned()) {
    self->request(st.partitions[p], st.settings->query_timeout,
                  stats_atom::value)
      .then(
        [g, finish](partition_stats& x) mutable {
          g->parts.push_back(x);
          finish();
        },
        [g, finish, p](caf::error&) mutable {
          g->missing.push_back(p);
          finish();
        });
  }
  finish();
}

/// Runs a read op over `plan` and hands the merged partial to `emit`, which
/// gets a type-erased visitor: emit(render_fn) where the caller either
/// renders (client request) or encodes (remote partial). Returns a problem
/// if the request does not parse.
struct read_sink {
  /// Client request: render the reply line.
  std::function<void(std::string)> reply;
  /// Remote partial: deliver the encoded partial.
  std::function<void(remote_partial)> partial;
  /// Direct read: the reply as an object (no text on the way).
  std::function<void(json)> object;
  /// Series op only: sees the merged partial before it is rendered.
  std::function<void(const cqrs::series_partial&, const cqrs::coverage&)>
    listed;
  /// Series op only: keys the node's series index listed for the
  /// partitions the scatter did not ask (merged into the answer).
  std::shared_ptr<std::vector<std::string>> indexed;
  json id;
};

template <class Partial>
void deliver_read(const read_sink& sink, Partial&& x, cqrs::coverage&& cov,
                  const std::function<void(const Partial&,
                                           const cqrs::coverage&, json&)>&
                    render) {
  if (sink.partial) {
    remote_partial out;
    cqrs::encode_partial(x, out.bytes);
    out.missing = std::move(cov.missing_partitions);
    sink.partial(std::move(out));
    return;
  }
  json out;
  render(x, cov, out);
  if (sink.object)
    return sink.object(std::move(out));
  sink.reply(finish_reply(out, sink.id));
}

/// Scatters query `q` and renders (or encodes) the merged partial. With
/// q->finals, partitions finalise the groups they hold whole; when two
/// partials turn out to share a final-form group (series of one group with
/// different tag sets in several partitions), the merged answer would not
/// be exact and the query runs once more with sketches for every group
/// (docs/protocol.md, "query").
void run_query(coordinator_pointer self, scatter_plan plan,
               std::shared_ptr<const cqrs::query_spec> q, read_sink sink) {
  auto s = self->state.settings;
  auto again = q->finals ? std::optional<scatter_plan>{plan} : std::nullopt;
  scatter<cqrs::query_partial>(
      self, std::move(plan),
      [self, sink, q, s, again](cqrs::query_partial&& x,
                                cqrs::coverage&& cov) mutable {
        if (x.collided && again) {
          auto sketches = std::make_shared<cqrs::query_spec>(*q);
          sketches->finals = false;
          run_query(self, std::move(*again), std::move(sketches),
                    std::move(sink));
          return;
        }
        if (!sink.partial && !sink.object) {
          // The hot read path: write the reply text directly.
          std::string text;
          cqrs::render_query_text(*q, x, s->tiers, s->mapping, cov,
                                  sink.id.is_discarded() ? nullptr : &sink.id,
                                  text);
          sink.reply(std::move(text));
          return;
        }
        deliver_read<cqrs::query_partial>(
          sink, std::move(x), std::move(cov),
          [&](const cqrs::query_partial& p, const cqrs::coverage& c,
              json& out) {
            cqrs::render_query(*q, p, s->tiers, s->mapping, c, out);
          });
      },
      query_atom::value, query_spec_ptr{q});
}

std::optional<cqrs::problem> run_read(coordinator_pointer self,
                                      const std::string& op, const json& req,
                                      cqrs::millis now, scatter_plan plan,
                                      read_sink sink) {
  auto s = self->state.settings;
  if (op == "query") {
    auto parsed = cqrs::parse_query(req, now, s->tiers);
    if (auto* p = std::get_if<cqrs::problem>(&parsed))
      return *p;
    auto spec = std::get<cqrs::query_spec>(std::move(parsed));
    mark_lost(*s, plan, spec.from, spec.to, now);
    // Partials for another node keep every sketch (its coordinator merges
    // them with other nodes' partials; partial_codec has no final form).
    spec.finals = !sink.partial;
    run_query(self, std::move(plan),
              std::make_shared<const cqrs::query_spec>(std::move(spec)),
              std::move(sink));
  } else if (op == "topk") {
    auto parsed = cqrs::parse_topk(req, now, s->tiers);
    if (auto* p = std::get_if<cqrs::problem>(&parsed))
      return *p;
    auto q = std::make_shared<const cqrs::topk_spec>(
      std::get<cqrs::topk_spec>(std::move(parsed)));
    mark_lost(*s, plan, q->from, q->to, now);
    scatter<cqrs::topk_partial>(
      self, std::move(plan),
      [sink, q, s](cqrs::topk_partial&& x, cqrs::coverage&& cov) {
        deliver_read<cqrs::topk_partial>(
          sink, std::move(x), std::move(cov),
          [&](const cqrs::topk_partial& p, const cqrs::coverage& c,
              json& out) { cqrs::render_topk(*q, p, s->mapping, c, out); });
      },
      topk_atom::value, topk_spec_ptr{q});
  } else if (op == "series") {
    auto parsed = cqrs::parse_series(req);
    if (auto* p = std::get_if<cqrs::problem>(&parsed))
      return *p;
    auto q = std::make_shared<const cqrs::series_spec>(
      std::get<cqrs::series_spec>(std::move(parsed)));
    mark_lost(*s, plan, -whole_time, whole_time, now);
    scatter<cqrs::series_partial>(
      self, std::move(plan),
      [sink, q](cqrs::series_partial&& x, cqrs::coverage&& cov) {
        if (sink.indexed)
          x.keys.insert(x.keys.end(), sink.indexed->begin(), sink.indexed->end());
        if (sink.listed)
          sink.listed(x, cov);
        deliver_read<cqrs::series_partial>(
          sink, std::move(x), std::move(cov),
          [&](const cqrs::series_partial& p, const cqrs::coverage& c,
              json& out) { cqrs::render_series(*q, p, c, out); });
      },
      series_atom::value, series_spec_ptr{q});
  } else if (op == "metrics") {
    mark_lost(*s, plan, -whole_time, whole_time, now);
    scatter<cqrs::metrics_partial>(
      self, std::move(plan),
      [sink](cqrs::metrics_partial&& x, cqrs::coverage&& cov) {
        deliver_read<cqrs::metrics_partial>(
          sink, std::move(x), std::move(cov),
          [&](const cqrs::metrics_partial& p, const cqrs::coverage& c,
              json& out) { cqrs::render_metrics(p, c, out); });
      },
      metrics_atom::value);
  } else {
    return cqrs::problem{cqrs::error_code::unknown_op,
                         "unknown op '" + op + "'"};
  }
  return std::nullopt;
}

/// The scatter plan of a client's read: every local partition and, in a
/// cluster, every other owner (`line` is the request as they re-parse it).
/// `only`, if not empty, restricts both to those partitions.
scatter_plan client_plan(coordinator_pointer self, const std::string& op,
                         std::string line, cqrs::millis now,
                         std::vector<bool> only) {
  auto& st = self->state;
  scatter_plan plan;
  for (auto p : st.owned())
    if (only.empty() || only[p])
      plan.local.push_back(p);
  if (st.settings->cluster.enabled) {
    plan.remote = remote_query{op, std::move(line), now, {}};
    // Taken before any partition is asked: a write acknowledged before
    // this moment is either applied by its owner by the time the owner
    // answers, or listed here (docs/cluster.md).
    if (auto& view = st.settings->cluster.pending)
      plan.pending = std::make_shared<const hint_view::snapshot_type>(
        view->snapshot(static_cast<uint32_t>(st.partitions.size())));
  }
  plan.only = std::move(only);
  return plan;
}

// -- direct reads -----------------------------------------------------------------

json error_object(cqrs::error_code code, const std::string& message) {
  return {{"ok", false},
          {"error",
           {{"code", std::string{cqrs::to_string(code)}}, {"message", message}}}};
}

/// The replies of one direct_read, filled in any order.
struct direct_batch {
  direct_read_ptr read;
  json replies = json::array();
  size_t outstanding = 0;
  cqrs::millis now = 0;
  /// cairn_query_latency_seconds{op="prometheus"}: the whole batch.
  runtime::latency_histogram* latency = nullptr;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();

  void put(size_t i, json reply) {
    replies[i] = std::move(reply);
    if (--outstanding != 0)
      return;
    if (latency != nullptr)
      latency->observe(std::chrono::steady_clock::now() - start);
    read->answer(std::move(replies));
  }
};

using direct_batch_ptr = std::shared_ptr<direct_batch>;

/// The op of a request object, or empty.
std::string op_of(const json& req) {
  auto it = req.find("op");
  return it != req.end() && it->is_string() ? it->get<std::string>()
                                            : std::string{};
}

/// Whether the query `q` reads only series that the series request `s`
/// lists: the same metric and the same exact matches.
bool follows_series(const json& s, const json& q) {
  if (!q.is_object() || op_of(q) != "query")
    return false;
  auto sm = s.find("metric");
  auto qm = q.find("metric");
  if (sm == s.end() || qm == q.end() || !sm->is_string() || *sm != *qm
      || sm->get_ref<const std::string&>().empty())
    return false;
  auto sw = s.find("where");
  auto qw = q.find("where");
  auto empty = [](const json& w) { return w.is_null() || w.empty(); };
  if (sw == s.end() || qw == q.end())
    return (sw == s.end() || empty(*sw)) && (qw == q.end() || empty(*qw));
  return *sw == *qw;
}

/// Runs request `i` of `b`; `only` as for client_plan. `then`, if set, is
/// called once when a series request has its answer, with the partitions
/// that hold the listed series or did not answer (empty: the request failed,
/// ask every partition).
void run_direct(coordinator_pointer self, const direct_batch_ptr& b, size_t i,
                std::vector<bool> only,
                std::function<void(std::vector<bool>)> then = {}) {
  auto& req = b->read->requests[i];
  auto op = op_of(req);
  auto fail = [&](cqrs::error_code code, const std::string& message) {
    b->put(i, error_object(code, message));
    if (then)  // the query waiting for this one goes out unrouted
      then({});
  };
  if (op != "query" && op != "series" && op != "topk" && op != "metrics")
    return fail(cqrs::error_code::bad_request,
                op.empty() ? "request has no op"
                           : "op '" + op + "' is not a read of the coordinator");
  std::string line;
  if (self->state.settings->cluster.enabled)
    line = req.dump(-1, ' ', false, json::error_handler_t::replace);
  // A series request: the local partitions attached to the node's series
  // index are answered from it (cqrs/series_index.hpp) and not asked; the
  // others (not recovered, remote, `only` aside) are asked as before.
  std::shared_ptr<std::vector<std::string>> indexed;
  auto& index = self->state.settings->series_index;
  if (op == "series" && index) {
    auto parsed = cqrs::parse_series(req);
    if (auto* spec = std::get_if<cqrs::series_spec>(&parsed)) {
      auto n = self->state.partitions.size();
      indexed = std::make_shared<std::vector<std::string>>();
      auto covered = index->match(spec->metric, spec->where,
                                  spec->limit + 1, *indexed);
      if (only.empty())
        only.assign(n, true);
      for (auto p : self->state.owned())
        if (p < covered.size() && covered[p])
          only[p] = false;
    }
  }
  auto plan = client_plan(self, op, std::move(line), b->now, std::move(only));
  read_sink sink;
  sink.indexed = std::move(indexed);
  sink.object = [b, i](json reply) { b->put(i, std::move(reply)); };
  if (then) {
    auto partitions = static_cast<uint32_t>(self->state.partitions.size());
    sink.listed = [then, partitions](const cqrs::series_partial& x,
                                     const cqrs::coverage& cov) {
      std::vector<bool> holders(partitions, false);
      for (auto& key : x.keys)
        holders[cqrs::partition_of(cqrs::series_hash(key), partitions)] = true;
      for (auto p : cov.missing_partitions)
        if (p < partitions)
          holders[p] = true;
      then(std::move(holders));
    };
  }
  if (auto problem = run_read(self, op, req, b->now, std::move(plan), sink))
    fail(problem->code, problem->message);
}

void serve_direct(coordinator_pointer self, const direct_read_ptr& r) {
  auto& st = self->state;
  auto b = std::make_shared<direct_batch>();
  b->read = r;
  auto n = r->requests.size();
  for (size_t i = 0; i < n; ++i)
    b->replies.push_back(nullptr);
  b->outstanding = n;
  b->now = cqrs::wall_clock_now();
  b->latency = st.latency_of("prometheus");
  if (n == 0)
    return r->answer(json::array());
  if (st.requests)
    st.requests->fetch_add(static_cast<int64_t>(n));
  // The node status is read once for the whole batch (as the parser routes
  // each line on one reading).
  auto status = st.settings->status.load();
  for (size_t i = 0; i < n; ++i) {
    auto& req = r->requests[i];
    if (status != node_status::ready) {
      b->put(i, error_object(cqrs::error_code::unavailable,
                             std::string{"node is "} + to_string(status)));
      continue;
    }
    if (!req.is_object()) {
      b->put(i, error_object(cqrs::error_code::bad_request,
                             "request is not a JSON object"));
      continue;
    }
    if (i + 1 < n && op_of(req) == "series"
        && follows_series(req, r->requests[i + 1])) {
      // The query asks only the partitions that hold the listed series
      // (one, for a single-series selector), and those that did not
      // answer the series request (so that its coverage says so too).
      auto next = i + 1;
      run_direct(self, b, i, {}, [self, b, next](std::vector<bool> only) {
        run_direct(self, b, next, std::move(only));
      });
      ++i;
      continue;
    }
    run_direct(self, b, i, {});
  }
}

caf::behavior coordinator_impl(coordinator_pointer self, settings_ptr s,
                               std::vector<partition_actor> partitions,
                               std::vector<caf::actor> links) {
  self->state.settings = s;
  self->state.partitions = std::move(partitions);
  self->state.links = std::move(links);
  self->state.owned();
  // "prometheus": the Prometheus API's direct reads, one batch per HTTP
  // request (actors/query_coordinator.hpp, direct_read).
  for (auto op : {"query", "topk", "series", "metrics", "prometheus"})
    self->state.latency.emplace_back(
      op, &s->metrics->histogram("cairn_query_latency_seconds",
                                 "Client reads from request to answer, by op",
                                 {{"op", op}}));
  self->track_mailbox(*s->metrics);
  if (s->metrics)
    self->state.requests = &s->metrics->counter(
      "cairn_requests_total", "Requests (lines with an op) handled");
  return {
    [=](query_atom, const std::string& line) -> caf::result<std::string> {
      auto req = json::parse(line, nullptr, false);
      if (req.is_discarded() || !req.is_object())
        return error_reply(no_id(), cqrs::error_code::bad_request,
                           "request is not a JSON object");
      auto id = req.contains("id") ? req["id"] : no_id();
      auto op = req.value("op", std::string{});
      auto now = cqrs::wall_clock_now();
      auto rp = self->make_response_promise<std::string>();
      if (op == "stats") {
        answer_stats(self, rp, id);
        return rp;
      }
      if (op == "cluster") {
        gather_cluster(self, [rp, id](json&& c) mutable {
          json out;
          out["ok"] = true;
          for (auto& [k, v] : c.items())
            out[k] = std::move(v);
          rp.deliver(finish_reply(out, id));
        });
        return rp;
      }
      auto plan = client_plan(self, op, line, now, {});
      read_sink sink;
      sink.id = id;
      sink.reply = [rp, latency = self->state.latency_of(op),
                    start = std::chrono::steady_clock::now()](
                     std::string text) mutable {
        if (latency != nullptr)
          latency->observe(std::chrono::steady_clock::now() - start);
        rp.deliver(std::move(text));
      };
      if (auto problem = run_read(self, op, req, now, std::move(plan), sink))
        rp.deliver(error_reply(id, problem->code, problem->message));
      return rp;
    },
    [=](read_atom, const direct_read_ptr& r) { serve_direct(self, r); },
    [=](deadline_atom) { sweep_deadlines(self); },
    // From a peer (via the node actor): a partial over our partitions.
    [=](partial_atom, remote_query& q) -> caf::result<remote_partial> {
      auto& st = self->state;
      auto req = json::parse(q.request, nullptr, false);
      if (req.is_discarded() || !req.is_object())
        return caf::make_error(caf::sec::invalid_argument,
                               "remote query is not a JSON object");
      scatter_plan plan;
      // Partitions this node does not own by its current map (the asking
      // node's map is older or newer) are answered as missing, so the
      // reply there is partial rather than silently short (docs/cluster.md).
      std::vector<uint32_t> not_owned;
      for (auto p : q.partitions)
        if (p < st.partitions.size() && st.settings->cluster.local(p))
          plan.local.push_back(p);
        else
          not_owned.push_back(p);
      auto rp = self->make_response_promise<remote_partial>();
      read_sink sink;
      sink.partial = [rp, not_owned](remote_partial x) mutable {
        x.missing.insert(x.missing.end(), not_owned.begin(), not_owned.end());
        rp.deliver(std::move(x));
      };
      if (auto problem = run_read(self, q.op, req, q.now, std::move(plan),
                                  sink))
        rp.deliver(caf::make_error(caf::sec::invalid_argument,
                                   problem->message));
      return rp;
    },
  };
}

} // namespace

caf::actor spawn_query_coordinator(caf::actor_system& sys,
                                   settings_ptr settings,
                                   std::vector<partition_actor> partitions,
                                   std::vector<caf::actor> links) {
  return sys.spawn(coordinator_impl, std::move(settings),
                   std::move(partitions), std::move(links));
}

void direct_read_job::answer(nlohmann::json replies) {
  auto f = std::move(done);
  done = nullptr;
  if (!f)
    return;
  if (batch)
    return f(std::move(replies));
  f(replies.empty() ? error_object(cqrs::error_code::internal, "no reply")
                    : std::move(replies[0]));
}

direct_read_job::~direct_read_job() {
  if (!done)
    return;
  auto replies = json::array();
  for (size_t i = 0; i < std::max<size_t>(requests.size(), 1); ++i)
    replies.push_back(error_object(cqrs::error_code::unavailable,
                                   "the query coordinator is not running"));
  answer(std::move(replies));
}

void direct_read(const caf::actor& coordinator, nlohmann::json requests,
                 std::function<void(nlohmann::json)> done) {
  auto r = std::make_shared<direct_read_job>();
  r->batch = requests.is_array();
  if (r->batch) {
    r->requests = std::move(requests);
  } else {
    r->requests = json::array();
    r->requests.push_back(std::move(requests));
  }
  r->done = std::move(done);
  if (!coordinator)
    return;  // the destructor answers
  caf::anon_send(coordinator, read_atom::value, std::move(r));
}

} // namespace cairn::actors
