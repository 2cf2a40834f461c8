// supervisor: keeps one child actor alive behind a stable handle.
//
// The handle that `spawn_supervisor` returns is the supervisor itself; every
// holder (the parsers, the console, the node actor, peers' control
// commands) keeps it for the node's whole life. The supervisor forwards
// every message to its current child with the original sender and request
// id (`delegate`), so the child answers the client directly. When the child
// dies for any reason other than a normal exit or a shutdown (an exception
// in a handler, `exit_reason::kill`), the supervisor logs it, counts it in
// `cairn_actor_restarts_total{actor=NAME}` and makes a new child after a
// back-off (`first_backoff`, doubled after each failure up to `max_backoff`,
// reset after a child lived `stable_after`). A factory that throws (e.g. the
// old child's LevelDB lock is not yet released) counts as a failure and is
// retried the same way.
//
// While there is no child, messages are held (at most `max_held`; past that
// a request is answered with `sec::request_receiver_down`, an async message
// is dropped and logged) and delivered to the next child in order. The
// child's introductions — `(hello_atom, caf::actor)` — are remembered (the
// latest) and told again to every new child before anything else.
//
// Why not CAF's link + exit handler alone: a link restarts nothing, and a
// child spawned anew has a new address that every holder would have to
// learn. docs/architecture.md, "Supervision".
//
// `(caf::sys_atom, caf::get_atom)` answers the current child (an invalid
// handle while there is none): the console and tests use it.
//
// Threading: the supervisor is an ordinary event-based actor; the factory
// runs on its thread and must not block for long.
#pragma once

#include "runtime/metrics.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>

namespace cairn::actors {

struct supervisor_options {
  /// Names the child in logs and in the restart counter's `actor` label.
  std::string name;
  /// Makes a child; may throw std::exception (counted as a failed start).
  std::function<caf::actor(caf::actor_system&)> make;
  std::chrono::milliseconds first_backoff{100};
  std::chrono::milliseconds max_backoff{5000};
  /// A child alive this long resets the back-off to `first_backoff`.
  std::chrono::milliseconds stable_after{60000};
  /// Messages held while there is no child.
  size_t max_held = 10000;
  /// Where the restart counter lives (null: not counted).
  runtime::metrics_registry* metrics = nullptr;
};

/// Spawns a supervisor and its first child (made at once, on the caller's
/// thread: a factory that throws here propagates to the caller, as a bad
/// configuration at start-up should). Exiting the supervisor (any reason)
/// stops its child with the same reason.
caf::actor spawn_supervisor(caf::actor_system& sys, supervisor_options opts);

} // namespace cairn::actors
