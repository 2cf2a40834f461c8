#include "actors/console_commands.hpp"

#include "actors/introspection.hpp"
#include "actors/messages.hpp"
#include "actors/node.hpp"
#include "actors/reply.hpp"
#include "runtime/connection_context.hpp"

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/response_promise.hpp>
#include <caf/send.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>

namespace cairn::actors {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

/// Timeout for one introspection or control request to a local actor.
constexpr auto actor_timeout = 3s;

/// How long `snapshot` waits for one snapshot to be written.
constexpr auto snapshot_wait = 10s;

std::string fail(const std::string& message) {
  return json{{"ok", false}, {"error", message}}.dump();
}

std::string render(const caf::error& err) {
  return to_string(err);
}

// -- the actor registry -------------------------------------------------------

/// One actor of the node as the console names it.
struct actor_entry {
  std::string name;
  std::string kind;
  caf::actor handle;
  int64_t partition = -1;
};

using registry = std::vector<actor_entry>;

/// Builds the registry of `n` (asks the parser pool for its workers) and
/// calls `done(entries)` on `self`'s thread.
void with_registry(caf::event_based_actor* self, node* n,
                   std::function<void(registry)> done) {
  auto base = std::make_shared<registry>();
  base->push_back({"node", "node", caf::actor_cast<caf::actor>(self), -1});
  base->push_back({"ingestor", "ingestor", n->ingestor(), -1});
  base->push_back(
    {"query_coordinator", "query_coordinator", n->coordinator(), -1});
  auto add_partitions = [n](registry& r) {
    auto& parts = n->partitions();
    for (size_t p = 0; p < parts.size(); ++p)
      if (parts[p])
        r.push_back({"p" + std::to_string(p), "partition",
                     caf::actor_cast<caf::actor>(parts[p]),
                     static_cast<int64_t>(p)});
  };
  if (auto& table = n->settings()->cluster.members) {
    auto members = table->members();
    auto links = table->links();
    for (size_t i = 0; i < links->size() && i < members->size(); ++i)
      if ((*links)[i])
        base->push_back({"link-" + (*members)[i].name, "peer_link",
                         (*links)[i], -1});
  }
  if (!n->parsers()) {
    add_partitions(*base);
    done(std::move(*base));
    return;
  }
  self
    ->request(n->parsers(), actor_timeout, caf::sys_atom::value,
              caf::get_atom::value)
    .then(
      [base, done, add_partitions](std::vector<caf::actor>& workers) {
        for (size_t i = 0; i < workers.size(); ++i)
          base->push_back(
            {"parser-" + std::to_string(i), "parser", workers[i], -1});
        add_partitions(*base);
        done(std::move(*base));
      },
      [base, done, add_partitions](caf::error&) {
        add_partitions(*base);
        done(std::move(*base));
      });
}

/// Introspects every entry in parallel; `done(records)` gets one object per
/// entry, in registry order, each with name and kind (and "error" if the
/// actor did not answer).
void introspect_all(caf::event_based_actor* self, registry entries,
                    std::function<void(json)> done) {
  struct gather {
    json records = json::array();
    size_t outstanding = 0;
  };
  auto g = std::make_shared<gather>();
  g->outstanding = entries.size();
  for (auto& e : entries)
    g->records.push_back({{"name", e.name}, {"kind", e.kind}});
  if (entries.empty()) {
    done(std::move(g->records));
    return;
  }
  auto finish = [g, done] {
    if (--g->outstanding == 0)
      done(std::move(g->records));
  };
  for (size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].kind == "peer_link") {
      // Peer links describe themselves through the cluster view.
      self->request(entries[i].handle, actor_timeout, cluster_atom::value)
        .then(
          [g, i, finish](std::string& text) {
            g->records[i]["state"] = json::parse(text, nullptr, false);
            finish();
          },
          [g, i, finish](caf::error& err) {
            g->records[i]["error"] = render(err);
            finish();
          });
      continue;
    }
    self->request(entries[i].handle, actor_timeout, introspect_atom::value)
      .then(
        [g, i, finish](std::string& text) {
          auto rec = json::parse(text, nullptr, false);
          if (rec.is_object())
            for (auto& [k, v] : rec.items())
              g->records[i][k] = v;
          finish();
        },
        [g, i, finish](caf::error& err) {
          g->records[i]["error"] = render(err);
          finish();
        });
  }
}

