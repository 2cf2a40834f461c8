// live_subscription: one live query of a node, shared by every client that
// subscribed to the same (normalized) query (docs/architecture.md, "Live
// subscriptions").
//
// The live hub spawns it on the first subscribe and stops it when the last
// client left. A client's first message is the snapshot: the query answered
// through the query coordinator like any query (so in a cluster it gathers
// from every owner and says "partial" when it could not); clients arriving
// together share one snapshot query. Then, for every step window that
// closed (a closed-bucket notice of its metric from the hub, or the window
// timer at window end + cairn.live.grace), the window is queried through
// the coordinator again, [start, start + step), and the points go to every
// client as an update, through the client's stream_sink: an update waiting
// for a slow client is replaced by the next one (coalesced, counted).
// A notice for a window already answered that was published after its
// query was sent (a late event, a correction) answers the window again:
// the client replaces the points of the same `t`.
//
// Threading: a CAF event-based actor; never blocks.
#pragma once

#include "actors/messages.hpp"
#include "actors/node_settings.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace cairn::actors {

/// Buckets of one metric that closed, as the hub forwards them: tier
/// resolution, bucket start, correction flag; and when they were published.
struct closed_windows {
  cqrs::millis published_at = 0;
  std::vector<std::pair<cqrs::millis, cqrs::millis>> buckets;  ///< (res, start)
};

using closed_windows_ptr = std::shared_ptr<const closed_windows>;

/// The node-wide live counters (metrics registry entries, docs/protocol.md).
struct live_counters {
  std::atomic<int64_t>* updates = nullptr;    ///< cairn_live_updates_total
  std::atomic<int64_t>* coalesced = nullptr;  ///< cairn_live_coalesced_total
};

/// A client's identity for the hub and the subscriptions: its sink's
/// address (stream_sink ids are unique per server only, and a node has two
/// servers that stream). Stable while the hub holds the sink.
inline uint64_t client_key(const stream_sink_ptr& sink) noexcept {
  return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(sink.get()));
}

/// Timer of a window due (start) / of the running value.
using window_atom = caf::atom_constant<caf::atom("window")>;
using running_atom = caf::atom_constant<caf::atom("running")>;

/// Spawns the subscription of `query` (a valid query request object with
/// "op":"query", as normalized by the hub). With `running`, clients also
/// get the open window's value at most every live running interval.
/// Messages (from the hub):
///   (subscribe_atom, stream_sink_ptr, std::string id_json, std::string key)
///   (unsubscribe_atom, uint64_t client_key, std::string key)
///   (closed_atom, closed_windows_ptr)
caf::actor spawn_live_subscription(caf::actor_system& sys,
                                   settings_ptr settings,
                                   caf::actor coordinator,
                                   nlohmann::json query, bool running,
                                   live_counters counters);

} // namespace cairn::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::closed_windows_ptr)
