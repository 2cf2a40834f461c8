#include "actors/supervisor.hpp"

#include "actors/messages.hpp"

#include <caf/all.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <memory>
#include <utility>

namespace cairn::actors {

namespace {

/// The supervisor's own timer: make a new child now.
using restart_atom = caf::atom_constant<caf::atom("srestart")>;

/// A message that arrived while there was no child, with its promise (an
/// async message's promise delegates as an async message).
struct held_message {
  caf::response_promise promise;
  caf::message content;
};

struct supervisor_state {
  static inline const char* name = "cairn.supervisor";
  supervisor_options opts;
  /// Shared with the exit hook, which runs after the state is gone.
  std::shared_ptr<caf::actor> child = std::make_shared<caf::actor>();
  caf::actor_addr child_addr;
  /// The latest (hello_atom, caf::actor), told to every new child.
  caf::message hello;
  std::deque<held_message> held;
  std::chrono::milliseconds backoff{0};
  std::chrono::steady_clock::time_point child_since;
  bool restart_pending = false;
  std::atomic<int64_t>* restarts = nullptr;
};

using supervisor_actor = caf::stateful_actor<supervisor_state>;

void schedule_restart(supervisor_actor* self) {
  auto& st = self->state;
  if (st.restart_pending)
    return;
  st.restart_pending = true;
  self->delayed_send(self, st.backoff, restart_atom::value);
  st.backoff = std::min(st.backoff * 2, st.opts.max_backoff);
}

/// Makes `c` the current child: watched, introduced, given what was held.
void adopt(supervisor_actor* self, caf::actor c) {
  auto& st = self->state;
  self->monitor(c);
  st.child_addr = c.address();
  st.child_since = std::chrono::steady_clock::now();
  *st.child = c;
  if (!st.hello.empty())
    self->send(c, st.hello);
  while (!st.held.empty()) {
    auto h = std::move(st.held.front());
    st.held.pop_front();
    h.promise.delegate(c, std::move(h.content));
  }
}

void start_child(supervisor_actor* self) {
  auto& st = self->state;
  st.restart_pending = false;
  try {
    auto c = st.opts.make(self->system());
    if (!c)
      throw std::runtime_error("the factory made no actor");
    adopt(self, std::move(c));
    spdlog::info("{}: restarted", st.opts.name);
  } catch (const std::exception& e) {
    spdlog::error("{}: could not start ({}); next attempt in {} ms",
                  st.opts.name, e.what(), st.backoff.count());
    schedule_restart(self);
  }
}

caf::behavior supervisor_impl(supervisor_actor* self, supervisor_options opts,
                              caf::actor first) {
  auto& st = self->state;
  st.opts = std::move(opts);
  st.backoff = st.opts.first_backoff;
  if (st.opts.metrics != nullptr)
    st.restarts = &st.opts.metrics->counter(
      "cairn_actor_restarts_total",
      "Actors their supervisor made anew after they died",
      {{"actor", st.opts.name}});
  // The child goes with its supervisor, whatever ends the supervisor.
  self->attach_functor([child = st.child](const caf::error&) {
    if (*child)
      caf::anon_send_exit(*child, caf::exit_reason::user_shutdown);
  });
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    if (dm.source != st.child_addr)
      return;
    *st.child = caf::actor{};
    st.child_addr = caf::actor_addr{};
    if (!dm.reason || dm.reason == caf::exit_reason::user_shutdown) {
      // Stopped on purpose (a shutdown): nothing to keep alive.
      self->quit(dm.reason);
      return;
    }
    if (std::chrono::steady_clock::now() - st.child_since >= st.opts.stable_after)
      st.backoff = st.opts.first_backoff;
    if (st.restarts != nullptr)
      st.restarts->fetch_add(1, std::memory_order_relaxed);
    spdlog::error("{} died ({}); a new one starts in {} ms", st.opts.name,
                  caf::to_string(dm.reason), st.backoff.count());
    schedule_restart(self);
  });
  // Everything else is the child's.
  self->set_default_handler(
    [](caf::scheduled_actor* ptr,
       caf::message_view& x) -> caf::result<caf::message> {
      auto self = static_cast<supervisor_actor*>(ptr);
      auto& st = self->state;
      if (*st.child)
        return self->delegate(*st.child, x.move_content_to_message());
      if (st.held.size() >= st.opts.max_held) {
        spdlog::warn("{}: restarting and {} messages held; one dropped",
                     st.opts.name, st.held.size());
        return caf::sec::request_receiver_down;
      }
      st.held.push_back({self->make_response_promise(),
                         x.move_content_to_message()});
      return caf::delegated<caf::message>{};
    });
  adopt(self, std::move(first));
  return {
    [self](hello_atom, caf::actor& node) {
      auto& st = self->state;
      st.hello = caf::make_message(hello_atom::value, node);
      if (*st.child)
        self->send(*st.child, st.hello);
    },
    [self](restart_atom) { start_child(self); },
    [self](caf::sys_atom, caf::get_atom) -> caf::actor {
      return *self->state.child;
    },
  };
}

} // namespace

caf::actor spawn_supervisor(caf::actor_system& sys, supervisor_options opts) {
  auto first = opts.make(sys);
  return sys.spawn(supervisor_impl, std::move(opts), std::move(first));
}

} // namespace cairn::actors
