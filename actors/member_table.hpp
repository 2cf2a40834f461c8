// member_table: the cluster's members and this node's links to them, by
// partition-map index (docs/cluster.md, "Joining through seeds").
//
// Members are only ever appended (a node that joined through
// cairn.cluster.seeds gets the next index; nobody's index changes), so a
// reader holding an older snapshot sees a prefix of the current one. Readers
// on the hot paths keep their own copy of `links()` and compare `version()`
// (one atomic load) before they use it; everything else takes a snapshot.
// Thread-safe: a mutex guards the copy-on-write vectors.
#pragma once

#include "cqrs/partition_map.hpp"

#include <caf/actor.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace cairn::actors {

class member_table {
public:
  using members_type = std::vector<cqrs::member_address>;
  using links_type = std::vector<caf::actor>;

  explicit member_table(members_type members);

  /// The members by index, at one moment.
  std::shared_ptr<const members_type> members() const;
  /// The peer links by index (null for this node and for members whose
  /// link does not exist yet), at one moment.
  std::shared_ptr<const links_type> links() const;
  /// Changes whenever a member or a link is added.
  uint64_t version() const noexcept { return version_.load(); }
  size_t size() const;

  /// Member `index` (nullopt if there is none).
  std::optional<cqrs::member_address> at(uint32_t index) const;
  /// The index of member `name`.
  std::optional<uint32_t> index_of(const std::string& name) const;

  /// The links of the members this node started with.
  void set_links(links_type links);
  /// Appends member `m` (the next index; its link comes with set_link).
  /// Returns false (and changes nothing) if `m.name` is already a member.
  bool add(cqrs::member_address m);
  /// The link to member `index`.
  void set_link(uint32_t index, caf::actor link);
  /// The link to member `name` (null if none).
  caf::actor link_to(const std::string& name) const;

  /// Copies links() into `links` if the table changed since `seen` (a
  /// version an earlier call stored there; 0 = never). True if it did.
  bool refresh(links_type& links, uint64_t& seen) const;

  /// This node's node actor: what a new link is told to dial from (set
  /// once it is spawned; null before).
  void set_home(caf::actor home);
  caf::actor home() const;

  /// TLS (docs/cluster.md, "Cluster gate"): the loopback port of this
  /// node's outbound tunnel to member `name`, which its link dials instead.
  void set_tunnel(const std::string& name, uint16_t port);
  std::optional<uint16_t> tunnel(const std::string& name) const;
  /// What makes the tunnel to a member that joined (returns its port);
  /// unset without TLS.
  using tunnel_factory = std::function<uint16_t(const cqrs::member_address&)>;
  void set_tunnel_factory(tunnel_factory f);
  /// Makes and records the tunnel to `m` if there is a factory (blocking:
  /// binds a port). Throws what the factory throws.
  void make_tunnel(const cqrs::member_address& m);

private:
  mutable std::mutex mtx_;
  std::map<std::string, uint16_t> tunnels_;
  tunnel_factory factory_;
  std::shared_ptr<const members_type> members_;
  std::shared_ptr<const links_type> links_;
  caf::actor home_;
  std::atomic<uint64_t> version_{1};
};

} // namespace cairn::actors
