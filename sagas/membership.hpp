// membership: the sagas that change a cluster's membership and partition
// ownership, as data (docs/sagas.md, "Membership sagas").
//
// Four saga types, each a fixed list of steps (the actor that runs them is
// actors/sagas/saga_coordinator):
//
//   move          copy, freeze, ship, commit (pivot), drop
//   decommission  plan, move, drain, leave (pivot)
//   rebalance     plan, move
//   join          join (pivot), plan, move
//   evict         survey, evict (pivot)
//
// plus the pure decisions they take: which partitions go where (a drain plan
// for a leaving member, a balance plan over the active members), how the
// replicated copies of the saga log are merged, and the pacing of shipped
// bytes. No CAF, no I/O: unit-tested alone (tests/sagas/membership_test.cpp).
#pragma once

#include "sagas/saga.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace cairn::sagas {

/// The steps of every membership saga type, by index.
namespace move_steps {
/// copy: the pre-copy of a snapshot while the source serves; ship: the
/// delta since it (or a full snapshot) while the source is frozen.
inline constexpr uint32_t copy = 0, freeze = 1, ship = 2, commit = 3, drop = 4;
}
namespace plan_steps {
/// decommission: plan, move, drain, leave; rebalance: plan, move;
/// join: join, plan, move.
inline constexpr uint32_t decommission_plan = 0, decommission_move = 1,
                          decommission_drain = 2, decommission_leave = 3;
inline constexpr uint32_t join_join = 0, join_plan = 1, join_move = 2;
/// evict: survey, evict.
inline constexpr uint32_t evict_survey = 0, evict_evict = 1;
}

/// The spec of saga type `type` ("move", "decommission", "rebalance",
/// "join", "evict"); nullptr for any other. The specs live for the whole program.
const saga_spec* membership_spec(std::string_view type);

/// One partition to move.
struct partition_move {
  uint32_t partition = 0;
  std::string to;

  friend bool operator==(const partition_move&, const partition_move&) = default;
};

/// Moves that empty `leaving`: each of its partitions (ascending) goes to
/// the active member other than `leaving` that owns the fewest partitions at
/// that point (ties: the smaller name). `owners[p]` is partition p's owner,
/// `active` the members that may own partitions. Empty if no other member.
std::vector<partition_move> plan_drain(const std::vector<std::string>& owners,
                                       const std::vector<std::string>& active,
                                       const std::string& leaving);

/// The fewest moves after which every active member owns floor(P/N) or
/// ceil(P/N) partitions and nobody else owns any: repeatedly the member
/// owning the most (ties: the larger name) gives its highest partition to
/// the one owning the fewest (ties: the smaller name); partitions of
/// members not in `active` move first.
std::vector<partition_move> plan_balance(const std::vector<std::string>& owners,
                                         const std::vector<std::string>& active);

/// Encodes / decodes a plan as a JSON array [{"partition":p,"to":"n"}...]
/// (a step's result in the log). Decoding garbage gives nullopt.
std::string encode_plan(const std::vector<partition_move>& plan);
[[nodiscard]] std::optional<std::vector<partition_move>>
decode_plan(std::string_view text);

/// Copies of the saga log held by the members (docs/sagas.md, "The
/// coordinator"): merges `other` into `into`, keeping per saga a finished
/// history over an unfinished one, else the longer record list (on equal
/// length the one already in `into`). Returns the ids whose list in `into`
/// changed.
std::vector<std::string>
merge_copies(std::map<std::string, std::vector<saga_record>>& into,
             const std::map<std::string, std::vector<saga_record>>& other);

/// Paces shipped bytes at `bytes_per_second` over every handoff of a node
/// (a token bucket without burst): `reserve(n, now)` returns when a chunk of
/// n bytes may go. 0 = unlimited (always `now`).
class byte_pacer {
public:
  explicit byte_pacer(uint64_t bytes_per_second = 0)
    : rate_(bytes_per_second) {}

  millis reserve(uint64_t bytes, millis now) noexcept;
  uint64_t rate() const noexcept { return rate_; }

private:
  uint64_t rate_;
  double next_free_ = 0;  ///< ms
};

} // namespace cairn::sagas
