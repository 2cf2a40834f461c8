// hint_view: which members hold acknowledged writes that their owners have
// not applied yet, per partition — what a query needs to know before it may
// say `"partial": false` (docs/cluster.md, "The completeness invariant").
//
// Two halves:
// - local: for each peer link of this node, the partitions of the hints it
//   holds for that peer (set by the link before it acknowledges a hinted
//   write, cleared once the owner confirmed the delivery);
// - remote: for each other member, the union of its local half as it last
//   announced it, and whether it announced anything since this node started
//   (a member never heard from may hold hints for any partition).
//
// A query takes one `snapshot()` when it starts and marks every partition a
// holder or an unknown member appears for as partial. Thread-safe (a mutex):
// written by the peer links and the node actor, read by the coordinator.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace cairn::actors {

class hint_view {
public:
  /// `members`: names by map index; `self`: this node's index.
  hint_view(std::vector<std::string> members, uint32_t self);

  /// The link to member `peer` now holds hints for exactly `partitions`.
  /// Returns true if the union over this node's links gained a partition.
  bool set_local(uint32_t peer, std::vector<uint32_t> partitions);

  /// The partitions this node's links hold hints for, sorted, and a version
  /// that changes whenever that set changes.
  std::pair<std::vector<uint32_t>, uint64_t> local_union() const;

  /// Member `from` announced that it holds hints for `partitions`.
  void set_remote(uint32_t from, std::vector<uint32_t> partitions);

  /// Who may hold unapplied writes for a partition, at one moment.
  struct snapshot_type {
    /// holders[p]: member indexes holding (or possibly holding) hints for p.
    std::vector<std::vector<uint32_t>> holders;
    bool empty() const noexcept;
  };

  /// Holders for partitions [0, partitions): this node's links, members
  /// that announced hints, and members never heard from (for every p).
  snapshot_type snapshot(uint32_t partitions) const;

  std::string name(uint32_t member) const {
    std::lock_guard guard{mtx_};
    return member < members_.size() ? members_[member] : std::string{};
  }

  /// The partition map's members now (a node joined: `members` extends the
  /// current list). A new member is unknown until it announces, so every
  /// answer is partial until then — it may already hold forwarded writes.
  void set_members(const std::vector<std::string>& members);

  /// The members that left the cluster (by index; the partition map's
  /// `left`): never counted as "not announced" — a stopped decommissioned
  /// member would otherwise make every answer partial forever. What they
  /// did announce still counts. Replaces the previous set (a member that
  /// joined again counts as "not announced" until it announces).
  void set_left(const std::vector<uint32_t>& left);

  /// The members that were evicted (the map's `evicted`, a subset of
  /// `left`): what they announced no longer counts either — the hints they
  /// held went with them, and the map's lost marks say so for those
  /// partitions instead (docs/cluster.md, "Evicting a member that is gone").
  /// This node's own hints for them still count until re-routed.
  void set_evicted(const std::vector<uint32_t>& evicted);

  /// What member `m` last announced: (heard from it since start, its set).
  std::pair<bool, std::vector<uint32_t>> announced(uint32_t m) const;

private:
  std::vector<uint32_t> union_locked() const;

  mutable std::mutex mtx_;
  std::vector<std::string> members_;
  uint32_t self_;
  std::vector<std::vector<uint32_t>> local_;   ///< by peer index
  std::vector<std::vector<uint32_t>> remote_;  ///< by member index
  std::vector<bool> known_;                    ///< by member index
  std::vector<bool> left_;                     ///< by member index
  std::vector<bool> evicted_;                  ///< by member index
  uint64_t local_version_ = 0;
};

} // namespace cairn::actors
