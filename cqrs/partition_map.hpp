// partition_map: which node owns which partition, as an explicit, versioned
// value.
//
// Every node of a cluster computes the same map from the same configuration:
// version 1 sorts the node names and assigns partition p to node p mod N
// (round robin over the sorted names), so the assignment does not depend on
// the order in which a config lists the nodes. A change of ownership (the
// partition-handoff saga) produces a copy with a higher version
// (`with_owner`, `with_left`, `with_member`); nothing here changes on a
// transient failure. Members that *left* (decommissioned) own nothing and may
// be stopped. Members are only ever added, at the end of `nodes()` (a node
// that joined through cairn.cluster.seeds), so a member's index never
// changes; version 1's members are sorted. The
// JSON form (`to_json`, `partition_map_from_json`) is what nodes persist and
// exchange (docs/cluster.md, "Partition map"). Pure value type, no threads.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cairn::cqrs {

class partition_map {
public:
  partition_map() = default;

  /// Version 1 over `nodes` (names; duplicates are an error) and
  /// `partitions` (> 0). Throws std::invalid_argument on empty input or
  /// duplicate names.
  [[nodiscard]] static partition_map initial(std::vector<std::string> nodes,
                                             uint32_t partitions);

  /// Builds a map from explicit parts (e.g. decoded from the wire). Throws
  /// std::invalid_argument if an owner index is out of range.
  partition_map(uint64_t version, std::vector<std::string> nodes,
                std::vector<uint32_t> owners);

  /// As above, plus the members that left (indexes into `nodes`) and the
  /// members' cluster addresses ("host:port" by index, empty = not known
  /// here, e.g. taken from cairn.cluster.nodes; `addresses` may be shorter
  /// than `nodes`). Throws std::invalid_argument if `nodes` is not unique,
  /// an index is out of range, or a member that left owns a partition.
  partition_map(uint64_t version, std::vector<std::string> nodes,
                std::vector<uint32_t> owners, std::vector<uint32_t> left,
                std::vector<std::string> addresses = {});

  // -- changes (copies with version + 1) --------------------------------------

  /// This map with partition `p` owned by member `index`. Throws
  /// std::invalid_argument if p or index is out of range or the member left.
  [[nodiscard]] partition_map with_owner(uint32_t p, uint32_t index) const;

  /// This map with member `index` marked as left. Throws
  /// std::invalid_argument if it is out of range or still owns a partition
  /// (move its partitions away first).
  [[nodiscard]] partition_map with_left(uint32_t index) const;

  /// This map with a new member `name` at "host:port" `address`, appended
  /// (it owns nothing yet), and `known` — the addresses of the other
  /// members by index, for those this map does not hold yet — filled in,
  /// so that the new member can reach everyone from the map alone. Throws
  /// std::invalid_argument if `name` is already a member or empty.
  [[nodiscard]] partition_map
  with_member(const std::string& name, const std::string& address,
              const std::vector<std::string>& known = {}) const;

  /// This map with member `index` *evicted*: a member that is gone for good
  /// (down, its data not recoverable) leaves without a handoff. Each of its
  /// partitions goes to `to[p]` (a member that has not left), it is marked
  /// left and evicted, and every partition of `lost` (which must include
  /// its partitions) is marked lost at wall-clock `at_ms`: writes applied or
  /// hinted only there before that moment are gone, so answers over such a
  /// range are partial (docs/cluster.md, "Evicting a member that is gone").
  /// Throws std::invalid_argument on an out-of-range or left member, a
  /// missing or invalid target, a lost partition out of range, or at_ms <= 0.
  [[nodiscard]] partition_map
  with_evicted(uint32_t index, const std::vector<std::pair<uint32_t, uint32_t>>& to,
               std::vector<uint32_t> lost, int64_t at_ms) const;

  /// This map with member `index` back (a join of a member that left):
  /// neither left nor evicted. Lost marks stay. Throws
  /// std::invalid_argument if it is out of range.
  [[nodiscard]] partition_map with_back(uint32_t index) const;