const actor_entry* find_entry(const registry& r, const std::string& name) {
  for (auto& e : r)
    if (e.name == name)
      return &e;
  return nullptr;
}

std::string known_names(const registry& r) {
  std::string out;
  size_t shown = 0;
  for (auto& e : r) {
    if (e.kind == "partition" && e.partition > 1) {
      out += ", ..., p" + std::to_string(r.back().partition);
      break;
    }
    if (shown++ > 0)
      out += ", ";
    out += e.name;
  }
  return out;
}

/// Parses "3", "p3" or 3 into a partition index; -1 if malformed.
int64_t parse_partition(const json& v) {
  if (v.is_number_integer())
    return v.get<int64_t>();
  if (!v.is_string())
    return -1;
  auto s = v.get<std::string>();
  if (!s.empty() && s[0] == 'p')
    s.erase(0, 1);
  if (s.empty() || s.size() > 9
      || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stoll(s);
}

// -- helper actors --------------------------------------------------------------

/// Takes snapshots of `parts` one after the other and answers
/// (snapshot_atom) with {"ok":true,"snapshots":[...]} once each is written
/// (or could not be written within `snapshot_wait`). Quits after answering.
caf::behavior snapshot_waiter(
  caf::event_based_actor* self,
  std::vector<std::pair<uint32_t, partition_actor>> parts) {
  struct job {
    std::vector<std::pair<uint32_t, partition_actor>> parts;
    size_t next = 0;
    uint64_t covered = 0;
    std::chrono::steady_clock::time_point started;
    json results = json::array();
    caf::response_promise rp;
    bool failed = false;
  };
  auto j = std::make_shared<job>();
  j->parts = std::move(parts);
  auto finish = [self, j] {
    json out{{"ok", !j->failed}, {"snapshots", j->results}};
    if (j->failed)
      out["error"] = "some snapshots were not written";
    j->rp.deliver(out.dump());
    self->quit();
  };
  // done(): records the current partition's result and moves on to the
  // next one (through the mailbox: start() runs on ok_atom).
  auto done = [self, j](json result, bool ok = true) {
    j->failed = j->failed || !ok;
    j->results.push_back(std::move(result));
    ++j->next;
    caf::anon_send(caf::actor_cast<caf::actor>(self), caf::ok_atom::value);
  };
  auto on_error = [done](uint32_t id) {
    return [done, id](caf::error& err) {
      done({{"partition", id}, {"written", false}, {"error", render(err)}},
           false);
    };
  };
  // start(): asks the current partition for a snapshot; poll(): waits until
  // its stats show the snapshot written.
  auto poll = std::make_shared<std::function<void()>>();
  auto start = std::make_shared<std::function<void()>>();
  *start = [self, j, finish, poll, done, on_error] {
    if (j->next >= j->parts.size()) {
      finish();
      return;
    }
    auto [id, hdl] = j->parts[j->next];
    j->started = std::chrono::steady_clock::now();
    self->request(hdl, actor_timeout, snapshot_atom::value)
      .then(
        [j, poll, done, id = id](uint64_t covered) {
          j->covered = covered;
          if (covered == 0) {
            done({{"partition", id},
                  {"covered_seq", 0},
                  {"written", false},
                  {"note", "empty partition: nothing to snapshot"}});
            return;
          }
          (*poll)();
        },
        on_error(id));
  };
  *poll = [self, j, done, on_error] {
    auto [id, hdl] = j->parts[j->next];
    self->request(hdl, actor_timeout, stats_atom::value)
      .then(
        [self, j, done, id = id](partition_stats& st) {
          auto elapsed = std::chrono::steady_clock::now() - j->started;
          auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      elapsed)
                      .count();
          if (st.snapshot_seq >= j->covered)
            done({{"partition", id},
                  {"covered_seq", st.snapshot_seq},
                  {"written", true},
                  {"took_ms", ms}});
          else if (elapsed < snapshot_wait)
            self->delayed_send(self, 20ms, tick_atom::value);
          else
            done({{"partition", id},
                  {"covered_seq", j->covered},
                  {"written", false},
                  {"error", "snapshot not written within 10s"}},
                 false);
        },
        on_error(id));
  };
  return {
    [=](snapshot_atom) -> caf::result<std::string> {
      j->rp = self->make_response_promise();
      (*start)();
      return caf::delegated<std::string>{};
    },
    [=](caf::ok_atom) { (*start)(); },
    [=](tick_atom) { (*poll)(); },
  };
}

