// replica: the cluster-replicated part of alerting — rules and instance
// states as last-writer-wins items — and the owner of a rule
// (docs/alerting.md, "Cluster").
//
// Every member keeps the same items: a rule is the item "r/<name>", the
// journaled state of one instance "i/<rule>\0<group>". Each item carries a
// stamp (clock, origin): clock is a per-item Lamport counter (a write by a
// member is the highest clock that member knew for the item, plus one),
// origin the member that wrote it. Merging keeps the item with the greater
// stamp: the greater clock, and for equal clocks the greater origin name.
// So every member that has seen the same writes holds the same items,
// whatever order they arrived in (commutative, idempotent), and two
// concurrent creates of one rule name resolve the same way everywhere: the
// write of the member whose name sorts last wins.
//
// A deleted rule stays as a tombstone (so a member that was down cannot
// bring it back); an erased instance is a tombstone kept in memory only
// (`expire`), to refuse a stale copy arriving later.
//
// `digest` is an order-independent hash of every rule item and every live
// instance item (XOR of hashes, kept incrementally): two members whose
// digests agree hold the same items; when they differ, anti-entropy
// compares the stamps (`stamps`) and sends what is newer.
//
// `rule_owner` is rendezvous hashing over the live members: the member
// with the highest hash(member, rule) evaluates the rule. When a member
// dies only its rules move; when it returns it takes them back once its
// window of the rule is complete.
//
// Pure values; no threads, no actors.
#pragma once

#include "cqrs/time.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cairn::alerts {

/// The replication order of an item's writes.
struct stamp {
  uint64_t clock = 0;
  std::string origin = {};
};

/// True if a write stamped `a` supersedes one stamped `b`.
bool newer(const stamp& a, const stamp& b) noexcept;

/// One replicated item: a rule or an instance state.
struct replica_item {
  std::string key;    ///< "r/<name>" or "i/<rule>\0<group>"
  stamp st = {};
  bool deleted = false;
  std::string value;  ///< JSON text (empty for a tombstone)
  cqrs::millis at = 0;  ///< wall time of the write (at its origin)
};

/// The key of rule `name`, and of the instance (`rule`, `group`).
std::string rule_item_key(std::string_view name);
std::string instance_item_key(std::string_view rule, std::string_view group);
/// True for an instance key; for a rule key `rule_name_of` is its name.
bool is_instance_key(std::string_view key) noexcept;
std::string_view rule_name_of(std::string_view key) noexcept;
/// The rule of an instance key.
std::string_view instance_rule_of(std::string_view key) noexcept;

class replica_set {
public:
  /// A local write: the item gets clock (the highest known for `key`) + 1
  /// and origin `origin`. Returns the item as stored.
  const replica_item& write(const std::string& key, std::string value,
                            bool deleted, const std::string& origin,
                            cqrs::millis at);

  /// Merges a write (from a peer, or reloaded from the store). True if it
  /// superseded what was held (the caller applies it); false if it was
  /// older or equal (nothing changed).
  bool merge(replica_item item);

  /// The item under `key` (tombstones included), or null.
  const replica_item* find(const std::string& key) const;

  /// Drops instance tombstones written before `before` (rule tombstones
  /// are kept). Returns how many were dropped.
  size_t expire(cqrs::millis before);

  /// Removes every instance item of rule `name` (the rule was deleted:
  /// its instances are gone with it, everywhere).
  void drop_instances_of(std::string_view name);

  /// Order-independent hash of the rule items and the live instance items.
  uint64_t digest() const noexcept { return digest_; }

  /// Calls f(item) for every item that the digest covers, in key order.
  void for_each_covered(const std::function<void(const replica_item&)>& f) const;

  size_t size() const noexcept { return items_.size(); }

  /// Compares a peer's covered stamps (`theirs`, any order) with ours:
  /// `push` gets our keys that are newer or that the peer lacks, `pull`
  /// the peer's keys that are newer or that we lack.
  void diff(const std::vector<std::pair<std::string, stamp>>& theirs,
            std::vector<std::string>& push,
            std::vector<std::string>& pull) const;

private:
  static bool covered(const replica_item& x) noexcept;
  static uint64_t hash_of(const replica_item& x) noexcept;
  void account(const replica_item& x, bool add) noexcept;

  std::map<std::string, replica_item> items_;
  uint64_t digest_ = 0;
};

/// The member of `live` (any order, non-empty) that evaluates rule `name`:
/// the highest hash(member, name), ties to the smaller name. "" if empty.
std::string rule_owner(std::string_view name,
                       const std::vector<std::string>& live);

/// A live member and how long it has been receiving buckets.
struct member_age {
  std::string name;
  cqrs::millis up_for = 0;
};

/// The owner of a rule with window `window` among `live`: rendezvous over
/// the members whose windows are complete (up for at least window + slack),
/// or over all of `live` when none is. So a restarted member takes its
/// rules back only once it holds their whole window, and a cluster that
/// started together evaluates at once.
std::string rule_owner(std::string_view name, cqrs::millis window,
                       const std::vector<member_age>& live,
                       cqrs::millis slack);

} // namespace cairn::alerts
