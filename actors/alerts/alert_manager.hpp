// alert_manager: the node's alerting actor (docs/alerting.md).
//
// Hosts the alert rules (commands alert.create / update / delete, appended
// as rule events to the alert store before they are answered, so a rule
// survives restarts and kill -9) and the evaluator (alerts/evaluator): it
// subscribes to every local partition's closed-bucket stream while it has
// rules (docs/architecture.md, "Closed-bucket notifications"), feeds the
// finest tier's buckets in, and evaluates ~20 ms after a batch arrived (so
// the batches of one close pass from all partitions are in) and at every
// window end + grace + 100 ms (no data, `for`, keep_firing_for). State
// changes are journaled and notifications put in the durable outbox
// before they are handed to the notifier (actors/alerts/alert_notifier), so
// a restart neither re-fires nor loses one. Answers
// (alert_atom, std::string line) -> std::string reply for every alert.*
// op. Storage writes are synced LevelDB writes made on this actor (rare:
// rule commands and state changes).
//
// In a cluster (docs/alerting.md, "Cluster") the managers of all members
// replicate rules and instance states as last-writer-wins items
// (alerts/replica) through the peer links — a push of every local write,
// plus anti-entropy: digests every 500 ms, stamps and pulls when they
// differ — forward the closed buckets of watched metrics to each other,
// and each rule is evaluated by its rendezvous owner among the live
// members (those whose manager was heard from within 2 s).
#pragma once

#include "actors/node_settings.hpp"
#include "actors/partition.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <vector>

namespace cairn::actors {

/// Spawns the alert manager (and its notifier). The alert store is the
/// LevelDB at settings->alerts.path when the node has a journal, else in
/// memory. Throws std::runtime_error if that LevelDB cannot be opened.
/// In a cluster, `links` (by member index, null for this node) reach the
/// other members' alert managers: rules and instance states are replicated
/// and each rule is evaluated by one live member (docs/alerting.md,
/// "Cluster").
caf::actor spawn_alert_manager(caf::actor_system& sys, settings_ptr settings,
                               std::vector<partition_actor> partitions,
                               std::vector<caf::actor> links = {});

} // namespace cairn::actors
