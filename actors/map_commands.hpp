// map_commands: the `map.*` control commands of a node (docs/cluster.md,
// "Partition map"), behind the node actor's control_atom.
//
//   {"cmd":"map.get"}            -> {"ok":true,"map":{...}}
//   {"cmd":"map.adopt","map":M}  -> {"ok":true,"version":<current>,
//                                    "changed":bool}
//
// map.adopt persists M and swaps it in if its version is higher than the
// current one (actors/node_settings.hpp, map_holder::adopt); the reply is
// sent after M is durable. Errors: {"ok":false,"code":C,"error":E} with C
// one of "bad_request" (no or undecodable map), "incompatible" (other
// members or partition count), "storage" (not persisted), "not_clustered"
// (a single node has no map). Called on the node actor's thread; adopt
// blocks it for one fsync.
#pragma once

#include "actors/node_settings.hpp"

#include <nlohmann/json_fwd.hpp>

#include <string>

namespace cairn::actors {

/// {"ok":false,"code":code,"error":error} (the control-plane error reply).
std::string control_error(const std::string& code, const std::string& error);

/// Runs one map.* command (cmd["cmd"] starts with "map."). Unknown map
/// commands answer code "unknown_command".
std::string run_map_command(const node_settings& s, const nlohmann::json& cmd);

/// Adopts `m` on this node (persist, swap if higher) and logs a change.
/// Used by map.adopt and by the peer links' pull (actors/peer_link.cpp).
map_holder::adopt_result adopt_map(const node_settings& s,
                                   const cqrs::partition_map& m,
                                   const std::string& from);

} // namespace cairn::actors
