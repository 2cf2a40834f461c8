#include "actors/node_actor.hpp"

#include "actors/console_commands.hpp"
#include "actors/handoff.hpp"
#include "actors/introspection.hpp"
#include "actors/map_commands.hpp"
#include "actors/messages.hpp"
#include "actors/reply.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include <nlohmann/json.hpp>

namespace cairn::actors {

namespace {

using nlohmann::json;

struct node_actor_state {
  node* owner = nullptr;
  /// The console endpoint (actors/console_commands.hpp).
  std::unique_ptr<console_commands> console;
  /// handoff.* control commands (actors/handoff.hpp).
  std::unique_ptr<handoff_commands> handoff;
  static inline const char* name = "cairn.node";
};

using node_actor_pointer = introspectable_actor<node_actor_state>*;

std::string command_error(const std::string& message) {
  return json{{"ok", false}, {"error", message}}.dump();
}

caf::behavior node_actor_impl(node_actor_pointer self, node* n) {
  self->state.owner = n;
  self->track_mailbox(*n->settings()->metrics);
  self->state.console = std::make_unique<console_commands>(*n);
  self->state.handoff = std::make_unique<handoff_commands>(*n);
  // Console commands naming another member go through its peer link.
  self->state.console->set_handler(
    "route",
    [n](caf::event_based_actor* self,
        const json& req) -> caf::result<std::string> {
      auto name = req.value("node", std::string{});
      if (auto& members = n->settings()->cluster.members)
        if (auto link = members->link_to(name)) {
          self->delegate(link, request_atom::value, req.dump());
          return caf::delegated<std::string>{};
        }
      return command_error("unknown node '" + name + "'");
    });
  return {
    [=](request_atom, const std::string& text) -> caf::result<std::string> {
      auto req = json::parse(text, nullptr, false);
      if (req.is_discarded() || !req.is_object())
        return command_error("request is not a JSON object");
      auto cmd = req.value("cmd", std::string{});
      auto& s = *self->state.owner->settings();
      if (cmd == "ping")
        return ping_reply(s, s.status.load()).dump();
      if (cmd == "cluster") {
        // Membership view and partition map, as the client op "cluster".
        auto rp = self->make_response_promise<std::string>();
        self
          ->request(self->state.owner->coordinator(), std::chrono::seconds{5},
                    query_atom::value, std::string{R"({"op":"cluster"})"})
          .then([rp](std::string& reply) mutable { rp.deliver(reply); },
                [rp](caf::error& err) mutable {
                  rp.deliver(command_error(to_string(err)));
                });
        return rp;
      }
      // The console's path to the map commands (the cluster port is the
      // trusted admin port, docs/cluster.md "Trust").
      if (cmd.rfind("map.", 0) == 0)
        return run_map_command(s, req);
      if (self->state.console->handles(cmd))
        return self->state.console->run(self, req);
      return command_error("unknown command '" + cmd + "'");
    },
    // -- control plane of membership changes (docs/cluster.md, "Partition
    // map"; docs/sagas.md): one branch per command prefix, each answering
    // (reply_json, payload).
    [=](control_atom, const std::string& text,
        std::string& payload) -> caf::result<std::string, std::string> {
      auto req = json::parse(text, nullptr, false);
      if (req.is_discarded() || !req.is_object()
          || !req.contains("cmd") || !req["cmd"].is_string())
        return {control_error("bad_request",
                              "control command is not a JSON object with "
                              "a string \"cmd\""),
                std::string{}};
      auto cmd = req["cmd"].get<std::string>();
      auto& s = *self->state.owner->settings();
      // A partition being frozen for a handoff: the ingestor keeps copies
      // of what it sends it from now on, to re-route batches answered
      // `moved`; done once it is dropped or released (docs/cluster.md).
      if (s.cluster.enabled && req.contains("partition")
          && req["partition"].is_number_unsigned()) {
        auto p = req["partition"].get<uint32_t>();
        if (cmd == "handoff.freeze")
          s.cluster.map->retain(p, true);
        else if (cmd == "handoff.release" || cmd == "handoff.drop")
          s.cluster.map->retain(p, false);
      }
      if (cmd.rfind("map.", 0) == 0)
        return {run_map_command(s, req), std::string{}};
      if (handoff_commands::handles(cmd))
        return self->state.handoff->run(self, req, std::move(payload));
      // saga.*: between saga coordinators (actors/sagas/saga_coordinator).
      if (cmd.rfind("saga.", 0) == 0 && self->state.owner->saga_coordinator()) {
        self->delegate(self->state.owner->saga_coordinator(),
                       control_atom::value, text, std::move(payload));
        return caf::delegated<std::string, std::string>{};
      }
      return {control_error("unknown_command",
                            "unknown control command '" + cmd + "'"),
              std::string{}};
    },
    // -- cluster (docs/cluster.md): peers reach partitions through here ---
    [=](forward_atom, remote_ingest& msg) {
      return self->delegate(self->state.owner->ingestor(),
                            forward_atom::value, std::move(msg));
    },
    // A member dialed this node: its link to that member adopts the
    // connection (docs/cluster.md, "Who dials"). false: not a member.
    [=](hello_atom, std::string& name, caf::actor& remote) -> caf::result<bool> {
      auto& members = self->state.owner->settings()->cluster.members;
      if (members)
        if (auto link = members->link_to(name)) {
          self->delegate(link, hello_atom::value, std::move(name),
                         std::move(remote));
          return caf::delegated<bool>{};
        }
      return false;
    },
    // Completeness (docs/cluster.md): a member announces the partitions it
    // holds hinted writes for; queries here then count them as partial.
    [=](pending_atom, std::string& from,
        std::vector<uint32_t>& partitions) -> bool {
      auto& c = self->state.owner->settings()->cluster;
      if (!c.pending || !c.map)
        return false;
      auto index = c.map->current()->index_of(from);
      if (!index)
        return false;
      c.pending->set_remote(*index, std::move(partitions));
      return true;
    },
    // A link's hints added a partition: every link announces this node's
    // set to its peer; the answer comes once all of them did (or gave up).
    [=](pending_atom) -> caf::result<bool> {
      auto& n = *self->state.owner;
      auto rp = self->make_response_promise<bool>();
      auto outstanding = std::make_shared<size_t>(0);
      for (auto& link : n.links())
        if (link)
          ++*outstanding;
      if (*outstanding == 0) {
        rp.deliver(true);
        return rp;
      }
      auto timeout = n.settings()->cluster.request_timeout * 2;
      for (auto& link : n.links()) {
        if (!link)
          continue;
        auto one = [rp, outstanding]() mutable {
          if (--*outstanding == 0)
            rp.deliver(true);
        };
        self->request(link, timeout, pending_atom::value, true)
          .then([one](bool) mutable { one(); },
                [one](caf::error&) mutable { one(); });
      }
      return rp;
    },
    [=](live_follow_atom a, caf::actor& hub, std::vector<std::string>& metrics) {
      caf::anon_send(self->state.owner->live_hub(), a, std::move(hub),
                     std::move(metrics));
    },
    [=](alert_sync_atom a, alert_peer_msg& msg) {
      if (auto& m = self->state.owner->alert_manager())
        caf::anon_send(m, a, std::move(msg));
    },
    [=](reroute_atom, remote_ingest& msg) {
      return self->delegate(self->state.owner->ingestor(),
                            reroute_atom::value, std::move(msg));
    },
    [=](partial_atom, remote_query& q) {
      return self->delegate(self->state.owner->coordinator(),
                            partial_atom::value, std::move(q));
    },
  };
}

} // namespace

caf::actor spawn_node_actor(caf::actor_system& sys, node& n) {
  auto result = sys.spawn(node_actor_impl, &n);
  // The peer links dial (or wait to be dialed) once they can introduce it;
  // so do the links to members that join later.
  if (auto& members = n.settings()->cluster.members)
    members->set_home(result);
  for (auto& link : n.links())
    if (link)
      caf::anon_send(link, hello_atom::value, result);
  if (n.saga_coordinator())
    caf::anon_send(n.saga_coordinator(), hello_atom::value, result);
  return result;
}

} // namespace cairn::actors
