// alert_notifier: delivers alert notifications to webhooks
// (docs/alerting.md, "Notifier").
//
// Gets (notify_atom, outbox_id, entry) from the alert manager once the
// entry is durable in the outbox; posts it through the node's webhook
// connection pool (alerts/webhook_pool, a thread of its own whose results
// come back as delivered_atom messages); retries failures with full-jitter
// exponential backoff (retry_atom timers), guarded by one circuit breaker
// per receiver URL (runtime/circuit_breaker: while open, attempts wait for
// its probe and are not counted); after cairn.alerts.max-attempts (or a 4xx
// other than 408/429) the entry is parked as a dead letter. Deliveries of
// one instance to one receiver go out one at a time, in order (a lane), so
// a resolved notice never overtakes its firing notice. On start it re-sends
// the whole outbox (same idempotency keys). Every outcome is recorded in
// the history. Shares the alert store (thread-safe) with the manager.
#pragma once

#include "actors/node_settings.hpp"
#include "alerts/alert_store.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <memory>

namespace cairn::actors {

/// `manager`, if set (a cluster member), gets (delivered_atom, rule, group,
/// key) whenever a notification is done at one receiver (delivered or
/// dead-lettered), and the outbox of the previous run waits for the
/// manager's (notify_atom, std::vector<std::string> handled): the entries
/// another member delivered or took over meanwhile are dropped (history
/// outcome "handled_elsewhere"), the others are sent again.
caf::actor spawn_alert_notifier(caf::actor_system& sys, settings_ptr settings,
                                std::shared_ptr<alerts::alert_store> store,
                                caf::actor manager = {});

} // namespace cairn::actors