/// Sends one request line through the parser pool as a connection of its
/// own and answers (ingest_atom, line) with the reply line.
caf::behavior line_task(caf::event_based_actor* self, node* n, uint64_t id) {
  auto rp = std::make_shared<caf::response_promise>();
  return {
    [=](ingest_atom, std::string& line) -> caf::result<std::string> {
      *rp = self->make_response_promise();
      auto me = caf::actor_cast<caf::actor>(self);
      auto ctx = std::make_shared<runtime::connection_context>(
        id, "console", [me](uint64_t, std::string text) {
          caf::anon_send(me, caf::ok_atom::value, std::move(text));
        });
      runtime::chunk c;
      c.conn = std::move(ctx);
      c.data = std::move(line);
      for (auto& ch : c.data)
        if (ch == '\n' || ch == '\r')
          ch = ' ';
      c.data += '\n';
      c.barrier = true;
      n->dispatch(std::move(c));
      self->delayed_send(self, 60s, tick_atom::value);
      return caf::delegated<std::string>{};
    },
    [=](caf::ok_atom, std::string& text) {
      while (!text.empty() && text.back() == '\n')
        text.pop_back();
      rp->deliver(text.empty() ? std::string{"{\"ok\":true}"} : text);
      self->quit();
    },
    [=](tick_atom) {
      rp->deliver(fail("no reply from the parser pool within 60s"));
      self->quit();
    },
  };
}

// -- command implementations ----------------------------------------------------

using promise = caf::typed_response_promise<std::string>;

caf::result<std::string> cmd_actors(caf::event_based_actor* self, node* n,
                                    const json&) {
  auto rp = self->make_response_promise<std::string>();
  auto name = n->settings()->node_name;
  with_registry(self, n, [self, rp, name](registry r) mutable {
    introspect_all(self, std::move(r), [rp, name](json records) mutable {
      rp.deliver(json{{"ok", true}, {"node", name}, {"actors", records}}.dump());
    });
  });
  return rp;
}

caf::result<std::string> cmd_inspect(caf::event_based_actor* self, node* n,
                                     const json& req) {
  auto name = req.value("actor", std::string{});
  if (name.empty())
    return fail("inspect needs an actor name, e.g. inspect p0");
  auto rp = self->make_response_promise<std::string>();
  with_registry(self, n, [self, n, rp, name](registry r) mutable {
    auto* e = find_entry(r, name);
    if (e == nullptr) {
      rp.deliver(fail("no actor named '" + name + "' (known: " + known_names(r)
                      + ")"));
      return;
    }
    registry one{*e};
    // A partition's credits live in the ingestor: ask it too.
    if (e->kind == "partition")
      one.push_back(r[1]);
    auto p = e->partition;
    auto credits_limit = n->settings()->partition_credits;
    introspect_all(self, std::move(one),
                   [rp, p, credits_limit](json records) mutable {
                     auto out = records[0];
                     out["ok"] = !out.contains("error");
                     if (out.contains("error"))
                       out["error"] = "actor did not answer: "
                                      + out["error"].get<std::string>();
                     if (p >= 0 && records.size() > 1) {
                       auto& st = records[1]["state"];
                       json credits{{"limit", credits_limit}};
                       if (st.is_object() && st.contains("in_flight")
                           && st["in_flight"].size() > static_cast<size_t>(p)) {
                         auto used = st["in_flight"][p].get<uint64_t>();
                         credits["in_flight"] = used;
                         credits["available"] = credits_limit > used
                                                  ? credits_limit - used
                                                  : 0;
                         credits["waiting_batches"] = st["waiting"][p];
                       }
                       out["credits"] = credits;
                     }
                     rp.deliver(out.dump());
                   });
  });
  return rp;
}

/// Forwards a protocol request (op + fields) to the query coordinator.
caf::result<std::string> forward_read(caf::event_based_actor* self, node* n,
                                      const std::string& op, json request) {
  if (!request.is_object())
    return fail("the request must be a JSON object");
  request["op"] = op;
  auto rp = self->make_response_promise<std::string>();
  self
    ->request(n->coordinator(), n->settings()->query_timeout * 2,
              query_atom::value, request.dump())
    .then([rp](std::string& reply) mutable { rp.deliver(std::move(reply)); },
          [rp](caf::error& err) mutable {
            rp.deliver(fail("query coordinator: " + render(err)));
          });
  return rp;
}

