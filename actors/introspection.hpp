// introspection: what an actor tells the console about itself.
//
// `introspectable_actor<State, Base>` is a drop-in replacement for
// `caf::stateful_actor<State, Base>` (use it as the self-pointer type of a
// function-based actor). It counts every message the actor consumes and
// answers `(introspect_atom)` with one JSON object (as a string) before the
// message reaches the behavior:
//
//   {"mailbox": N, "processed": N, "state": {...}}
//
// `mailbox` is the number of messages waiting behind the current one,
// `processed` the number of messages consumed so far, and `state` whatever
// `State::describe(nlohmann::json&) const` fills in (an empty object when the
// state has no such member).
//
// Why intercept in `consume` instead of adding a handler to each behavior:
// the typed interfaces of the actors (partition_actor, ...) stay unchanged,
// the counter sees every message without touching every handler, and the
// reply is produced on the actor's own thread, the only place where reading
// its mailbox and state is safe. CAF 0.17 offers no per-actor metrics (the
// actor profiler is compiled out of Debian's build).
//
// Threading: everything runs on the actor's own thread. Senders reach the
// introspection handler through a dynamically typed handle
// (`caf::actor_cast<caf::actor>(typed_handle)`).
#pragma once

#include "actors/messages.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace cairn::actors {

/// Asks an actor for its introspection record; the reply is a JSON string.
using introspect_atom = caf::atom_constant<caf::atom("introspect")>;

template <class State, class Base = caf::event_based_actor>
class introspectable_actor : public caf::stateful_actor<State, Base> {
public:
  using super = caf::stateful_actor<State, Base>;

  explicit introspectable_actor(caf::actor_config& cfg) : super(cfg) {
    // nop
  }

  // -- properties -------------------------------------------------------------

  /// Messages consumed so far (including the current one).
  uint64_t processed() const noexcept {
    return processed_;
  }

  /// The introspection record of this actor (see the file comment). Call it
  /// only from the actor's own thread.
  nlohmann::json introspect() {
    nlohmann::json out;
    out["mailbox"] = this->mailbox().size();
    out["processed"] = processed_;
    auto& st = out["state"] = nlohmann::json::object();
    if constexpr (requires(const State& s, nlohmann::json& j) {
                    s.describe(j);
                  })
      this->state.describe(st);
    return out;
  }

  // -- overrides --------------------------------------------------------------

  caf::invoke_message_result consume(caf::mailbox_element& x) override {
    ++processed_;
    if (x.content().template match_elements<introspect_atom>()) {
      this->current_mailbox_element(&x);
      auto rp = this->make_response_promise();
      rp.deliver(introspect().dump());
      this->current_mailbox_element(nullptr);
      return caf::invoke_message_result::consumed;
    }
    return super::consume(x);
  }

private:
  uint64_t processed_ = 0;
};

} // namespace cairn::actors
