// handoff_commands: the `handoff.*` control commands of a node, the
// partition-level primitives of a partition move (docs/sagas.md, "Partition
// handoff"; issue 13).
//
// The node actor's control_atom handler hands every command whose "cmd"
// starts with "handoff." to `run`: it checks the request (partition in
// range, token present, numbers unsigned), sends it to the partition actor,
// which does the work (actors/partition.cpp), and turns the answer into the
// reply JSON `{"ok":true,...}` / `{"ok":false,"code":...,"error":...}` and
// the binary payload (export chunks). Commands: base (the pre-copy), freeze,
// export, import, release, drop, status.
//
// Threading: `run` is called from the node actor's handler, on its thread;
// it never blocks (the answer is delivered through a response promise).
#pragma once

#include <caf/error.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/result.hpp>

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <string_view>

namespace cairn::actors {

class node;

class handoff_commands {
public:
  explicit handoff_commands(node& n) : node_(n) {}

  /// True if `cmd` is one of ours (starts with "handoff.").
  static bool handles(std::string_view cmd) noexcept;

  /// Runs the command `cmd_json` (a JSON object with "cmd") with `payload`
  /// (an import's chunk). Answers (reply JSON, payload): the export chunk
  /// for handoff.export, empty otherwise. Errors are replies with "ok":false
  /// and a stable "code": bad_request, unknown_command, not_owner, owner,
  /// not_frozen, handoff_conflict, bad_offset, crc_mismatch, bad_snapshot,
  /// no_base, busy, recovering, storage, unavailable (docs/sagas.md).
  caf::result<std::string, std::string>
  run(caf::event_based_actor* self, const std::string& cmd_json,
      std::string payload);

  /// The same with the request already parsed.
  caf::result<std::string, std::string>
  run(caf::event_based_actor* self, const nlohmann::json& req,
      std::string payload);

private:
  node& node_;
};

/// True if `err` is a partition's `moved` answer to an ingest batch: this
/// node does not own the partition (any more; a handoff dropped it or the
/// map moved it), so the batch was neither applied nor acknowledged and
/// must be re-routed by the current map.
[[nodiscard]] bool is_moved(const caf::error& err);

} // namespace cairn::actors
