#include "actors/node_actor.hpp"

#include "actors/messages.hpp"
#include "actors/reply.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <nlohmann/json.hpp>

namespace cairn::actors {

namespace {

using nlohmann::json;

struct node_actor_state {
  node* owner = nullptr;
  static inline const char* name = "cairn.node";
};

using node_actor_pointer = caf::stateful_actor<node_actor_state>*;

std::string command_error(const std::string& message) {
  return json{{"ok", false}, {"error", message}}.dump();
}

caf::behavior node_actor_impl(node_actor_pointer self, node* n) {
  self->state.owner = n;
  return {
    [=](request_atom, const std::string& text) -> caf::result<std::string> {
      auto req = json::parse(text, nullptr, false);
      if (req.is_discarded() || !req.is_object())
        return command_error("request is not a JSON object");
      auto cmd = req.value("cmd", std::string{});
      auto& s = *self->state.owner->settings();
      if (cmd == "ping")
        return json{{"ok", true},
                    {"node", s.node_name},
                    {"version", s.version},
                    {"status", to_string(s.status.load())}}
          .dump();
      return command_error("unknown command '" + cmd + "'");
    },
  };
}

} // namespace

caf::actor spawn_node_actor(caf::actor_system& sys, node& n) {
  return sys.spawn(node_actor_impl, &n);
}

} // namespace cairn::actors
