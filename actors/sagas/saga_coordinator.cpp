#include "actors/sagas/saga_coordinator.hpp"

#include "actors/introspection.hpp"
#include "actors/messages.hpp"
#include "actors/reply.hpp"
#include "cqrs/error.hpp"
#include "cqrs/partition_map.hpp"
#include "runtime/log.hpp"
#include "runtime/time.hpp"
#include "sagas/membership.hpp"
#include "sagas/saga_log.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>

namespace cairn::actors {

namespace {

using nlohmann::json;
using sagas::millis;
using sagas::saga_record;

using saga_tick_atom = caf::atom_constant<caf::atom("sagatick")>;
using saga_wake_atom = caf::atom_constant<caf::atom("sagawake")>;
using saga_due_atom = caf::atom_constant<caf::atom("sagadue")>;

constexpr auto tick_interval = std::chrono::milliseconds{500};
constexpr auto control_timeout = std::chrono::seconds{5};
/// Pushes of the unfinished sagas' whole history, in ticks.
constexpr uint64_t replace_every = 4;
/// A follower asks the leader for an unfinished saga of its copy that the
/// leader has not pushed for this long (the leader pushes every running
/// saga every 2 s; silence means a finish this member missed).
constexpr millis stale_after_ms = 10'000;
/// A failed child move is started again this often before its parent's
/// step fails.
constexpr int child_attempts = 3;

millis now_ms() {
  return runtime::wall_clock_now();
}

json control_error(std::string code, std::string message) {
  return {{"ok", false}, {"code", std::move(code)}, {"error", std::move(message)}};
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// -- this member's copy of the log ---------------------------------------------

/// The durable log plus an in-memory copy of every record (the summaries,
/// the pushes and the dumps read it), and a hook the leader uses to push
/// every append to the other members.
class mirrored_log : public sagas::saga_log {
public:
  explicit mirrored_log(std::unique_ptr<sagas::saga_log> disk)
    : disk_(std::move(disk)), copy_(disk_->load()) {
    corrupt_ = disk_->corrupt();
  }

  bool append(const std::string& id, const saga_record& r) override {
    if (!disk_->append(id, r))
      return false;
    auto& v = copy_[id];
    v.push_back(r);
    if (on_append)
      on_append(id, r, v.size() - 1);
    return true;
  }

  std::map<std::string, std::vector<saga_record>> load() override {
    return copy_;
  }

  void erase(const std::string& id) override {
    disk_->erase(id);
    copy_.erase(id);
  }

  /// Replaces saga `id`'s history (a copy from the leader, or the longer
  /// one found at take-over). False if the disk refused a record.
  bool replace(const std::string& id, const std::vector<saga_record>& records) {
    disk_->erase(id);
    copy_.erase(id);
    for (auto& r : records)
      if (!disk_->append(id, r))
        return false;
    copy_[id] = records;
    return true;
  }

  /// Appends `r` as record `seq` of `id` if it is the next one (a push from
  /// the leader); anything else waits for the next whole-history push.
  bool follow(const std::string& id, const saga_record& r, size_t seq) {
    auto& v = copy_[id];
    if (seq != v.size() || !disk_->append(id, r))
      return false;
    v.push_back(r);
    return true;
  }

  const std::map<std::string, std::vector<saga_record>>& copy() const {
    return copy_;
  }

  std::function<void(const std::string&, const saga_record&, size_t)> on_append;

private:
  std::unique_ptr<sagas::saga_log> disk_;
  std::map<std::string, std::vector<saga_record>> copy_;
};

json records_json(const std::vector<saga_record>& records) {
  auto arr = json::array();
  for (auto& r : records)
    arr.push_back(sagas::encode(r));
  return arr;
}

std::optional<std::vector<saga_record>> records_of(const json& arr) {
  if (!arr.is_array())
    return std::nullopt;
  std::vector<saga_record> out;
  for (auto& e : arr) {
    if (!e.is_string())
      return std::nullopt;
    auto r = sagas::decode(e.get<std::string>());
    if (!r)
      return std::nullopt;
    out.push_back(std::move(*r));
  }
  return out;
}

// -- state -----------------------------------------------------------------------

/// A saga this node drives (it is the leader).
struct running {
  running(std::string saga_id, const sagas::saga_spec& saga_spec,
          sagas::saga m)
    : id(std::move(saga_id)), spec(&saga_spec), machine(std::move(m)),
      params(json::parse(machine.params(), nullptr, false)) {
    if (!params.is_object())
      params = json::object();
  }

  std::string id;
  const sagas::saga_spec* spec;
  sagas::saga machine;
  json params;
  /// An action is in flight; `gen` tells its answer from a stale one (an
  /// attempt that timed out, a lead lost and regained).
  bool busy = false;
  uint64_t gen = 0;
  bool wake_pending = false;
  // -- progress (docs/sagas.md, "Progress") ---------------------------------
  uint64_t bytes_total = 0;
  uint64_t bytes_done = 0;
  uint32_t partitions_total = 0;
  uint32_t partitions_done = 0;
  std::string detail;  ///< what the current step waits for
};

struct coordinator_state {
  settings_ptr settings;
  /// The members and the links to them, as of member_table version
  /// `links_seen` (refreshed every tick: a node may have joined).
  std::vector<caf::actor> links;
  std::shared_ptr<const member_table::members_type> members;
  uint64_t links_seen = 0;
  caf::actor node;
  std::unique_ptr<mirrored_log> log;
  std::map<std::string, std::unique_ptr<running>> active;
  /// Last seen link status per member index (true: up).
  std::vector<bool> up;
  /// Per member index: its link still says "connecting" (just started).
  std::vector<bool> connecting;
  /// When this coordinator started (a node that just started does not take
  /// the lead while its links are still connecting, for up to 10 s).
  millis started_at = 0;
  bool leader = false;
  /// Ticks in a row on which this node was the smallest live member.
  int lead_votes = 0;
  /// The leader as this node sees it (empty: none reachable).
  std::string leader_name;
  bool taking_over = false;
  uint64_t lead_gen = 0;
  uint64_t ticks = 0;
  uint64_t next_id = 0;
  /// This node's partition map as JSON (refreshed every tick; map.get).
  json map;
  sagas::byte_pacer pacer;
  /// Map commits run one at a time (each builds on the previous version).
  bool commit_busy = false;
  std::deque<std::function<void()>> commit_queue;
  /// Work due later (a paced chunk, a poll of child moves), by ticket.
  std::map<uint64_t, std::function<void()>> deferred;
  uint64_t next_ticket = 0;
  /// Fault seam for tests (CAIRN_TEST_SAGA_STEP_DELAY_MS): a step waits
  /// this long between its logged start and its action, so that a test can
  /// kill a member "during" any step (tests/integration/test_sagas.py).
  /// Never set in production.
  millis test_step_delay = 0;
  /// Sagas that finished here lately, with when: their whole history is
  /// pushed for a while more, so a member that missed the last appends
  /// does not show them running forever.
  std::map<std::string, millis> finished_lately;
  /// A follower's last push from the leader, per unfinished saga of its
  /// copy (catch_up).
  std::map<std::string, millis> heard;
  // -- metrics -----------------------------------------------------------------
  std::atomic<int64_t>* active_gauge = nullptr;
  std::atomic<int64_t>* leader_gauge = nullptr;
  std::atomic<int64_t>* bytes_counter = nullptr;
  std::atomic<int64_t>* succeeded = nullptr;
  std::atomic<int64_t>* compensated = nullptr;
  std::atomic<int64_t>* stuck = nullptr;

  static inline const char* name = "cairn.saga_coordinator";

  const cluster_settings& cluster() const { return settings->cluster; }

  void describe(json& out) const {
    out["leader"] = leader;
    out["leader_name"] = leader_name;
    out["active"] = active.size();
    out["sagas"] = log ? log->copy().size() : 0;
  }
};

using coordinator_actor = introspectable_actor<coordinator_state>;
using coord_pointer = coordinator_actor*;

/// Runs `f` on the actor after `delay`.
void defer(coord_pointer self, std::chrono::milliseconds delay,
           std::function<void()> f) {
  auto ticket = ++self->state.next_ticket;
  self->state.deferred.emplace(ticket, std::move(f));
  self->delayed_send(self, delay, saga_wake_atom::value, ticket);
}

json request_id(const json& req) {
  if (req.is_object())
    if (auto i = req.find("id"); i != req.end())
      return *i;
  return no_id();
}

// -- the map as the steps see it -------------------------------------------------

/// Field `name` of `j`, `fallback` if `j` is no object or lacks it: the map
/// is null until this coordinator first read it (a leader that just took
/// over may resume a step before that), and replies may be anything.
template <class T>
T field_of(const json& j, const char* name, T fallback) {
  return j.is_object() ? j.value(name, std::move(fallback)) : fallback;
}

std::vector<std::string> map_nodes(const json& map) {
  return field_of(map, "nodes", std::vector<std::string>{});
}

std::vector<std::string> map_owners(const json& map) {
  return field_of(map, "owners", std::vector<std::string>{});
}

std::set<std::string> map_left(const json& map) {
  auto v = field_of(map, "left", std::vector<std::string>{});
  return {v.begin(), v.end()};
}

/// The members that may own partitions: not left.
std::vector<std::string> map_active(const json& map) {
  auto left = map_left(map);
  std::vector<std::string> out;
  for (auto& n : map_nodes(map))
    if (left.count(n) == 0)
      out.push_back(n);
  return out;
}

/// Whether `node` owns at least one partition of `map`.
bool owns_any(const json& map, const std::string& node) {
  auto owners = map_owners(map);
  return std::find(owners.begin(), owners.end(), node) != owners.end();
}

std::string owner_of(const json& map, uint32_t p) {
  auto owners = map_owners(map);
  return p < owners.size() ? owners[p] : std::string{};
}

uint64_t map_version(const json& map) {
  return field_of(map, "version", uint64_t{0});
}

// -- talking to members ----------------------------------------------------------

/// Takes up members that joined (docs/cluster.md, "Joining through seeds").
void refresh_members(coord_pointer self) {
  auto& st = self->state;
  auto& table = st.cluster().members;
  if (!table) {
    if (!st.members)
      st.members = std::make_shared<const member_table::members_type>();
    return;
  }
  if (table->refresh(st.links, st.links_seen) || !st.members)
    st.members = table->members();
}

using reply_fn = std::function<void(json, std::string)>;

/// The handle through which member `name` is reached (this node's node
/// actor, or a peer link); null if unknown.
caf::actor handle_of(coord_pointer self, const std::string& name) {
  auto& st = self->state;
  refresh_members(self);
  auto snapshot = st.members;  // handle_of may replace st.members
  auto& members = *snapshot;
  for (size_t i = 0; i < members.size(); ++i)
    if (members[i].name == name)
      return i == st.cluster().self_index
               ? st.node
               : (i < st.links.size() ? st.links[i] : caf::actor{});
  return {};
}

/// Sends a control command to member `name`; `f` gets its reply JSON (an
/// error reply with code "unreachable" when it could not be asked).
void control(coord_pointer self, const std::string& name, json cmd,
             std::string payload, reply_fn f,
             std::chrono::milliseconds timeout = control_timeout) {
  auto to = handle_of(self, name);
  if (!to) {
    f(control_error("unreachable", "no route to member '" + name + "'"), {});
    return;
  }
  self->request(to, timeout, control_atom::value, dump(cmd), std::move(payload))
    .then(
      [f](std::string& reply, std::string& data) {
        auto j = json::parse(reply, nullptr, false);
        if (j.is_discarded() || !j.is_object())
          j = control_error("bad_reply", "control reply is not a JSON object");
        f(std::move(j), std::move(data));
      },
      [f, name](caf::error& err) {
        f(control_error("unreachable", name + ": " + to_string(err)), {});
      });
}

bool ok(const json& reply) {
  return field_of(reply, "ok", false);
}

std::string why(const json& reply) {
  auto code = field_of(reply, "code", std::string{});
  auto text = reply.contains("error") && reply["error"].is_string()
                ? reply["error"].get<std::string>()
                : reply.dump();
  return code.empty() ? text : code + ": " + text;
}

/// Refreshes st.map from this node's node actor, then calls `f`.
void with_map(coord_pointer self, std::function<void(bool)> f) {
  auto& st = self->state;
  if (!st.node) {
    f(false);
    return;
  }
  control(self, st.cluster().self_name, json{{"cmd", "map.get"}}, {},
          [self, f](json reply, std::string) {
            if (ok(reply) && reply.contains("map") && reply["map"].is_object())
              self->state.map = std::move(reply["map"]);
            f(ok(reply));
          });
}

/// The names of the peers whose link is up.
std::vector<std::string> live_peers(coord_pointer self) {
  auto& st = self->state;
  auto snapshot = st.members;  // handle_of may replace st.members
  auto& members = *snapshot;
  std::vector<std::string> out;
  for (size_t i = 0; i < members.size(); ++i)
    if (i != st.cluster().self_index && i < st.up.size() && st.up[i])
      out.push_back(members[i].name);
  return out;
}

/// Sends `cmd` to every live peer; `each` gets every reply, `done` runs once
/// all of them answered (or failed).
void ask_live_peers(coord_pointer self, const json& cmd,
                    std::function<void(json)> each, std::function<void()> done) {
  auto outstanding = std::make_shared<size_t>(1);
  auto one = [outstanding, done] {
    if (--*outstanding == 0)
      done();
  };
  for (auto& name : live_peers(self)) {
    ++*outstanding;
    control(self, name, cmd, {}, [each, one](json reply, std::string) {
      each(std::move(reply));
      one();
    });
  }
  one();
}

// -- forward declarations ---------------------------------------------------------

void drive(coord_pointer self, const std::string& id);
std::optional<std::string> start_saga(coord_pointer self, const std::string& type,
                                      json params, std::string id = {});

// -- the steps -------------------------------------------------------------------

using step_done = std::function<void(bool ok, std::string result)>;

/// Adopts `map` at every member in `order` first (each must answer ok, in
/// turn), then at every other live member (best effort: one that is down
/// converges through the version exchange of the links, docs/cluster.md).
void spread_map(coord_pointer self, json map, std::vector<std::string> order,
                step_done done) {
  auto& st = self->state;
  if (order.empty()) {
    auto v = map_version(map);
    for (auto& m : map_nodes(map)) {
      if (m == st.cluster().self_name)
        continue;
      control(self, m, json{{"cmd", "map.adopt"}, {"map", map}}, {},
              [](json, std::string) {});
    }
    done(true, dump(json{{"version", v}}));
    return;
  }
  auto first = order.front();
  order.erase(order.begin());
  control(self, first, json{{"cmd", "map.adopt"}, {"map", map}}, {},
          [self, map, order, done, first](json reply, std::string) mutable {
            if (!ok(reply) || reply.value("version", uint64_t{0}) < map_version(map)) {
              done(false, "map v" + std::to_string(map_version(map))
                            + " not adopted by " + first + ": " + why(reply));
              return;
            }
            spread_map(self, std::move(map), std::move(order), std::move(done));
          });
}

/// Runs `f` when no other map commit is in progress; `f` calls the
/// returned release when its commit is over.
void with_commit_lock(coord_pointer self,
                      std::function<void(std::function<void()>)> f) {
  auto& st = self->state;
  auto release = [self] {
    auto& s = self->state;
    s.commit_busy = false;
    if (!s.commit_queue.empty()) {
      auto next = std::move(s.commit_queue.front());
      s.commit_queue.pop_front();
      next();
    }
  };
  auto run = [self, f, release] {
    self->state.commit_busy = true;
    f(release);
  };
  if (st.commit_busy)
    st.commit_queue.push_back(run);
  else
    run();
}

/// Before a map change: the highest version any live member holds is
/// adopted here first, so the change builds on it (two leaders in a row
/// never produce two different maps of one version).
void newest_map(coord_pointer self, std::function<void(bool)> f) {
  auto best = std::make_shared<json>();
  ask_live_peers(
    self, json{{"cmd", "map.get"}},
    [best](json reply) {
      if (ok(reply) && reply.contains("map") && reply["map"].is_object()
          && (!best->is_object()
              || map_version(reply["map"]) > map_version(*best)))
        *best = std::move(reply["map"]);
    },
    [self, best, f] {
      auto& s = self->state;
      if (best->is_object() && map_version(*best) > map_version(s.map)) {
        control(self, s.cluster().self_name,
                json{{"cmd", "map.adopt"}, {"map", *best}}, {},
                [self, f](json, std::string) { with_map(self, f); });
        return;
      }
      with_map(self, f);
    });
}

// move: copy, freeze, ship, commit, drop (docs/sagas.md, "move").

std::string step_result(running& r, uint32_t step) {
  auto& results = r.machine.results();
  return step < results.size() ? results[step] : std::string{};
}

/// A field of a move step's result (its JSON object), `fallback` if none.
template <class T>
T result_field(running& r, uint32_t step, const char* name, T fallback) {
  auto res = json::parse(step_result(r, step), nullptr, false);
  if (res.is_object() && res.contains(name))
    return res[name].get<T>();
  return fallback;
}

std::string source_of(coord_pointer self, running& r) {
  for (auto step : {sagas::move_steps::freeze, sagas::move_steps::copy})
    if (auto s = result_field(r, step, "source", std::string{}); !s.empty())
      return s;
  return owner_of(self->state.map,
                  r.params.value("partition", uint32_t{0}));
}

/// The member that owns partition p now, or why it cannot move to `to`.
std::optional<std::string> movable_source(coord_pointer self, uint32_t p,
                                          const std::string& to,
                                          const step_done& done) {
  auto source = owner_of(self->state.map, p);
  if (source.empty()) {
    done(false, "partition " + std::to_string(p) + " has no owner");
    return std::nullopt;
  }
  if (source == to) {
    done(false, "partition " + std::to_string(p) + " is already owned by " + to);
    return std::nullopt;
  }
  return source;
}

/// One chunk of the ship loop: export [offset, +chunk) at the source,
/// import it at the target, pace, repeat. `base`: the pre-copy's base (the
/// target keeps it for the delta); `full`: a full snapshot instead of the
/// delta the freeze prepared (the target had no base).
struct ship_job {
  std::string id;
  uint32_t partition = 0;
  std::string source;
  std::string target;
  uint64_t offset = 0;
  uint64_t total = 0;
  int64_t crc = -1;
  uint64_t gen = 0;
  bool base = false;
  bool full = false;
  /// The export is a delta: shipped while writes are held, so not paced
  /// (it is small; pacing it only lengthens the write pause).
  bool delta = false;
  /// Bytes shipped by the move's earlier steps (progress only).
  uint64_t before = 0;
  step_done done;
};

void ship_next(coord_pointer self, std::shared_ptr<ship_job> job);

/// The copy step: the source encodes a snapshot while it keeps serving and
/// the target receives it (docs/sagas.md, "Pre-copy").
void move_copy(coord_pointer self, running& r, step_done done) {
  auto p = r.params["partition"].get<uint32_t>();
  auto to = r.params["to"].get<std::string>();
  auto id = r.id;
  auto gen = r.gen;
  with_map(self, [self, p, to, id, gen, done](bool) {
    auto source = movable_source(self, p, to, done);
    if (!source)
      return;
    control(self, *source,
            json{{"cmd", "handoff.base"}, {"partition", p}, {"token", id}}, {},
            [self, p, to, id, gen, source = *source, done](json reply, std::string) {
              if (!ok(reply)) {
                done(false, "pre-copy at " + source + ": " + why(reply));
                return;
              }
              auto job = std::make_shared<ship_job>();
              job->id = id;
              job->partition = p;
              job->source = source;
              job->target = to;
              job->gen = gen;
              job->base = true;
              job->done = [source, done](bool good, std::string result) {
                if (!good) {
                  done(false, std::move(result));
                  return;
                }
                auto res = json::parse(result, nullptr, false);
                done(true, dump(json{{"source", source},
                                     {"bytes", res.is_object()
                                                 ? res.value("bytes", uint64_t{0})
                                                 : uint64_t{0}}}));
              };
              if (auto i = self->state.active.find(id);
                  i != self->state.active.end())
                i->second->detail = "pre-copy " + source + " -> " + to;
              ship_next(self, job);
            });
  });
}

void move_freeze(coord_pointer self, running& r, step_done done) {
  auto p = r.params["partition"].get<uint32_t>();
  auto to = r.params["to"].get<std::string>();
  auto id = r.id;
  auto before = result_field(r, sagas::move_steps::copy, "bytes", uint64_t{0});
  with_map(self, [self, p, to, id, before, done](bool) {
    auto found = movable_source(self, p, to, done);
    if (!found)
      return;
    auto source = *found;
    control(self, source,
            json{{"cmd", "handoff.freeze"}, {"partition", p}, {"token", id},
                 {"target", to}},
            {}, [self, id, source, before, done](json reply, std::string) {
              if (!ok(reply)) {
                done(false, "freeze at " + source + ": " + why(reply));
                return;
              }
              if (auto i = self->state.active.find(id);
                  i != self->state.active.end())
                i->second->bytes_total = before + reply.value("total", uint64_t{0});
              done(true, dump(json{{"source", source},
                                   {"total", reply.value("total", uint64_t{0})},
                                   {"delta", reply.value("delta", false)},
                                   {"series", reply.value("series", uint64_t{0})},
                                   {"events", reply.value("events", uint64_t{0})}}));
            });
  });
}

void ship_chunk(coord_pointer self, std::shared_ptr<ship_job> job) {
  auto& st = self->state;
  auto it = st.active.find(job->id);
  if (it == st.active.end() || it->second->gen != job->gen)
    return;  // the attempt was abandoned (timeout, lead lost)
  json ex{{"cmd", "handoff.export"}, {"partition", job->partition},
          {"token", job->id}, {"offset", job->offset},
          {"max", st.settings->sagas.chunk_bytes}, {"base", job->base},
          {"full", job->full}};
  control(self, job->source, ex, {}, [self, job](json reply, std::string data) {
    if (!ok(reply)) {
      job->done(false, "export at " + job->source + ": " + why(reply));
      return;
    }
    auto total = reply.value("total", uint64_t{0});
    auto crc = reply.value("crc", int64_t{0});
    job->delta = !job->base && reply.value("delta", false);
    if (job->crc >= 0 && (crc != job->crc || total != job->total)) {
      // The source re-encoded its export (it restarted): start over.
      job->offset = 0;
      job->crc = crc;
      job->total = total;
      ship_next(self, job);
      return;
    }
    job->crc = crc;
    job->total = total;
    auto n = data.size();
    json im{{"cmd", "handoff.import"}, {"partition", job->partition},
            {"token", job->id}, {"offset", job->offset}, {"total", total},
            {"crc", crc}, {"source", job->source}, {"base", job->base}};
    control(
      self, job->target, im, std::move(data),
      [self, job, n](json reply, std::string) {
        auto& st = self->state;
        if (!ok(reply)) {
          auto code = reply.value("code", std::string{});
          if (code == "bad_offset" && reply.contains("have")) {
            job->offset = reply["have"].get<uint64_t>();
            ship_next(self, job);
            return;
          }
          if (code == "no_base" && !job->base && !job->full) {
            // The target lost the pre-copy (it restarted): a full snapshot.
            spdlog::info("saga {}: {} has no pre-copy base; shipping a full "
                         "snapshot",
                         job->id, job->target);
            job->full = true;
            job->offset = 0;
            job->crc = -1;
            ship_next(self, job);
            return;
          }
          job->done(false, "import at " + job->target + ": " + why(reply));
          return;
        }
        job->offset += n;
        if (st.bytes_counter)
          st.bytes_counter->fetch_add(static_cast<int64_t>(n));
        if (auto i = st.active.find(job->id); i != st.active.end()) {
          i->second->bytes_done = job->before + job->offset;
          i->second->bytes_total = job->before + job->total;
        }
        if (reply.value("complete", false) || job->offset >= job->total) {
          if (!reply.value("complete", false)) {
            job->done(false, "import at " + job->target
                               + " not complete after every byte");
            return;
          }
          job->done(true, dump(json{{"bytes", job->total}}));
          return;
        }
        ship_next(self, job);
      },
      std::chrono::seconds{30});
  });
}

void ship_next(coord_pointer self, std::shared_ptr<ship_job> job) {
  auto& st = self->state;
  auto now = now_ms();
  auto at = job->delta ? now : st.pacer.reserve(st.settings->sagas.chunk_bytes, now);
  if (at <= now) {
    ship_chunk(self, std::move(job));
    return;
  }
  defer(self, std::chrono::milliseconds{at - now},
        [self, job] { ship_chunk(self, job); });
}

void move_ship(coord_pointer self, running& r, step_done done) {
  auto job = std::make_shared<ship_job>();
  job->id = r.id;
  job->partition = r.params["partition"].get<uint32_t>();
  job->source = source_of(self, r);
  job->target = r.params["to"].get<std::string>();
  job->gen = r.gen;
  job->before = result_field(r, sagas::move_steps::copy, "bytes", uint64_t{0});
  job->delta = result_field(r, sagas::move_steps::freeze, "delta", false);
  job->done = std::move(done);
  r.detail = "shipping " + job->source + " -> " + job->target;
  ship_next(self, job);
}

void move_commit(coord_pointer self, running& r, step_done done) {
  auto p = r.params["partition"].get<uint32_t>();
  auto to = r.params["to"].get<std::string>();
  auto source = source_of(self, r);
  r.detail = "waiting for the map commit lock";
  auto id = r.id;
  with_commit_lock(self, [self, p, to, source, id, done](auto release) {
    if (auto i = self->state.active.find(id); i != self->state.active.end())
      i->second->detail = "committing the map";
    newest_map(self, [self, p, to, source, done, release](bool) {
      auto& st = self->state;
      auto map = st.map;
      auto owners = map_owners(map);
      if (p >= owners.size()) {
        release();
        done(false, "the map has no partition " + std::to_string(p));
        return;
      }
      if (owners[p] != to) {
        // The new map: p owned by `to`, one version up.
        map["owners"][p] = to;
        map["version"] = map_version(map) + 1;
      }
      // This node first (the next commit builds on it), then the source
      // (it stops serving p), then the target (it starts), then the rest.
      std::vector<std::string> order{st.cluster().self_name};
      for (auto& m : {source, to})
        if (std::find(order.begin(), order.end(), m) == order.end())
          order.push_back(m);
      spread_map(self, map, order,
                 [self, done, release](bool good, std::string result) {
                   release();
                   with_map(self, [done, good, result](bool) {
                     done(good, result);
                   });
                 });
    });
  });
}

void move_drop(coord_pointer self, running& r, step_done done) {
  auto p = r.params["partition"].get<uint32_t>();
  auto source = source_of(self, r);
  auto id = r.id;
  // The source gets the map again first (idempotent): a source that missed
  // the commit's push would refuse to drop a partition it still owns.
  with_map(self, [self, p, source, id, done](bool) {
    auto map = self->state.map;
    control(self, source, json{{"cmd", "map.adopt"}, {"map", map}}, {},
            [self, p, source, id, done](json, std::string) {
              control(self, source,
                      json{{"cmd", "handoff.drop"}, {"partition", p},
                           {"token", id}},
                      {}, [source, done](json reply, std::string) {
                        if (!ok(reply))
                          done(false, "drop at " + source + ": " + why(reply));
                        else
                          done(true, dump(json{{"dropped", source},
                                               {"held", reply.value("held", 0)}}));
                      });
            });
  });
}

void undo_freeze(coord_pointer self, running& r, step_done done) {
  auto p = r.params["partition"].get<uint32_t>();
  auto source = source_of(self, r);
  control(self, source,
          json{{"cmd", "handoff.release"}, {"partition", p}, {"token", r.id}},
          {}, [source, done](json reply, std::string) {
            if (!ok(reply))
              done(false, "release at " + source + ": " + why(reply));
            else
              done(true, "released");
          });
}

void undo_ship(coord_pointer self, running& r, step_done done) {
  auto p = r.params["partition"].get<uint32_t>();
  auto to = r.params["to"].get<std::string>();
  control(self, to,
          json{{"cmd", "handoff.drop"}, {"partition", p}, {"token", r.id}}, {},
          [to, done](json reply, std::string) {
            if (!ok(reply))
              done(false, "drop of the import at " + to + ": " + why(reply));
            else
              done(true, "import dropped");
          });
}

/// The copy's undo: the target drops the base it holds, the source forgets
/// its base and the delta it kept (a release of a serving partition).
void undo_copy(coord_pointer self, running& r, step_done done) {
  auto id = r.id;
  undo_ship(self, r, [self, id, done](bool good, std::string result) {
    auto i = self->state.active.find(id);
    if (!good || i == self->state.active.end()) {
      done(good, std::move(result));
      return;
    }
    undo_freeze(self, *i->second, [done](bool good, std::string result) {
      done(good, good ? "pre-copy dropped" : std::move(result));
    });
  });
}

// decommission / rebalance / join: plan, child moves, drain, leave, join.

void plan_moves(coord_pointer self, running& r, step_done done) {
  auto type = r.spec->type;
  auto node = r.params.value("node", std::string{});
  with_map(self, [self, type, node, done](bool good) {
    if (!good) {
      done(false, "the partition map is not available");
      return;
    }
    auto& map = self->state.map;
    auto active = map_active(map);
    std::vector<sagas::partition_move> plan;
    if (type == "decommission")
      plan = sagas::plan_drain(map_owners(map), active, node);
    else
      plan = sagas::plan_balance(map_owners(map), active);
    done(true, sagas::encode_plan(plan));
  });
}

/// The newest child move of `parent` for partition p: its id and attempt.
std::pair<std::string, int> latest_child(coord_pointer self,
                                         const std::string& parent,
                                         uint32_t p) {
  auto prefix = parent + ".p" + std::to_string(p) + ".";
  std::pair<std::string, int> best{{}, 0};
  auto& copy = self->state.log->copy();
  for (auto i = copy.lower_bound(prefix);
       i != copy.end() && i->first.rfind(prefix, 0) == 0; ++i) {
    auto n = std::atoi(i->first.c_str() + prefix.size());
    if (n > best.second)
      best = {i->first, n};
  }
  return best;
}

/// How saga `id` ended: "succeeded", "compensated", "stuck", or empty while
/// it runs (or is unknown).
std::string outcome_of(coord_pointer self, const std::string& id) {
  auto& copy = self->state.log->copy();
  auto i = copy.find(id);
  if (i == copy.end() || i->second.empty()
      || i->second.back().kind != sagas::record_kind::finished)
    return {};
  return i->second.back().detail;
}

/// Bytes a finished move shipped (its copy and ship steps' results).
uint64_t shipped_bytes(coord_pointer self, const std::string& id) {
  auto& copy = self->state.log->copy();
  auto i = copy.find(id);
  if (i == copy.end())
    return 0;
  uint64_t bytes = 0;
  for (auto& r : i->second)
    if (r.kind == sagas::record_kind::step_done
        && (r.step == sagas::move_steps::ship
            || r.step == sagas::move_steps::copy)) {
      auto res = json::parse(r.detail, nullptr, false);
      if (res.is_object())
        bytes += res.value("bytes", uint64_t{0});
    }
  return bytes;
}

struct moves_job {
  std::string parent;
  uint64_t gen = 0;
  std::vector<sagas::partition_move> plan;
  step_done done;
};

void poll_moves(coord_pointer self, std::shared_ptr<moves_job> job) {
  auto& st = self->state;
  auto it = st.active.find(job->parent);
  if (it == st.active.end() || it->second->gen != job->gen || !st.leader)
    return;
  auto& parent = *it->second;
  auto owners = map_owners(st.map);
  uint32_t finished = 0;
  size_t running_children = 0;
  uint64_t bytes = 0;
  std::vector<const sagas::partition_move*> to_start;
  for (auto& m : job->plan) {
    auto [child, attempt] = latest_child(self, job->parent, m.partition);
    if (!child.empty()) {
      if (auto c = st.active.find(child); c != st.active.end())
        bytes += c->second->bytes_done;
      else
        bytes += shipped_bytes(self, child);
    }
    auto outcome = child.empty() ? std::string{} : outcome_of(self, child);
    bool owned = m.partition < owners.size() && owners[m.partition] == m.to;
    if (outcome == "succeeded" || (owned && (child.empty() || !outcome.empty()))) {
      ++finished;
      continue;
    }
    if (!child.empty() && outcome.empty()) {
      ++running_children;
      continue;
    }
    if (attempt >= child_attempts) {
      job->done(false, "move of partition " + std::to_string(m.partition)
                         + " to " + m.to + " failed " + std::to_string(attempt)
                         + " times (last: " + child + ")");
      return;
    }
    to_start.push_back(&m);
  }
  parent.partitions_total = static_cast<uint32_t>(job->plan.size());
  parent.partitions_done = finished;
  parent.bytes_done = bytes;
  parent.detail = std::to_string(running_children) + " moving";
  if (finished == job->plan.size()) {
    job->done(true, dump(json{{"moved", finished}}));
    return;
  }
  for (auto* m : to_start) {
    if (running_children >= st.settings->sagas.concurrency)
      break;
    auto attempt = latest_child(self, job->parent, m->partition).second + 1;
    auto id = job->parent + ".p" + std::to_string(m->partition) + "."
              + std::to_string(attempt);
    json params{{"partition", m->partition}, {"to", m->to},
                {"parent", job->parent}};
    if (auto err = start_saga(self, "move", params, id))
      spdlog::warn("saga {}: starting move {} failed: {}", job->parent, id, *err);
    else
      ++running_children;
  }
  defer(self, std::chrono::milliseconds{250},
        [self, job] { poll_moves(self, job); });
}

void run_moves(coord_pointer self, running& r, uint32_t plan_step,
               step_done done) {
  auto plan = sagas::decode_plan(step_result(r, plan_step));
  if (!plan) {
    done(false, "the plan of step " + std::to_string(plan_step)
                  + " does not decode");
    return;
  }
  auto job = std::make_shared<moves_job>();
  job->parent = r.id;
  job->gen = r.gen;
  job->plan = std::move(*plan);
  job->done = std::move(done);
  r.partitions_total = static_cast<uint32_t>(job->plan.size());
  with_map(self, [self, job](bool) { poll_moves(self, job); });
}

/// decommission: the leaving member holds no hinted writes any more (they
/// would be lost when it is stopped).
void drain(coord_pointer self, running& r, step_done done) {
  auto node = r.params.value("node", std::string{});
  auto to = handle_of(self, node);
  if (!to) {
    done(false, "no route to " + node);
    return;
  }
  self->request(to, control_timeout, request_atom::value,
                std::string{R"({"cmd":"cluster"})"})
    .then(
      [node, done](std::string& text) {
        auto j = json::parse(text, nullptr, false);
        if (!ok(j)) {
          done(false, "cluster view of " + node + " not available");
          return;
        }
        uint64_t pending = 0;
        for (auto& m : j.value("members", json::array()))
          if (m.contains("hints") && m["hints"].is_object())
            pending += m["hints"].value("pending", uint64_t{0});
        if (pending > 0)
          done(false, node + " still holds " + std::to_string(pending)
                        + " hinted writes");
        else
          done(true, dump(json{{"hints", 0}}));
      },
      [node, done](caf::error& err) {
        done(false, node + ": " + to_string(err));
      });
}

/// Marks `node` left (`leave`) or back in a new map, adopted by this node,
/// then by `node` if `tell_node`, then by every other member.
void mark_left(coord_pointer self, const std::string& node, bool leave,
               bool tell_node, step_done done) {
  with_commit_lock(self, [self, node, leave, tell_node, done](auto release) {
    newest_map(self, [self, node, leave, tell_node, done, release](bool) {
      auto map = self->state.map;
      auto left = map_left(map);
      if (leave && owns_any(map, node)) {
        release();
        done(false, node + " still owns partitions");
        return;
      }
      bool is_left = left.count(node) > 0;
      if (is_left != leave) {
        if (leave) {
          left.insert(node);
        } else {
          left.erase(node);
          // An evicted member that joins again is a member like any other
          // (its lost marks stay: what went with it is still gone).
          if (auto e = map.find("evicted"); e != map.end() && e->is_array()) {
            auto& ev = *e;
            ev.erase(std::remove(ev.begin(), ev.end(), json(node)), ev.end());
            if (ev.empty())
              map.erase("evicted");
          }
        }
        map["left"] = std::vector<std::string>{left.begin(), left.end()};
        map["version"] = map_version(map) + 1;
      }
      std::vector<std::string> order{self->state.cluster().self_name};
      if (tell_node && node != order.front())
        order.push_back(node);
      spread_map(self, map, order,
                 [self, done, release](bool good, std::string result) {
                   release();
                   with_map(self, [done, good, result](bool) {
                     done(good, result);
                   });
                 });
    });
  });
}

/// decommission: the member leaves (its pivot); join: it is back. The node
/// is told right after this one.
void set_left(coord_pointer self, running& r, bool leave, step_done done) {
  mark_left(self, r.params.value("node", std::string{}), leave, true,
            std::move(done));
}

// evict: survey, evict.

/// evict: what the live members heard NODE announce it holds hints for —
/// acknowledged writes to other members' partitions that go with it. The
/// result: {"hints":[partitions],"known":K,"asked":A} (K members had heard
/// an announcement of it since they started).
void survey(coord_pointer self, running& r, step_done done) {
  struct gather {
    std::set<uint32_t> hints;
    size_t known = 0, asked = 0, outstanding = 1;
    step_done done;
  };
  auto node = r.params.value("node", std::string{});
  auto& st = self->state;
  auto g = std::make_shared<gather>();
  g->done = std::move(done);
  auto finish = [g] {
    if (--g->outstanding == 0)
      g->done(true, dump(json{{"hints", std::vector<uint32_t>{g->hints.begin(),
                                                              g->hints.end()}},
                              {"known", g->known},
                              {"asked", g->asked}}));
  };
  auto names = map_nodes(st.map);
  auto left = map_left(st.map);
  for (uint32_t i = 0; i < names.size(); ++i) {
    bool live = i == st.cluster().self_index || (i < st.up.size() && st.up[i]);
    auto to = names[i] == node || !live || left.count(names[i])
                ? caf::actor{}
                : handle_of(self, names[i]);
    if (!to)
      continue;
    ++g->asked;
    ++g->outstanding;
    self->request(to, control_timeout, request_atom::value,
                  std::string{R"({"cmd":"cluster"})"})
      .then(
        [g, node, finish](std::string& text) {
          auto j = json::parse(text, nullptr, false);
          if (ok(j))
            for (auto& m : j.value("members", json::array()))
              if (m.is_object() && m.value("name", std::string{}) == node
                  && m.contains("announced") && m["announced"].is_object()
                  && m["announced"].value("known", false)) {
                ++g->known;
                for (auto& p : m["announced"].value("pending_partitions",
                                                    json::array()))
                  if (p.is_number_unsigned())
                    g->hints.insert(p.get<uint32_t>());
              }
          finish();
        },
        [finish](caf::error&) { finish(); });
  }
  finish();
}

/// evict (pivot): a map without NODE, committed like any map change: its
/// partitions to the members owning the fewest, NODE left and evicted, and
/// its partitions plus those it held hints for marked lost now (every
/// partition, if no live member ever heard it announce). Refused while
/// NODE is up: then decommission it, which loses nothing.
void evict(coord_pointer self, running& r, step_done done) {
  auto node = r.params.value("node", std::string{});
  auto found = json::parse(step_result(r, sagas::plan_steps::evict_survey),
                           nullptr, false);
  with_commit_lock(self, [self, node, found, done](auto release) {
    newest_map(self, [self, node, found, done, release](bool) {
      auto& st = self->state;
      auto fail = [&](std::string why) {
        release();
        done(false, std::move(why));
      };
      std::string error;
      auto current = cqrs::partition_map_from_json(st.map, &error);
      if (!current)
        return fail("the partition map is not available: " + error);
      auto index = current->index_of(node);
      if (!index)
        return fail("unknown node '" + node + "'");
      if (current->has_left(*index)) {
        // A retry after this step's commit (its outcome was not logged).
        release();
        done(true, dump(json{{"version", current->version()},
                             {"already", true}}));
        return;
      }
      if (*index < st.up.size() && st.up[*index])
        return fail(node + " is up again: decommission it instead (that "
                           "moves its data)");
      std::vector<uint32_t> lost;
      if (found.is_object() && found.value("known", 0) > 0) {
        lost = found.value("hints", std::vector<uint32_t>{});
      } else {
        for (uint32_t p = 0; p < current->partitions(); ++p)
          lost.push_back(p);
      }
      std::vector<std::pair<uint32_t, uint32_t>> to;
      for (auto& m : sagas::plan_drain(map_owners(st.map), map_active(st.map),
                                       node))
        to.emplace_back(m.partition, *current->index_of(m.to));
      std::optional<cqrs::partition_map> next;
      try {
        next = current->with_evicted(*index, to, lost, now_ms());
      } catch (const std::invalid_argument& e) {
        return fail(std::string{"no map without "} + node + ": " + e.what());
      }
      std::vector<uint32_t> marked;
      for (uint32_t p = 0; p < next->partitions(); ++p)
        if (next->lost_at(p) > current->lost_at(p))
          marked.push_back(p);
      spdlog::warn("evicting {}: its {} partitions go to the other members; "
                   "writes to partitions {} before now went with it (answers "
                   "over that time are partial)",
                   runtime::quoted(node), to.size(), json(marked).dump());
      spread_map(self, cqrs::to_json(*next), {st.cluster().self_name},
                 [self, done, release](bool good, std::string result) {
                   release();
                   with_map(self, [done, good, result](bool) {
                     done(good, result);
                   });
                 });
    });
  });
}

/// Compensation of a join saga's `join` step, which failed for good: the
/// node never took the map (admitted through seeds but not started, or
/// down since). If it owns nothing, it is marked left again, so answers stop
/// waiting for a member that is not there (docs/sagas.md, "join"); starting
/// it (seeds) or `join NODE` brings it back.
void undo_join(coord_pointer self, running& r, step_done done) {
  auto node = r.params.value("node", std::string{});
  if (owns_any(self->state.map, node)) {
    done(true, node + " owns partitions: not marked left");
    return;
  }
  mark_left(self, node, true, false,
            [node, done](bool good, std::string result) {
              if (good)
                spdlog::warn("{} never took the map of its join: marked left; "
                             "start it (cairn.cluster.seeds) or join it to "
                             "bring it back",
                             runtime::quoted(node));
              done(good, result);
            });
}

/// A node that is not a member asks to join (docs/cluster.md, "Joining
/// through seeds"): a map with `node` at `address` appended (owning
/// nothing) and every member's address, committed here first, then spread.
/// `done(true, ...)` once this node adopted it (or `node` was a member by
/// the newest map already).
void admit(coord_pointer self, const std::string& node,
           const std::string& address, step_done done) {
  with_commit_lock(self, [self, node, address, done](auto release) {
    newest_map(self, [self, node, address, done, release](bool) {
      auto& st = self->state;
      auto map = st.map;
      auto nodes = map_nodes(map);
      if (std::find(nodes.begin(), nodes.end(), node) != nodes.end()) {
        release();
        done(true, "a member already");
        return;
      }
      json addresses = map.contains("addresses") && map["addresses"].is_object()
                         ? map["addresses"]
                         : json::object();
      refresh_members(self);
      for (auto& m : *st.members)
        if (!addresses.contains(m.name))
          addresses[m.name] = m.host + ":" + std::to_string(m.port);
      addresses[node] = address;
      nodes.push_back(node);
      map["nodes"] = nodes;
      map["addresses"] = std::move(addresses);
      map["version"] = map_version(map) + 1;
      spdlog::info("sagas: admitting {} at {} (map v{})", node, address,
                   map_version(map));
      spread_map(self, map, {st.cluster().self_name},
                 [self, done, release](bool good, std::string result) {
                   release();
                   with_map(self, [done, good, result](bool) {
                     done(good, result);
                   });
                 });
    });
  });
}

/// Runs the action `a` of saga `r`.
void run_action(coord_pointer self, running& r, const sagas::saga_action& a,
                step_done done) {
  auto& type = r.spec->type;
  bool undo = a.kind == sagas::saga_action::compensate;
  if (type == "move") {
    using namespace sagas::move_steps;
    if (undo) {
      if (a.step == copy)
        undo_copy(self, r, std::move(done));
      else if (a.step == freeze)
        undo_freeze(self, r, std::move(done));
      else if (a.step == ship)
        undo_ship(self, r, std::move(done));
      else
        done(true, "nothing to undo");
      return;
    }
    switch (a.step) {
      case copy:
        return move_copy(self, r, std::move(done));
      case freeze:
        return move_freeze(self, r, std::move(done));
      case ship:
        return move_ship(self, r, std::move(done));
      case commit:
        return move_commit(self, r, std::move(done));
      case drop:
        return move_drop(self, r, std::move(done));
    }
  }
  if (undo && type == "join" && a.step == sagas::plan_steps::join_join) {
    undo_join(self, r, std::move(done));
    return;
  }
  // Moves already done stay done when a plan saga gives up: each is a
  // complete handoff on its own (docs/sagas.md).
  if (undo) {
    done(true, "nothing to undo");
    return;
  }
  using namespace sagas::plan_steps;
  if (type == "decommission") {
    switch (a.step) {
      case decommission_plan:
        return plan_moves(self, r, std::move(done));
      case decommission_move:
        return run_moves(self, r, decommission_plan, std::move(done));
      case decommission_drain:
        return drain(self, r, std::move(done));
      case decommission_leave:
        return set_left(self, r, true, std::move(done));
    }
  } else if (type == "rebalance") {
    if (a.step == 0)
      return plan_moves(self, r, std::move(done));
    return run_moves(self, r, 0, std::move(done));
  } else if (type == "evict") {
    if (a.step == evict_survey)
      return survey(self, r, std::move(done));
    return evict(self, r, std::move(done));
  } else if (type == "join") {
    switch (a.step) {
      case join_join:
        return set_left(self, r, false, std::move(done));
      case join_plan:
        return plan_moves(self, r, std::move(done));
      case join_move:
        return run_moves(self, r, join_plan, std::move(done));
    }
  }
  done(false, "no action for step " + std::to_string(a.step) + " of " + type);
}

// -- driving ---------------------------------------------------------------------

void finished(coord_pointer self, running& r) {
  auto& st = self->state;
  auto phase = r.machine.phase();
  if (phase == sagas::saga_phase::succeeded) {
    spdlog::info("saga {} ({}) succeeded", r.id, r.spec->type);
    if (st.succeeded)
      st.succeeded->fetch_add(1);
  } else if (phase == sagas::saga_phase::compensated) {
    spdlog::warn("saga {} ({}) compensated: {}", r.id, r.spec->type,
                 r.machine.error());
    if (st.compensated)
      st.compensated->fetch_add(1);
  } else {
    spdlog::error("saga {} ({}) is stuck: {}", r.id, r.spec->type,
                  r.machine.error());
    if (st.stuck)
      st.stuck->fetch_add(1);
  }
  auto id = r.id;
  st.finished_lately[id] = now_ms();
  st.active.erase(id);
  if (st.active_gauge)
    st.active_gauge->store(static_cast<int64_t>(st.active.size()));
  sagas::prune_finished(*st.log, st.settings->sagas.history);
}

void wake_at(coord_pointer self, running& r, millis until) {
  if (r.wake_pending)
    return;
  r.wake_pending = true;
  auto delay = std::max<millis>(1, until - now_ms());
  self->delayed_send(self, std::chrono::milliseconds{delay},
                     saga_wake_atom::value, r.id);
}

void drive(coord_pointer self, const std::string& id) {
  auto& st = self->state;
  auto it = st.active.find(id);
  if (it == st.active.end() || !st.leader || st.taking_over)
    return;
  auto& r = *it->second;
  if (r.busy)
    return;
  auto now = now_ms();
  auto a = r.machine.next(now);
  switch (a.kind) {
    case sagas::saga_action::done:
      finished(self, r);
      return;
    case sagas::saga_action::wait:
      wake_at(self, r, a.until);
      return;
    default:
      break;
  }
  if (!r.machine.begin(a, now)) {
    spdlog::error("saga {}: the log refused a record; retrying in 1 s", id);
    wake_at(self, r, now + 1000);
    return;
  }
  r.busy = true;
  auto gen = ++r.gen;
  r.detail.clear();
  self->delayed_send(self, std::chrono::milliseconds{std::max<millis>(1, a.until - now)},
                     saga_due_atom::value, id, gen);
  auto outcome = [self, id, gen](bool good, std::string result) {
    auto& s = self->state;
    auto i = s.active.find(id);
    if (i == s.active.end() || i->second->gen != gen || !i->second->busy)
      return;  // stale: timed out, or the lead changed
    auto& run = *i->second;
    run.busy = false;
    auto now = now_ms();
    bool logged = good ? run.machine.succeeded(std::move(result), now)
                       : run.machine.failed(std::move(result), now);
    if (!logged)
      spdlog::error("saga {}: the log refused an outcome", id);
    if (!good)
      spdlog::warn("saga {} step {}: {}", id, run.machine.current_step(),
                   run.machine.error());
    drive(self, id);
  };
  if (st.test_step_delay > 0) {
    defer(self, std::chrono::milliseconds{st.test_step_delay},
          [self, id, gen, a, outcome] {
            auto& s = self->state;
            auto i = s.active.find(id);
            if (i != s.active.end() && i->second->gen == gen)
              run_action(self, *i->second, a, outcome);
          });
    return;
  }
  run_action(self, r, a, outcome);
}

/// Starts a saga of `type` (this node is the leader). Returns an error
/// message if the log refused it.
std::optional<std::string> start_saga(coord_pointer self, const std::string& type,
                                      json params, std::string id) {
  auto& st = self->state;
  auto* spec = sagas::membership_spec(type);
  if (!spec)
    return "unknown saga type " + type;
  if (id.empty())
    id = type + "-" + std::to_string(now_ms()) + "-"
         + std::to_string(++st.next_id);
  auto machine = sagas::saga::start(*spec, id, dump(params), *st.log, now_ms());
  if (!machine)
    return std::string{"the saga log refused the start"};
  st.active[id] = std::make_unique<running>(id, *spec, std::move(*machine));
  if (st.active_gauge)
    st.active_gauge->store(static_cast<int64_t>(st.active.size()));
  spdlog::info("saga {} ({}) started: {}", id, type, st.active[id]->machine.params());
  drive(self, id);
  return std::nullopt;
}

// -- leadership ------------------------------------------------------------------

/// Merges the copy in a `saga.dump` reply into this member's (finished over
/// unfinished, else the longer history) and stores what changed.
void merge_dump(coord_pointer self, const json& reply) {
  auto& s = self->state;
  if (!ok(reply) || !reply.contains("sagas") || !reply["sagas"].is_object())
    return;
  std::map<std::string, std::vector<saga_record>> theirs;
  for (auto& [id, arr] : reply["sagas"].items())
    if (auto recs = records_of(arr))
      theirs[id] = std::move(*recs);
  auto mine = s.log->copy();
  for (auto& id : sagas::merge_copies(mine, theirs))
    if (!s.log->replace(id, mine[id]))
      // The id came in a peer's dump.
      spdlog::error("saga {}: could not store the merged copy",
                    runtime::quoted(id));
}

/// Takes over: pulls every live member's copy, keeps the longest history of
/// each saga, resumes every unfinished one.
void take_over(coord_pointer self) {
  auto& st = self->state;
  st.taking_over = true;
  st.leader = true;
  auto gen = ++st.lead_gen;
  if (st.leader_gauge)
    st.leader_gauge->store(1);
  spdlog::info("saga coordinator: {} takes the lead", st.cluster().self_name);
  auto finish = [self, gen] {
    auto& s = self->state;
    if (s.lead_gen != gen || !s.leader)
      return;
    s.taking_over = false;
    for (auto& [id, records] : s.log->copy()) {
      if (records.empty() || records.back().kind == sagas::record_kind::finished
          || s.active.count(id))
        continue;
      auto* spec = sagas::membership_spec(records.front().type);
      if (!spec) {
        spdlog::error("saga {}: unknown type '{}' in the log", id,
                      records.front().type);
        continue;
      }
      auto machine = sagas::saga::recover(*spec, id, records, *s.log);
      if (!machine) {
        spdlog::error("saga {}: its log breaks the saga rules; left alone", id);
        continue;
      }
      auto r = std::make_unique<running>(id, *spec, std::move(*machine));
      spdlog::info("saga {} ({}) resumed at step {}", id, spec->type,
                   r->machine.current_step());
      s.active[id] = std::move(r);
    }
    if (s.active_gauge)
      s.active_gauge->store(static_cast<int64_t>(s.active.size()));
    std::vector<std::string> ids;
    for (auto& [id, r] : s.active)
      ids.push_back(id);
    for (auto& id : ids)
      drive(self, id);
  };
  ask_live_peers(
    self, json{{"cmd", "saga.dump"}},
    [self](json reply) { merge_dump(self, reply); }, finish);
}

/// On a follower: asks the leader for every unfinished saga of this copy
/// that the leader has not pushed for `stale_after_ms`. A member that was
/// down when a saga finished, while the leader restarted (and so forgot
/// which sagas it finished lately, which it pushes for 30 s), would show it
/// running for good otherwise (docs/sagas.md, "The replicated log").
void catch_up(coord_pointer self) {
  auto& st = self->state;
  if (st.leader || st.leader_name.empty()
      || st.leader_name == st.cluster().self_name)
    return;
  auto now = now_ms();
  auto ids = json::array();
  for (auto& [id, records] : st.log->copy()) {
    if (records.empty() || records.back().kind == sagas::record_kind::finished) {
      st.heard.erase(id);
      continue;
    }
    auto i = st.heard.emplace(id, st.started_at).first;
    if (now - i->second < stale_after_ms)
      continue;
    i->second = now;  // one question per stale_after_ms
    ids.push_back(id);
  }
  if (ids.empty())
    return;
  control(self, st.leader_name, json{{"cmd", "saga.dump"}, {"ids", ids}}, {},
          [self](json reply, std::string) { merge_dump(self, reply); });
}

void step_down(coord_pointer self, const std::string& leader) {
  auto& st = self->state;
  if (!st.leader)
    return;
  spdlog::info("saga coordinator: {} hands the lead to {}",
               st.cluster().self_name, leader);
  st.leader = false;
  st.taking_over = false;
  ++st.lead_gen;
  st.active.clear();  // the new leader resumes them from the log
  st.commit_queue.clear();
  st.commit_busy = false;
  if (st.leader_gauge)
    st.leader_gauge->store(0);
  if (st.active_gauge)
    st.active_gauge->store(0);
}

void decide(coord_pointer self) {
  auto& st = self->state;
  auto snapshot = st.members;  // handle_of may replace st.members
  auto& members = *snapshot;
  auto left = map_left(st.map);
  std::string best;
  for (size_t i = 0; i < members.size(); ++i) {
    bool live = i == st.cluster().self_index || (i < st.up.size() && st.up[i]);
    if (!live || left.count(members[i].name))
      continue;
    if (best.empty() || members[i].name < best)
      best = members[i].name;
  }
  st.leader_name = best;
  // Right after a start the links are still connecting: a smaller member
  // may well be alive. Wait for them (at most 10 s) before leading.
  bool settled = now_ms() - st.started_at > 10'000;
  if (!settled) {
    settled = true;
    for (size_t i = 0; i < members.size(); ++i)
      if (i != st.cluster().self_index && i < st.connecting.size()
          && st.connecting[i])
        settled = false;
  }
  if (best == st.cluster().self_name && st.node && st.map.is_object()
      && settled) {
    if (!st.leader && ++st.lead_votes >= 2)
      take_over(self);
  } else {
    st.lead_votes = 0;
    step_down(self, best);
  }
}

json summary(coord_pointer self, const std::string& id,
             const std::vector<saga_record>& records, bool with_records);

/// The `stats` view (settings->sagas.board): the leader, the running sagas
/// and the newest finished ones, from this member's copy of the log.
void publish(coord_pointer self) {
  auto& st = self->state;
  auto running_list = json::array();
  std::vector<std::pair<millis, std::string>> done;
  for (auto& [id, records] : st.log->copy()) {
    if (records.empty())
      continue;
    if (records.back().kind == sagas::record_kind::finished)
      done.emplace_back(records.back().at, id);
    else
      running_list.push_back(summary(self, id, records, false));
  }
  std::sort(done.rbegin(), done.rend());
  auto recent = json::array();
  for (size_t i = 0; i < done.size() && i < 5; ++i)
    recent.push_back(summary(self, done[i].second,
                             st.log->copy().at(done[i].second), false));
  json out{{"leader", st.leader_name},
           {"leading", st.leader},
           {"running", std::move(running_list)},
           {"recent", std::move(recent)}};
  st.settings->sagas.board->set(dump(out));
}

/// Every tick: the links' status, this node's map, the lead; the leader
/// pushes the history of every unfinished saga.
void tick(coord_pointer self) {
  auto& st = self->state;
  ++st.ticks;
  publish(self);
  refresh_members(self);
  auto snapshot = st.members;  // handle_of may replace st.members
  auto& members = *snapshot;
  st.up.resize(members.size(), false);
  st.connecting.resize(members.size(), true);
  for (size_t i = 0; i < members.size() && i < st.links.size(); ++i) {
    if (i == st.cluster().self_index || !st.links[i])
      continue;
    self->request(st.links[i], std::chrono::seconds{1}, cluster_atom::value)
      .then(
        [self, i](std::string& text) {
          auto j = json::parse(text, nullptr, false);
          auto status = j.is_discarded() ? std::string{}
                                         : j.value("status", std::string{});
          self->state.up[i] = status == "up";
          self->state.connecting[i] = status == "connecting";
        },
        [self, i](caf::error&) { self->state.up[i] = false; });
  }
  with_map(self, [self](bool) { decide(self); });
  if (st.ticks % replace_every == 0)
    catch_up(self);
  if (st.leader && !st.taking_over && st.ticks % replace_every == 0) {
    auto now = now_ms();
    std::vector<std::string> ids;
    for (auto& [id, r] : st.active)
      ids.push_back(id);
    for (auto i = st.finished_lately.begin(); i != st.finished_lately.end();)
      if (now - i->second > 30'000) {
        i = st.finished_lately.erase(i);
      } else {
        ids.push_back(i->first);
        ++i;
      }
    for (auto& id : ids) {
      auto i = st.log->copy().find(id);
      if (i == st.log->copy().end())
        continue;
      json cmd{{"cmd", "saga.replace"}, {"id", id},
               {"records", records_json(i->second)}};
      for (auto& name : live_peers(self))
        control(self, name, cmd, {}, [](json, std::string) {});
    }
  }
  self->delayed_send(self, tick_interval, saga_tick_atom::value);
}

// -- client ops --------------------------------------------------------------------

json summary(coord_pointer self, const std::string& id,
             const std::vector<saga_record>& records, bool with_records) {
  auto& st = self->state;
  json out{{"id", id}};
  if (records.empty())
    return out;
  auto type = records.front().type;
  out["type"] = type;
  auto params = json::parse(records.front().detail, nullptr, false);
  out["params"] = params.is_discarded() ? json{} : params;
  out["started_at"] = records.front().at;
  out["updated_at"] = records.back().at;
  if (params.is_object() && params.contains("parent"))
    out["parent"] = params["parent"];
  if (auto* spec = sagas::membership_spec(type)) {
    sagas::memory_saga_log scratch;
    if (auto m = sagas::saga::recover(*spec, id, records, scratch)) {
      out["phase"] = std::string{to_string(m->phase())};
      auto step = m->current_step();
      out["step"] = step < spec->steps.size() ? spec->steps[step].name
                                              : std::string{"done"};
      out["steps"] = spec->steps.size();
      out["attempts"] = m->attempts();
      out["error"] = m->error();
      out["past_pivot"] = m->past_pivot();
      if (m->finished())
        out["finished_at"] = records.back().at;
    }
  }
  json progress = json::object();
  if (auto i = st.active.find(id); i != st.active.end()) {
    auto& r = *i->second;
    progress = {{"bytes_moved", r.bytes_done}, {"bytes_total", r.bytes_total},
                {"partitions_done", r.partitions_done},
                {"partitions_total", r.partitions_total}};
    if (!r.detail.empty())
      progress["detail"] = r.detail;
  } else {
    // Finished (or driven elsewhere): what the log's results say (a move
    // ships bytes in its copy and its ship step).
    uint64_t bytes = 0;
    for (auto& rec : records)
      if (rec.kind == sagas::record_kind::step_done) {
        auto res = json::parse(rec.detail, nullptr, false);
        if (res.is_object() && res.contains("bytes")) {
          bytes += field_of(res, "bytes", uint64_t{0});
          progress["bytes_moved"] = progress["bytes_total"] = bytes;
        }
        if (res.is_object() && res.contains("moved"))
          progress["partitions_done"] = res["moved"];
        if (res.is_array())
          progress["partitions_total"] = res.size();
      }
  }
  out["progress"] = progress;
  if (with_records) {
    auto arr = json::array();
    for (auto& rec : records) {
      json e{{"kind", std::string{to_string(rec.kind)}}, {"step", rec.step},
             {"attempt", rec.attempt}, {"at", rec.at}};
      if (!rec.detail.empty())
        e["detail"] = rec.detail;
      arr.push_back(std::move(e));
    }
    out["records"] = std::move(arr);
    auto children = json::array();
    auto prefix = id + ".p";
    auto& copy = st.log->copy();
    for (auto i = copy.lower_bound(prefix);
         i != copy.end() && i->first.rfind(prefix, 0) == 0; ++i)
      children.push_back(summary(self, i->first, i->second, false));
    out["children"] = std::move(children);
  }
  return out;
}

std::string reply_error(const json& id, cqrs::error_code code,
                        std::string message) {
  return error_reply(id, code, std::move(message));
}

/// Validation of a new membership saga against the map and what runs.
std::optional<std::pair<cqrs::error_code, std::string>>
check_start(coord_pointer self, const std::string& type, const json& params) {
  using cqrs::error_code;
  auto& st = self->state;
  auto& map = st.map;
  auto nodes = map_nodes(map);
  auto left = map_left(map);
  auto active_members = map_active(map);
  auto member = [&](const std::string& n) {
    return std::find(nodes.begin(), nodes.end(), n) != nodes.end();
  };
  for (auto& [id, r] : st.active) {
    // An eviction changes the owners of partitions any saga may be moving.
    if (type == "evict" || r->spec->type == "evict")
      return std::make_pair(error_code::saga_conflict,
                            "saga " + id + " (" + r->spec->type
                              + ") is running: wait for it or abort it");
    if (type != "move" && r->spec->type != "move")
      return std::make_pair(error_code::saga_conflict,
                            "membership saga " + id + " is running");
    if (type == "move" && r->spec->type == "move"
        && r->params.value("partition", uint32_t{~0u})
             == params.value("partition", uint32_t{~0u - 1}))
      return std::make_pair(error_code::saga_conflict,
                            "partition "
                              + std::to_string(params.value("partition", 0))
                              + " is being moved by " + id);
  }
  auto node = params.value("node", std::string{});
  if (type == "move") {
    auto p = params.value("partition", uint32_t{0});
    if (p >= map_owners(map).size())
      return std::make_pair(error_code::bad_request,
                            "partition " + std::to_string(p) + " does not exist");
    auto to = params.value("to", std::string{});
    if (!member(to))
      return std::make_pair(error_code::bad_request,
                            "unknown node '" + to + "'");
    if (left.count(to))
      return std::make_pair(error_code::bad_request,
                            to + " has left the cluster (join it first)");
    if (owner_of(map, p) == to)
      return std::make_pair(error_code::bad_request,
                            "partition " + std::to_string(p)
                              + " is already owned by " + to);
  } else if (type == "decommission" || type == "evict") {
    if (!member(node))
      return std::make_pair(error_code::bad_request,
                            "unknown node '" + node + "'");
    if (left.count(node))
      return std::make_pair(error_code::bad_request, node + " has already left");
    if (active_members.size() < 2)
      return std::make_pair(error_code::bad_request,
                            type == "evict"
                              ? "the last member cannot be evicted"
                              : "the last member cannot be decommissioned");
    if (type == "decommission")
      return std::nullopt;
    if (node == st.cluster().self_name)
      return std::make_pair(error_code::bad_request,
                            "a member cannot evict itself (ask another one)");
    auto i = std::find(nodes.begin(), nodes.end(), node) - nodes.begin();
    if (static_cast<size_t>(i) < st.up.size() && st.up[i])
      return std::make_pair(error_code::bad_request,
                            node + " is up: decommission it (evict is for a "
                                   "member that is gone for good)");
  } else if (type == "join") {
    if (!member(node))
      return std::make_pair(error_code::bad_request,
                            "unknown node '" + node
                              + "' (a new node joins by starting it with "
                                "cairn.cluster.seeds)");
    auto owners = map_owners(map);
    if (!left.count(node)
        && std::find(owners.begin(), owners.end(), node) != owners.end())
      return std::make_pair(error_code::bad_request,
                            node + " is already a member that owns partitions "
                                   "(use rebalance)");
  }
  return std::nullopt;
}

using deliver_fn = std::function<void(std::string)>;

/// A non-leader passes the request to the leader.
void pass_to_leader(coord_pointer self, const std::string& line, const json& id,
                    deliver_fn rp) {
  auto& st = self->state;
  if (st.leader_name.empty() || st.leader_name == st.cluster().self_name) {
    rp(reply_error(id, cqrs::error_code::unavailable,
                           "no saga coordinator is leading yet (retry)"));
    return;
  }
  control(self, st.leader_name, json{{"cmd", "saga.request"}, {"line", line}},
          {}, [rp, id](json reply, std::string) {
            if (reply.contains("reply") && reply["reply"].is_string())
              rp(reply["reply"].get<std::string>());
            else
              rp(reply_error(id, cqrs::error_code::unavailable,
                                     "saga leader: " + why(reply)));
          },
          std::chrono::seconds{10});
}

/// saga.join with an "address": a node started with cairn.cluster.seeds.
/// Not a member yet: admitted, then a join saga gives it its share. A
/// member at that address already (the node asks again after a restart,
/// or its first answer was lost): the current map, and a join saga if it
/// owns nothing and none runs. The reply carries the map the node starts
/// from.
void join_through_seed(coord_pointer self, const std::string& node,
                       const std::string& address, size_t wanted_partitions,
                       const json& id, deliver_fn rp) {
  using cqrs::error_code;
  with_map(self, [self, node, address, wanted_partitions, id, rp](bool good) {
    if (!good) {
      rp(reply_error(id, error_code::unavailable,
                     "the partition map is not available"));
      return;
    }
    auto partitions = map_owners(self->state.map).size();
    if (wanted_partitions != 0 && wanted_partitions != partitions) {
      rp(reply_error(id, error_code::bad_request,
                     "the cluster has " + std::to_string(partitions)
                       + " partitions, " + node + " is configured with "
                       + std::to_string(wanted_partitions)
                       + " (cairn.partitions must be equal on every node)"));
      return;
    }
    refresh_members(self);
    for (auto& m : *self->state.members)
      if (m.name == node
          && m.host + ":" + std::to_string(m.port) != address) {
        rp(reply_error(id, error_code::bad_request,
                       "member " + node + " is at " + m.host + ":"
                         + std::to_string(m.port) + ", not " + address
                         + " (a member keeps its address)"));
        return;
      }
    admit(self, node, address, [self, node, id, rp](bool ok, std::string why) {
      auto& st = self->state;
      if (!ok) {
        rp(reply_error(id, error_code::unavailable,
                       "admitting " + node + ": " + why));
        return;
      }
      json out{{"ok", true}, {"leader", st.cluster().self_name}};
      for (auto& [sid, r] : st.active)
        if (r->spec->type == "join" && r->params.value("node", "") == node)
          out["id"] = sid;
      json params{{"node", node}};
      if (!out.contains("id") && !check_start(self, "join", params)) {
        auto sid = "join-" + std::to_string(now_ms()) + "-"
                   + std::to_string(++st.next_id);
        if (auto err = start_saga(self, "join", params, sid)) {
          rp(reply_error(id, error_code::internal, *err));
          return;
        }
        out["id"] = sid;
        out["type"] = "join";
      }
      out["map"] = st.map;
      rp(finish_reply(out, id));
    });
  });
}

void handle_line(coord_pointer self, const std::string& line,
                 deliver_fn rp) {
  using cqrs::error_code;
  auto& st = self->state;
  auto req = json::parse(line, nullptr, false);
  auto id = request_id(req);
  if (req.is_discarded() || !req.is_object()) {
    rp(reply_error(id, error_code::bad_request,
                           "request is not a JSON object"));
    return;
  }
  auto op = req.value("op", std::string{});
  if (!st.cluster().enabled) {
    rp(reply_error(id, error_code::unavailable,
                           "membership sagas need a cluster "
                           "(cairn.cluster.nodes)"));
    return;
  }
  if (!st.leader || st.taking_over) {
    pass_to_leader(self, line, id, rp);
    return;
  }
  if (op == "saga.list") {
    auto limit = req.value("limit", size_t{100});
    std::vector<std::pair<millis, std::string>> order;
    for (auto& [sid, records] : st.log->copy())
      if (!records.empty())
        order.emplace_back(records.front().at, sid);
    std::sort(order.rbegin(), order.rend());
    auto arr = json::array();
    for (auto& [at, sid] : order) {
      if (arr.size() >= limit)
        break;
      arr.push_back(summary(self, sid, st.log->copy().at(sid), false));
    }
    json out{{"ok", true}, {"leader", st.cluster().self_name},
             {"active", st.active.size()}, {"sagas", std::move(arr)}};
    rp(finish_reply(out, id));
    return;
  }
  if (op == "saga.get") {
    auto sid = req.value("id", std::string{});
    auto i = st.log->copy().find(sid);
    if (i == st.log->copy().end()) {
      rp(reply_error(id, error_code::unknown_saga,
                             "no saga '" + sid + "'"));
      return;
    }
    json out{{"ok", true}, {"leader", st.cluster().self_name},
             {"saga", summary(self, sid, i->second, true)}};
    rp(finish_reply(out, id));
    return;
  }
  if (op == "saga.abort") {
    auto sid = req.value("id", std::string{});
    auto i = st.active.find(sid);
    if (i == st.active.end()) {
      rp(reply_error(id, st.log->copy().count(sid)
                                   ? error_code::saga_conflict
                                   : error_code::unknown_saga,
                             "saga '" + sid + "' is not running"));
      return;
    }
    auto& r = *i->second;
    if (r.machine.past_pivot()) {
      rp(reply_error(id, error_code::saga_conflict,
                             "saga '" + sid + "' is past its point of no "
                             "return and can only finish"));
      return;
    }
    if (!r.machine.abort(req.value("reason", std::string{"operator"}),
                         now_ms())) {
      rp(reply_error(id, error_code::internal,
                             "the saga log refused the abort"));
      return;
    }
    // An attempt in flight is abandoned; its compensation runs next.
    r.busy = false;
    ++r.gen;
    drive(self, sid);
    json out{{"ok", true}, {"id", sid}, {"phase", "compensating"}};
    rp(finish_reply(out, id));
    return;
  }
  std::string type;
  json params = json::object();
  if (op == "saga.move") {
    type = "move";
    if (!req.contains("partition") || !req["partition"].is_number_unsigned()
        || !req.contains("node") || !req["node"].is_string()) {
      rp(reply_error(id, error_code::bad_request,
                             "saga.move needs \"partition\" (a number) and "
                             "\"node\" (the new owner)"));
      return;
    }
    params = {{"partition", req["partition"].get<uint32_t>()},
              {"to", req["node"].get<std::string>()}};
  } else if (op == "saga.decommission" || op == "saga.join"
             || op == "saga.evict") {
    type = op.substr(5);
    if (!req.contains("node") || !req["node"].is_string()) {
      rp(reply_error(id, error_code::bad_request,
                             op + " needs \"node\""));
      return;
    }
    params = {{"node", req["node"].get<std::string>()}};
    if (op == "saga.join" && req.contains("address")) {
      auto node = req["node"].get<std::string>();
      if (!req["address"].is_string()
          || !cqrs::parse_member_address(node + "@"
                                         + req["address"].get<std::string>())) {
        rp(reply_error(id, error_code::bad_request,
                       "saga.join: \"address\" must be the joining node's "
                       "cluster port as host:port"));
        return;
      }
      auto partitions = req.contains("partitions")
                            && req["partitions"].is_number_unsigned()
                          ? req["partitions"].get<size_t>()
                          : size_t{0};
      join_through_seed(self, node, req["address"].get<std::string>(),
                        partitions, id, rp);
      return;
    }
  } else if (op == "saga.rebalance") {
    type = "rebalance";
  } else {
    rp(reply_error(id, error_code::unknown_op,
                           "unknown saga op '" + op + "' (saga.list, "
                           "saga.get, saga.move, saga.decommission, "
                           "saga.rebalance, saga.join, saga.evict, "
                           "saga.abort)"));
    return;
  }
  with_map(self, [self, type, params, id, rp](bool good) {
    if (!good) {
      rp(reply_error(id, error_code::unavailable,
                             "the partition map is not available"));
      return;
    }
    if (auto problem = check_start(self, type, params)) {
      rp(reply_error(id, problem->first, problem->second));
      return;
    }
    auto sid = type + "-" + std::to_string(now_ms()) + "-"
               + std::to_string(++self->state.next_id);
    if (auto err = start_saga(self, type, params, sid)) {
      rp(reply_error(id, error_code::internal, *err));
      return;
    }
    json out{{"ok", true}, {"id", sid}, {"type", type},
             {"leader", self->state.cluster().self_name}};
    rp(finish_reply(out, id));
  });
}

// -- control commands between coordinators -------------------------------------------

void handle_control(coord_pointer self, const std::string& text,
                    caf::response_promise rp) {
  auto& st = self->state;
  auto cmd = json::parse(text, nullptr, false);
  auto answer = [&rp](const json& j) mutable {
    rp.deliver(dump(j), std::string{});
  };
  if (cmd.is_discarded() || !cmd.is_object()) {
    answer(control_error("bad_request", "control command is not a JSON object"));
    return;
  }
  auto name = cmd.value("cmd", std::string{});
  if (name == "saga.dump") {
    // All sagas, or those named in "ids" (a follower catching up).
    json sagas = json::object();
    auto& copy = st.log->copy();
    if (auto ids = cmd.find("ids"); ids != cmd.end() && ids->is_array()) {
      for (auto& id : *ids)
        if (auto i = id.is_string() ? copy.find(id.get<std::string>()) : copy.end();
            i != copy.end())
          sagas[i->first] = records_json(i->second);
    } else {
      for (auto& [id, records] : copy)
        sagas[id] = records_json(records);
    }
    answer(json{{"ok", true}, {"sagas", std::move(sagas)}});
    return;
  }
  if (name == "saga.append" || name == "saga.replace") {
    if (st.leader) {
      answer(control_error("leader", st.cluster().self_name
                                       + " leads; it does not follow"));
      return;
    }
    auto id = cmd.value("id", std::string{});
    bool good = false;
    if (name == "saga.append") {
      auto r = sagas::decode(cmd.value("record", std::string{}));
      good = r && st.log->follow(id, *r, cmd.value("seq", size_t{0}));
    } else if (auto recs = records_of(cmd.value("records", json::array()))) {
      auto& copy = st.log->copy();
      auto i = copy.find(id);
      good = (i != copy.end() && i->second == *recs) || st.log->replace(id, *recs);
    }
    if (good)
      st.heard[id] = now_ms();
    answer(good ? json{{"ok", true}}
                : control_error("out_of_order", "record not applied"));
    return;
  }
  if (name == "saga.request") {
    auto line = cmd.value("line", std::string{});
    if (!st.leader || st.taking_over) {
      answer(control_error("not_leader", st.cluster().self_name
                                           + " does not lead (leader: "
                                           + st.leader_name + ")"));
      return;
    }
    handle_line(self, line, [rp](std::string reply) mutable {
      rp.deliver(dump(json{{"ok", true}, {"reply", std::move(reply)}}),
                 std::string{});
    });
    return;
  }
  answer(control_error("unknown_command", "unknown saga command '" + name + "'"));
}

// -- the actor -------------------------------------------------------------------------

caf::behavior coordinator_impl(coord_pointer self, settings_ptr settings,
                               std::vector<caf::actor> links) {
  auto& st = self->state;
  st.settings = settings;
  st.links = std::move(links);
  refresh_members(self);
  st.pacer = sagas::byte_pacer{settings->sagas.bytes_per_second};
  st.started_at = now_ms();
  if (const char* delay = std::getenv("CAIRN_TEST_SAGA_STEP_DELAY_MS"))
    st.test_step_delay = std::atol(delay);
  std::unique_ptr<sagas::saga_log> disk;
  if (!settings->sagas.path.empty())
    disk = sagas::open_leveldb_saga_log(settings->sagas.path);
  else
    disk = std::make_unique<sagas::memory_saga_log>();
  st.log = std::make_unique<mirrored_log>(std::move(disk));
  if (st.log->corrupt() > 0)
    spdlog::warn("saga log: {} records did not decode and were skipped",
                 st.log->corrupt());
  // The leader pushes every append to the live members.
  st.log->on_append = [self](const std::string& id, const saga_record& r,
                             size_t seq) {
    auto& s = self->state;
    if (!s.leader)
      return;
    json cmd{{"cmd", "saga.append"}, {"id", id}, {"record", sagas::encode(r)},
             {"seq", seq}};
    for (auto& name : live_peers(self))
      control(self, name, cmd, {}, [](json, std::string) {});
  };
  auto& metrics = *settings->metrics;
  self->track_mailbox(metrics);
  st.active_gauge = &metrics.gauge("cairn_sagas_active",
                                   "Membership sagas this node drives now");
  st.leader_gauge = &metrics.gauge(
    "cairn_saga_leader", "1 while this node's saga coordinator leads");
  st.bytes_counter = &metrics.counter(
    "cairn_handoff_shipped_bytes_total",
    "Partition snapshot bytes shipped by the handoffs this node drove");
  auto outcome = [&metrics](const char* o) {
    return &metrics.counter("cairn_sagas_finished_total",
                            "Membership sagas finished, by outcome",
                            {{"outcome", o}});
  };
  st.succeeded = outcome("succeeded");
  st.compensated = outcome("compensated");
  st.stuck = outcome("stuck");
  if (settings->cluster.enabled)
    self->send(self, saga_tick_atom::value);
  return {
    [self](hello_atom, caf::actor& node) { self->state.node = std::move(node); },
    [self](saga_tick_atom) { tick(self); },
    [self](saga_wake_atom, const std::string& id) {
      auto& s = self->state;
      if (auto i = s.active.find(id); i != s.active.end())
        i->second->wake_pending = false;
      drive(self, id);
    },
    [self](saga_wake_atom, uint64_t ticket) {
      auto& s = self->state;
      auto i = s.deferred.find(ticket);
      if (i == s.deferred.end())
        return;
      auto f = std::move(i->second);
      s.deferred.erase(i);
      f();
    },
    [self](saga_due_atom, const std::string& id, uint64_t gen) {
      // The attempt's deadline: no answer counts as a failure.
      auto& s = self->state;
      auto i = s.active.find(id);
      if (i == s.active.end() || i->second->gen != gen || !i->second->busy)
        return;
      auto& r = *i->second;
      r.busy = false;
      ++r.gen;
      if (!r.machine.failed("timeout", now_ms()))
        spdlog::error("saga {}: the log refused an outcome", id);
      drive(self, id);
    },
    [self](request_atom, std::string& line) -> caf::result<std::string> {
      auto rp = self->make_response_promise<std::string>();
      handle_line(self, line,
                  [rp](std::string reply) mutable { rp.deliver(std::move(reply)); });
      return rp;
    },
    [self](control_atom, std::string& cmd, std::string&) {
      auto rp = self->make_response_promise();
      handle_control(self, cmd, rp);
      return rp;
    },
  };
}

} // namespace

caf::actor spawn_saga_coordinator(caf::actor_system& sys, settings_ptr settings,
                                  std::vector<caf::actor> links) {
  return sys.spawn(coordinator_impl, std::move(settings), std::move(links));
}

} // namespace cairn::actors