/// The protocol request carried by a console request: its "request" object,
/// or the request itself without "cmd".
json protocol_request(const json& req) {
  if (auto it = req.find("request"); it != req.end())
    return *it;
  auto out = req;
  out.erase("cmd");
  out.erase("node");
  return out;
}

/// alerts: the alert.* op named by "op" (default alert.list), answered by
/// the alert manager (docs/alerting.md).
caf::result<std::string> cmd_alerts(caf::event_based_actor* self, node* n,
                                    const json& req) {
  if (!n->alert_manager())
    return fail("alerting is disabled (cairn.alerts.enabled=false)");
  auto body = protocol_request(req);
  if (!body.is_object())
    return fail("the request must be a JSON object");
  auto op = body.value("op", std::string{"alert.list"});
  if (op.rfind("alert.", 0) != 0)
    return fail("alerts: \"op\" must be an alert.* op");
  body["op"] = op;
  auto rp = self->make_response_promise<std::string>();
  self
    ->request(n->alert_manager(), n->settings()->query_timeout,
              alert_atom::value, body.dump())
    .then([rp](std::string& reply) mutable { rp.deliver(std::move(reply)); },
          [rp](caf::error& err) mutable {
            rp.deliver(fail("alert manager: " + render(err)));
          });
  return rp;
}

/// sagas: the saga.* op named by "op" (default saga.list), answered by the
/// saga coordinator's leader (docs/sagas.md).
caf::result<std::string> cmd_sagas(caf::event_based_actor* self, node* n,
                                   const json& req) {
  if (!n->saga_coordinator())
    return fail("membership sagas need a cluster (cairn.cluster.nodes)");
  auto body = protocol_request(req);
  if (!body.is_object())
    return fail("the request must be a JSON object");
  auto op = body.value("op", std::string{"saga.list"});
  if (op.rfind("saga.", 0) != 0)
    return fail("sagas: \"op\" must be a saga.* op");
  body["op"] = op;
  auto rp = self->make_response_promise<std::string>();
  self
    ->request(n->saga_coordinator(), n->settings()->query_timeout,
              request_atom::value, body.dump())
    .then([rp](std::string& reply) mutable { rp.deliver(std::move(reply)); },
          [rp](caf::error& err) mutable {
            rp.deliver(fail("saga coordinator: " + render(err)));
          });
  return rp;
}

caf::result<std::string> cmd_ingest(caf::event_based_actor* self, node* n,
                                    const json& req) {
  auto body = protocol_request(req);
  if (body.is_array())
    body = json{{"events", body}};
  else if (body.is_object() && !body.contains("events"))
    body = json{{"events", json::array({body})}};
  if (!body.is_object() || !body["events"].is_array())
    return fail("ingest needs an event object or an array of events");
  body["op"] = "ingest";
  static std::atomic<uint64_t> ids{1ull << 61};
  auto task = self->spawn(line_task, n, ids.fetch_add(1));
  auto rp = self->make_response_promise<std::string>();
  self->request(task, 90s, ingest_atom::value, body.dump())
    .then([rp](std::string& reply) mutable { rp.deliver(std::move(reply)); },
          [rp](caf::error& err) mutable {
            rp.deliver(fail("ingest: " + render(err)));
          });
  return rp;
}

/// Snapshots partitions `ids` and delivers the outcome to `rp`.
void snapshot_partitions(caf::event_based_actor* self, node* n,
                         std::vector<uint32_t> ids, promise rp) {
  if (!n->settings()->journal) {
    rp.deliver(fail("persistence is disabled (cairn.storage.enabled=false): "
                    "there is nothing to snapshot"));
    return;
  }
  std::vector<std::pair<uint32_t, partition_actor>> parts;
  for (auto p : ids)
    parts.emplace_back(p, n->partitions()[p]);
  auto waiter = self->spawn(snapshot_waiter, std::move(parts));
  auto timeout = snapshot_wait * (ids.size() + 1) + 10s;
  self->request(waiter, timeout, snapshot_atom::value)
    .then([rp](std::string& reply) mutable { rp.deliver(std::move(reply)); },
          [rp](caf::error& err) mutable {
            rp.deliver(fail("snapshot: " + render(err)));
          });
}

