// alert_store: the durable state of alerting (docs/alerting.md, "Storage").
//
// - Rule events (created / updated / deleted), append-only by sequence:
//   the rule set is their fold (`load_rules`), i.e. rules are event-sourced
//   commands. Each event carries its replication stamp (alerts/replica);
//   `compact` drops every event superseded by a later one of the same rule
//   (the newest event of each name, tombstones included, is kept), so the
//   log holds the current rule set, not its history.
// - The state journal: the last journaled state of every alert instance,
//   so a restart neither re-fires nor forgets a firing alert.
// - The outbox: notifications accepted but not yet delivered (re-sent after
//   a restart with the same idempotency key), and the dead letters: those
//   that ran out of attempts.
// - History: state changes and delivery outcomes, newest kept up to a bound.
//
// Every write is synced before the call returns (LevelDB sync writes).
// Two backends: LevelDB (`open_leveldb_kv`) and in memory (tests, nodes
// without storage). Thread-safe (one mutex): the alert manager and the
// notifier actor share one store. Keys and values are in docs/alerting.md.
#pragma once

#include "alerts/evaluator.hpp"
#include "alerts/replica.hpp"
#include "alerts/rule.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace cairn::alerts {

/// One write of a batch: a put, or an erase when `erase` is set.
struct kv_op {
  std::string key;
  std::string value;
  bool erase = false;
};

/// Ordered key-value storage with synced writes.
class kv_store {
public:
  virtual ~kv_store();
  /// Applies `ops` atomically; with `sync`, durable once it returns (one
  /// fsync for all of them).
  [[nodiscard]] virtual bool write(const std::vector<kv_op>& ops, bool sync) = 0;
  /// True once durable.
  [[nodiscard]] virtual bool put(const std::string& k, const std::string& v) = 0;
  [[nodiscard]] virtual bool erase(const std::string& k) = 0;
  /// Every (key, value) whose key starts with `prefix`, in key order.
  virtual std::vector<std::pair<std::string, std::string>>
  scan(const std::string& prefix) = 0;
};

std::unique_ptr<kv_store> make_memory_kv();

/// Opens (creating) LevelDB at `path`; throws std::runtime_error naming the
/// path if it cannot.
std::unique_ptr<kv_store> open_leveldb_kv(const std::string& path);

enum class rule_event_kind : uint8_t { created, updated, deleted };

std::string_view to_string(rule_event_kind k) noexcept;

struct rule_event {
  uint64_t seq = 0;
  rule_event_kind kind = rule_event_kind::created;
  std::string name;
  nlohmann::json rule;  ///< to_json(rule) (null for deleted)
  millis at = 0;
  /// Replication stamp (docs/alerting.md, "Cluster"). Events written before
  /// stamps existed read as clock = the previous event's of the name + 1.
  stamp st = {};
};

nlohmann::json to_json(const instance_record& r);
[[nodiscard]] std::optional<instance_record>
instance_from_json(const nlohmann::json& j);

class alert_store {
public:
  explicit alert_store(std::unique_ptr<kv_store> kv, size_t history_keep = 10000);

  /// Writes gathered by the `(batch&, ...)` overloads and applied by
  /// `commit` in one LevelDB write: an evaluation's outbox entries,
  /// instance states and history cost one fsync together.
  struct batch {
    std::vector<kv_op> ops;
  };

  /// Applies `b` (then empties it). `sync`: durable before it returns; the
  /// notifier's delivery outcomes are written without (a lost outcome only
  /// means a re-send with the same idempotency key).
  [[nodiscard]] bool commit(batch& b, bool sync = true);
  std::string add_outbox(batch& b, nlohmann::json n);
  void put_outbox(batch& b, const std::string& id, const nlohmann::json& n);
  void erase_outbox(batch& b, const std::string& id);
  void put_dead_letter(batch& b, const std::string& id, const nlohmann::json& n);
  void journal(batch& b, const instance_record& r);
  void record(batch& b, nlohmann::json entry);

  // -- rules ------------------------------------------------------------------

  /// Appends a rule event (its seq is assigned). False if not durable.
  /// Without `sync` it is written but not synced (a replicated write: its
  /// origin holds it durably, anti-entropy brings it back after a crash).
  [[nodiscard]] bool append(rule_event& e, bool sync = true);

  /// The fold of every rule event: name -> rule JSON (with "version"),
  /// and the events that failed to decode in `corrupt`.
  std::map<std::string, nlohmann::json> load_rules();
  std::vector<rule_event> rule_events();

  /// The newest event (by stamp) of every rule name, tombstones included.
  std::map<std::string, rule_event> rule_heads();

  /// Deletes every rule event superseded by a newer one of the same name
  /// (one synced write). Returns how many were deleted; rule_heads() and
  /// load_rules() answer the same before and after.
  size_t compact();

  /// Rule events in the log (superseded ones included).
  size_t rule_event_count() const noexcept { return event_count_; }

  // -- instances --------------------------------------------------------------

  [[nodiscard]] bool journal(const instance_record& r);
  std::vector<instance_record> load_instances();

  // -- outbox and dead letters -------------------------------------------------

  /// Adds an outbox entry under a new id (ordered by creation); "" if not
  /// durable.
  [[nodiscard]] std::string add_outbox(nlohmann::json n);
  [[nodiscard]] bool put_outbox(const std::string& id, const nlohmann::json& n);
  void erase_outbox(const std::string& id);
  std::vector<std::pair<std::string, nlohmann::json>> outbox();
  [[nodiscard]] bool put_dead_letter(const std::string& id, const nlohmann::json& n);
  std::vector<nlohmann::json> dead_letters();

  // -- history ----------------------------------------------------------------

  /// Appends a history entry (adds "seq"). Best effort: false if not written.
  bool record(nlohmann::json entry);
  /// The newest `limit` entries, oldest first, optionally of one rule.
  std::vector<nlohmann::json> history(size_t limit, const std::string& rule = {});

  size_t corrupt() const noexcept { return corrupt_; }

private:
  std::recursive_mutex mtx_;
  std::unique_ptr<kv_store> kv_;
  uint64_t next_outbox_ = 1;
  size_t history_keep_;
  uint64_t next_event_ = 1;
  size_t event_count_ = 0;
  uint64_t next_history_ = 1;
  uint64_t oldest_history_ = 1;
  size_t corrupt_ = 0;
};

/// Serialises a notice for the outbox / dead letters, and back.
nlohmann::json to_json(const notice& n);
[[nodiscard]] std::optional<notice> notice_from_json(const nlohmann::json& j);

} // namespace cairn::alerts
