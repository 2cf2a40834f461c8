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
// `track_mailbox(metrics)` also keeps `cairn_mailbox_depth{kind=...}` (the
// messages waiting in every actor of the kind, summed) and
// `cairn_actor_messages_total{kind=...}` current, sampled every 16th message
// and whenever the mailbox is empty, so an idle actor reports 0 and a busy
// one costs one shared-counter update per 16 messages.
//
// Threading: everything runs on the actor's own thread. Senders reach the
// introspection handler through a dynamically typed handle
// (`caf::actor_cast<caf::actor>(typed_handle)`).
#pragma once

#include "actors/messages.hpp"
#include "runtime/metrics.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>

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

  /// Reports this actor's mailbox depth and message count to `m` under the
  /// kind named by `State::name` without its "cairn." prefix.
  void track_mailbox(runtime::metrics_registry& m) {
    std::string_view kind = State::name;
    if (kind.rfind("cairn.", 0) == 0)
      kind.remove_prefix(6);
    runtime::metric_labels labels{{"kind", std::string{kind}}};
    depth_gauge_ = &m.gauge("cairn_mailbox_depth",
                            "Messages waiting in the mailboxes of the actors "
                            "of a kind",
                            labels);
    messages_ = &m.counter("cairn_actor_messages_total",
                           "Messages processed by the actors of a kind",
                           labels);
  }

  // -- overrides --------------------------------------------------------------

  caf::invoke_message_result consume(caf::mailbox_element& x) override {
    // A state that other threads read (the partition's store,
    // actors/store_access.hpp) is written only under its guard.
    if constexpr (requires(State& s) { s.consume_guard(); }) {
      auto guard = this->state.consume_guard();
      return consume_message(x);
    } else {
      return consume_message(x);
    }
  }

  ~introspectable_actor() override {
    if (depth_gauge_ != nullptr)
      depth_gauge_->fetch_add(-reported_depth_, std::memory_order_relaxed);
  }

private:
  caf::invoke_message_result consume_message(caf::mailbox_element& x) {
    ++processed_;
    if (depth_gauge_ != nullptr)
      sample_mailbox();
    if (x.content().template match_elements<introspect_atom>()) {
      this->current_mailbox_element(&x);
      auto rp = this->make_response_promise();
      rp.deliver(introspect().dump());
      this->current_mailbox_element(nullptr);
      return caf::invoke_message_result::consumed;
    }
    return super::consume(x);
  }

  void sample_mailbox() {
    // An empty mailbox is the idle case (cheap to test, and then the shared
    // counters are not contended); a busy actor reports every 16th message.
    if ((processed_ & 15) != 0 && !this->mailbox().empty())
      return;
    auto depth = static_cast<int64_t>(this->mailbox().size());
    depth_gauge_->fetch_add(depth - reported_depth_, std::memory_order_relaxed);
    reported_depth_ = depth;
    messages_->fetch_add(static_cast<int64_t>(processed_ - reported_processed_),
                         std::memory_order_relaxed);
    reported_processed_ = processed_;
  }

  uint64_t processed_ = 0;
  std::atomic<int64_t>* depth_gauge_ = nullptr;
  std::atomic<int64_t>* messages_ = nullptr;
  int64_t reported_depth_ = 0;
  uint64_t reported_processed_ = 0;
};

} // namespace cairn::actors