caf::result<std::string> cmd_snapshot(caf::event_based_actor* self, node* n,
                                      const json& req) {
  auto count = n->partitions().size();
  auto arg = req.contains("partition") ? req["partition"] : json{};
  std::vector<uint32_t> ids;
  if (arg.is_string() && arg.get<std::string>() == "all") {
    for (uint32_t p = 0; p < count; ++p)
      if (n->partitions()[p])
        ids.push_back(p);
  } else {
    auto p = parse_partition(arg);
    if (p < 0 || static_cast<size_t>(p) >= count)
      return fail("snapshot needs a partition p0..p" + std::to_string(count - 1)
                  + " or 'all', got " + (arg.is_null() ? "nothing" : arg.dump()));
    if (!n->partitions()[p])
      return fail("partition p" + std::to_string(p) + " is not on this node");
    ids.push_back(static_cast<uint32_t>(p));
  }
  auto rp = self->make_response_promise<std::string>();
  snapshot_partitions(self, n, std::move(ids), rp);
  return rp;
}

caf::result<std::string> cmd_send(caf::event_based_actor* self, node* n,
                                  const json& req) {
  auto name = req.value("actor", std::string{});
  auto msg = req.contains("message") ? req["message"] : json{};
  if (name.empty())
    return fail("send needs an actor name and a JSON message, e.g. "
                "send p0 {\"op\":\"stats\"}");
  if (!msg.is_object() || !msg.contains("op") || !msg["op"].is_string())
    return fail("the message must be a JSON object with an \"op\" string, "
                "e.g. {\"op\":\"stats\"}");
  auto op = msg["op"].get<std::string>();
  auto rp = self->make_response_promise<std::string>();
  with_registry(self, n, [self, n, rp, name, msg, op](registry r) mutable {
    auto* e = find_entry(r, name);
    if (e == nullptr) {
      rp.deliver(fail("no actor named '" + name + "' (known: " + known_names(r)
                      + ")"));
      return;
    }
    auto reply_error = [rp](caf::error& err) mutable {
      rp.deliver(fail("no reply: " + render(err)));
    };
    auto known = std::string{"introspect"};
    if (op == "introspect") {
      self->request(e->handle, actor_timeout, introspect_atom::value)
        .then(
          [rp](std::string& text) mutable {
            auto out = json::parse(text, nullptr, false);
            out["ok"] = true;
            rp.deliver(out.dump());
          },
          reply_error);
      return;
    }
    if (e->kind == "partition") {
      known += ", stats, snapshot";
      auto hdl = caf::actor_cast<partition_actor>(e->handle);
      if (op == "stats") {
        self->request(hdl, actor_timeout, stats_atom::value)
          .then(
            [rp](partition_stats& st) mutable {
              auto out = partition_stats_json(st);
              out["ok"] = true;
              rp.deliver(out.dump());
            },
            reply_error);
        return;
      }
      if (op == "snapshot") {
        snapshot_partitions(self, n, {static_cast<uint32_t>(e->partition)},
                            rp);
        return;
      }
    } else if (e->kind == "query_coordinator") {
      known += ", query, topk, series, metrics, stats";
      if (op == "query" || op == "topk" || op == "series" || op == "metrics"
          || op == "stats") {
        self
          ->request(e->handle, n->settings()->query_timeout * 2,
                    query_atom::value, msg.dump())
          .then([rp](std::string& reply) mutable { rp.deliver(reply); },
                reply_error);
        return;
      }
    } else if (e->kind == "node") {
      known += ", ping";
      if (op == "ping") {
        auto& s = *n->settings();
        rp.deliver(ping_reply(s, s.status.load()).dump());
        return;
      }
    }
    rp.deliver(fail("actor " + name + " (" + e->kind
                    + ") does not understand op '" + op + "' (known: " + known
                    + ")"));
  });
  return rp;
}

/// Asks the query coordinator for the cluster view ({"op":"cluster"}:
/// members with their peer-link and breaker state, the partition map) and
/// hands the parsed reply to `done`, which renders the answer.
caf::result<std::string>
with_cluster_view(caf::event_based_actor* self, node* n,
                  std::function<json(json&)> done) {
  auto rp = self->make_response_promise<std::string>();
  self
    ->request(n->coordinator(), 5s, query_atom::value,
              std::string{R"({"op":"cluster"})"})
    .then(
      [rp, done](std::string& text) mutable {
        auto view = json::parse(text, nullptr, false);
        if (!view.is_object() || !view.value("ok", false)) {
          rp.deliver(text);
          return;
        }
        rp.deliver(done(view).dump());
      },
      [rp](caf::error& err) mutable {
        rp.deliver(fail("query coordinator: " + render(err)));
      });
  return rp;
}