  // -- properties -------------------------------------------------------------

  uint64_t version() const noexcept { return version_; }
  uint32_t partitions() const noexcept {
    return static_cast<uint32_t>(owners_.size());
  }
  /// The member names: version 1's sorted, joined ones appended.
  const std::vector<std::string>& nodes() const noexcept { return nodes_; }
  /// "host:port" of member `index`, empty if this map does not hold it.
  std::string address(uint32_t index) const {
    return index < addresses_.size() ? addresses_[index] : std::string{};
  }
  /// owners()[p] = index into nodes() of partition p's owner.
  const std::vector<uint32_t>& owners() const noexcept { return owners_; }

  /// Index into nodes() of the owner of partition `p` (p < partitions()).
  uint32_t owner_index(uint32_t p) const noexcept { return owners_[p]; }
  const std::string& owner(uint32_t p) const noexcept {
    return nodes_[owners_[p]];
  }

  /// Index of `name` in nodes(), nullopt if not a member.
  std::optional<uint32_t> index_of(const std::string& name) const;

  /// The partitions owned by node `index`, ascending.
  std::vector<uint32_t> owned_by(uint32_t index) const;

  /// The members that left (indexes into nodes()), ascending.
  const std::vector<uint32_t>& left() const noexcept { return left_; }
  /// True if member `index` left the cluster.
  bool has_left(uint32_t index) const noexcept;

  /// The members that were evicted (a subset of left()), ascending.
  const std::vector<uint32_t>& evicted() const noexcept { return evicted_; }

  /// When partition `p` was last marked lost (wall-clock ms), 0 = never.
  int64_t lost_at(uint32_t p) const noexcept {
    return p < lost_.size() ? lost_[p] : 0;
  }

  /// `other` may replace this map: the same partition count, and this
  /// map's members are the first members of `other` (members are only
  /// added, at the end).
  bool compatible(const partition_map& other) const noexcept {
    return owners_.size() == other.owners_.size()
           && nodes_.size() <= other.nodes_.size()
           && std::equal(nodes_.begin(), nodes_.end(), other.nodes_.begin());
  }

  friend bool operator==(const partition_map&, const partition_map&) = default;

private:
  uint64_t version_ = 0;
  std::vector<std::string> nodes_;
  std::vector<uint32_t> owners_;
  std::vector<uint32_t> left_;
  std::vector<std::string> addresses_;
  std::vector<uint32_t> evicted_;  ///< sorted, a subset of left_
  std::vector<int64_t> lost_;      ///< by partition, empty = none lost

  /// `next` (a change of this map) with this map's evictions and lost
  /// marks carried over.
  partition_map carry(partition_map next) const;

  friend std::optional<partition_map>
  partition_map_from_json(const nlohmann::json& j, std::string* error);
};

/// The JSON form: {"version":v,"partitions":P,"nodes":[names],
/// "owners":[owner name of p, for every p],"left":[names]}, plus
/// "addresses":{name:"host:port"} when the map holds any (a cluster that a
/// node joined through seeds), "evicted":[names] and "lost":{"p":ms} when
/// a member was evicted.
[[nodiscard]] nlohmann::json to_json(const partition_map& m);

/// Decodes to_json's form; nullopt (with `error` set, if given) if a field
/// is missing or of the wrong type, an owner or left name is not a member,
/// `owners` does not have `partitions` entries, the version is 0, an
/// evicted member has not left, a lost mark names no partition or is not a
/// positive integer, or the map breaks a rule of the constructor.
[[nodiscard]] std::optional<partition_map>
partition_map_from_json(const nlohmann::json& j, std::string* error = nullptr);

/// A cluster member as configured: "name@host:port".
struct member_address {
  std::string name;
  std::string host;
  uint16_t port = 0;
};

/// Parses "name@host:port"; nullopt if malformed (empty name or host, port
/// not in 1..65535).
[[nodiscard]] std::optional<member_address>
parse_member_address(const std::string& text);

} // namespace cairn::cqrs
