// saga_coordinator: runs the membership sagas of a cluster (docs/sagas.md).
//
// One per node; at any time the **leader** — the live member (this node, or
// a peer whose link is up) with the smallest name that has not left the
// cluster — drives every saga, the others keep a copy of its log and pass
// client requests to it. A node takes the lead after it saw itself as the
// smallest live member on two ticks in a row (500 ms apart); it first pulls
// every live member's copy of the log and keeps the longest history of each
// saga (sagas/membership.hpp, merge_copies), then resumes every unfinished
// saga from its log. A saga step that had begun without a logged outcome is
// run again under the same idempotency key; the handoff commands honour it
// (docs/sagas.md, "Partition handoff").
//
// Log: this member's copy lives in LevelDB at settings->sagas.path (synced
// writes; in memory without storage). The leader appends a record to its
// own copy *before* it acts on it, pushes it to every live member, and every
// 2 s pushes the whole history of every unfinished (or just finished) saga,
// so a member that missed a push catches up.
//
// Requests: (request_atom, std::string line) -> std::string reply line for
// the saga.* client ops (from the parsers and the console), and
// (control_atom, cmd_json, payload) -> (reply_json, payload) for the
// `saga.*` control commands between coordinators (append, replace, dump,
// request). The steps act through `control_atom` on the node actors
// (this node's, or a peer's through its link): `handoff.*` and `map.*`.
#pragma once

#include "actors/node_settings.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <vector>

namespace cairn::actors {

/// Spawns the saga coordinator of a cluster node. `links` are the peer
/// links by member index (null for this node). The coordinator reaches its
/// own node actor once it is told it: (hello_atom, caf::actor node).
/// Throws std::runtime_error if the saga log's LevelDB cannot be opened.
caf::actor spawn_saga_coordinator(caf::actor_system& sys, settings_ptr settings,
                                  std::vector<caf::actor> links);

} // namespace cairn::actors