caf::result<std::string> default_nodes(caf::event_based_actor* self, node* n,
                                       const json&) {
  auto version = n->settings()->version;
  return with_cluster_view(self, n, [version](json& view) {
    auto enabled = view.value("enabled", false);
    view["mode"] = enabled ? "cluster" : "single";
    if (!enabled)
      view["note"] = "single node, no peers";
    for (auto& m : view["members"])
      if (m.value("self", false))
        m["version"] = version;
    return view;
  });
}

caf::result<std::string> default_breakers(caf::event_based_actor* self,
                                          node* n, const json&) {
  return with_cluster_view(self, n, [](json& view) {
    json out{{"ok", true}, {"node", view.value("self", "")}};
    auto& list = out["breakers"] = json::array();
    for (auto& m : view["members"]) {
      if (m.value("self", false) || !m.contains("breaker"))
        continue;
      json b = m["breaker"];
      b["peer"] = m.value("name", "");
      b["address"] = m.value("address", "");
      b["peer_status"] = m.value("status", "");
      list.push_back(std::move(b));
    }
    if (!view.value("enabled", false))
      out["note"] = "single node, no peers: no circuit breakers";
    return out;
  });
}

} // namespace

console_commands::console_commands(node& n) : node_(&n) {
  auto* np = node_;
  auto bind = [np](auto fn) -> handler {
    return [np, fn](caf::event_based_actor* self, const json& req) {
      return fn(self, np, req);
    };
  };
  handlers_["actors"] = bind(cmd_actors);
  handlers_["inspect"] = bind(cmd_inspect);
  handlers_["send"] = bind(cmd_send);
  handlers_["snapshot"] = bind(cmd_snapshot);
  handlers_["ingest"] = bind(cmd_ingest);
  handlers_["alerts"] = bind(cmd_alerts);
  handlers_["sagas"] = bind(cmd_sagas);
  handlers_["nodes"] = bind(default_nodes);
  handlers_["cluster"] = bind(default_nodes);
  handlers_["breakers"] = bind(default_breakers);
  for (auto op : {"stats", "metrics", "series", "query", "topk"}) {
    std::string name = op;
    handlers_[name] = [np, name](caf::event_based_actor* self,
                                 const json& req) {
      return forward_read(self, np, name, protocol_request(req));
    };
  }
  handlers_["commands"] = [this](caf::event_based_actor*, const json&) {
    auto& s = *node_->settings();
    return caf::result<std::string>{json{{"ok", true},
                                         {"node", s.node_name},
                                         {"version", s.version},
                                         {"commands", commands()}}
                                      .dump()};
  };
}

bool console_commands::handles(const std::string& cmd) const {
  return handlers_.count(cmd) > 0;
}

caf::result<std::string> console_commands::run(caf::event_based_actor* self,
                                               const json& request) {
  auto cmd = request.value("cmd", std::string{});
  auto it = handlers_.find(cmd);
  if (it == handlers_.end())
    return fail("unknown command '" + cmd + "'");
  // A request for another node is routed by the cluster layer, if any.
  if (auto target = request.find("node");
      target != request.end() && target->is_string()
      && *target != node_->settings()->node_name) {
    if (auto route = handlers_.find("route"); route != handlers_.end())
      return route->second(self, request);
    auto name = target->get<std::string>();
    auto& table = node_->settings()->cluster.members;
    auto members = table ? table->members()
                         : std::make_shared<const member_table::members_type>();
    for (auto& m : *members)
      if (m.name == name)
        return fail("'" + request.value("cmd", std::string{})
                    + "' for node " + name + ": connect the console to it: "
                    "cairn-console --connect=" + m.host + ":"
                    + std::to_string(m.port));
    if (node_->settings()->cluster.enabled) {
      std::string names;
      for (auto& m : *members)
        names += (names.empty() ? "" : ", ") + m.name;
      return fail("unknown node '" + name + "' (members: " + names + ")");
    }
    return fail("unknown node '" + name + "' (this is the single node '"
                + node_->settings()->node_name + "', no peers)");
  }
  return it->second(self, request);
}

void console_commands::set_handler(const std::string& cmd, handler h) {
  handlers_[cmd] = std::move(h);
}

std::vector<std::string> console_commands::commands() const {
  std::vector<std::string> out;
  for (auto& [name, h] : handlers_)
    if (name != "route")
      out.push_back(name);
  return out;
}

} // namespace cairn::actors
