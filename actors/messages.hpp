// Atoms and message types of every Cairn actor, registered in one place.
//
// Types that may cross the wire (event batches) get an `inspect` overload;
// query specs and partial results are local-only for now and whitelisted as
// unsafe message types (the cluster issue gives them inspect overloads).
// `register_message_types(cfg)` must run on every node before the actor
// system is constructed.
#pragma once

#include "cqrs/event_batch.hpp"
#include "cqrs/journal_record.hpp"
#include "cqrs/query.hpp"
#include "cqrs/series_store.hpp"
#include "runtime/connection_context.hpp"
#include "runtime/stream_sink.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/none.hpp>
#include <caf/sec.hpp>

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>
#include <type_traits>

namespace cairn::actors {

// -- atoms --------------------------------------------------------------------

using ingest_atom = caf::atom_constant<caf::atom("ingest")>;
using query_atom = caf::atom_constant<caf::atom("query")>;
using topk_atom = caf::atom_constant<caf::atom("topk")>;
using series_atom = caf::atom_constant<caf::atom("series")>;
using metrics_atom = caf::atom_constant<caf::atom("metrics")>;
using stats_atom = caf::atom_constant<caf::atom("stats")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using request_atom = caf::atom_constant<caf::atom("request")>;
using journaled_atom = caf::atom_constant<caf::atom("journaled")>;
using snapshot_atom = caf::atom_constant<caf::atom("snapshot")>;
using recovered_atom = caf::atom_constant<caf::atom("recovered")>;
/// (read_atom, direct_read_ptr) to the query coordinator: reads without the
/// NDJSON pipeline (actors/query_coordinator.hpp, direct_read).
using read_atom = caf::atom_constant<caf::atom("read")>;
// -- closed-bucket stream (docs/architecture.md) --
/// (subscribe_atom, caf::actor) to a partition: send me closed_batch_ptr
/// messages; (unsubscribe_atom, caf::actor): stop. Also the client ops of
/// the live hub (actors/live/live_hub.hpp).
using subscribe_atom = caf::atom_constant<caf::atom("subscribe")>;
using unsubscribe_atom = caf::atom_constant<caf::atom("unsubscr")>;
/// (closed_atom, closed_batch_ptr): a partition's close pass published.
using closed_atom = caf::atom_constant<caf::atom("closed")>;
/// A partition's timer for its next close pass.
using close_atom = caf::atom_constant<caf::atom("close")>;
// -- alerting (docs/alerting.md) --
/// (alert_atom, std::string line) -> std::string: an alert.* request.
using alert_atom = caf::atom_constant<caf::atom("alert")>;
/// The alert manager's coalesced / aligned evaluation timers.
using evaluate_atom = caf::atom_constant<caf::atom("alerteval")>;
/// (notify_atom, std::string outbox_id, std::string entry): to the notifier.
using notify_atom = caf::atom_constant<caf::atom("notify")>;
/// (delivered_atom, id, status, error, reused, elapsed_us): a webhook outcome.
/// (delivered_atom, rule, group, key): notifier to manager, one receiver is
/// done with a notification.
using delivered_atom = caf::atom_constant<caf::atom("delivered")>;
/// (retry_atom, id): a delivery's backoff expired.
using retry_atom = caf::atom_constant<caf::atom("retry")>;
// -- cluster (docs/cluster.md) --
using forward_atom = caf::atom_constant<caf::atom("forward")>;
using partial_atom = caf::atom_constant<caf::atom("partial")>;
using cluster_atom = caf::atom_constant<caf::atom("cluster")>;
using hinted_atom = caf::atom_constant<caf::atom("hinted")>;
using connect_atom = caf::atom_constant<caf::atom("cconnect")>;
/// (hello_atom, caf::actor own): a peer link learns its own node actor.
/// (hello_atom, std::string name, caf::actor node): the member `name`
/// dialed us; its node actor is `node` (docs/cluster.md, "Who dials").
using hello_atom = caf::atom_constant<caf::atom("hello")>;
/// (pending_atom, std::string from, partition_ids) -> bool: member `from`
/// holds hinted writes for these partitions (docs/cluster.md, "The
/// completeness invariant"). (pending_atom) -> bool, to the node actor: every
/// link announces this node's set to its peer; answered when all did.
/// (pending_atom, bool) -> bool, to a link: announce to your peer now.
using pending_atom = caf::atom_constant<caf::atom("pending")>;
/// (resume_atom, uint64_t ticket): a parser's own timer, a chunk that waited
/// for its rate limit may go on (actors/parser.cpp).
using resume_atom = caf::atom_constant<caf::atom("resume")>;
/// (retire_atom) to a parser the pool's sizer took out of the pool: finish
/// what you hold, then quit (actors/parser.cpp).
using retire_atom = caf::atom_constant<caf::atom("retire")>;

/// (control_atom, std::string cmd_json, std::string payload)
///   -> (std::string reply_json, std::string payload):
/// the control plane of membership changes (docs/sagas.md, docs/cluster.md):
/// partition handoff (`handoff.*`), the partition map (`map.*`) and the
/// replicated saga log (`saga.*`). Sent to a node actor, or to a peer link,
/// which relays it to its peer's node actor. The payload carries binary
/// data (snapshot chunks); the reply JSON has "ok" and, when false, a stable
/// "code" and an "error".
using control_atom = caf::atom_constant<caf::atom("control")>;

/// (handoff_atom, handoff_request) -> handoff_reply: a partition's part of
/// the handoff commands (actors/handoff.hpp, docs/sagas.md "Partition
/// handoff"). (handoff_atom, uint64_t ticket, bool ok, std::string error):
/// from the journal, a handoff write the partition waits for is done.
using handoff_atom = caf::atom_constant<caf::atom("handoff")>;
/// (reroute_atom, remote_ingest) -> uint64_t, to the node actor (which
/// delegates to the ingestor): a peer link hands back a forwarded message
/// or a hint whose partitions another member owns by the current map, to
/// be routed again under its key (docs/cluster.md, "Partition map").
using reroute_atom = caf::atom_constant<caf::atom("reroute")>;

/// (live_follow_atom, caf::actor hub, std::vector<std::string> metrics):
/// to a peer link, then the peer's node actor, then its live hub: send
/// `hub` the closed windows of these metrics (remote_closed) for a while
/// (docs/architecture.md, "Live subscriptions"; renewed every few seconds,
/// an empty list stops it).
using live_follow_atom = caf::atom_constant<caf::atom("livefollow")>;

/// Closed windows of the finest tier, by metric, that a member's partitions
/// published (answer to live_follow_atom): bucket starts of metrics[i] are
/// starts[offsets[i] .. offsets[i + 1]).
struct remote_closed {
  cqrs::millis published_at = 0;
  cqrs::millis resolution = 0;
  std::vector<std::string> metrics;
  std::vector<uint32_t> offsets;
  std::vector<cqrs::millis> starts;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, remote_closed& x) {
  return f(caf::meta::type_name("cairn.remote_closed"), x.published_at,
           x.resolution, x.metrics, x.offsets, x.starts);
}

/// (alert_sync_atom, alert_peer_msg): between the alert managers of two
/// members, through the sender's peer link and the receiver's node actor
/// (docs/alerting.md, "Cluster").
using alert_sync_atom = caf::atom_constant<caf::atom("alertsync")>;

/// One alert replication message; `kind` is an alerts::peer_kind of
/// alerts/replica_codec.hpp, `body` its encoding there.
struct alert_peer_msg {
  uint8_t kind = 0;
  std::string from;  ///< the sending member
  uint64_t digest = 0;
  std::string body;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, alert_peer_msg& x) {
  return f(caf::meta::type_name("cairn.alert_peer_msg"), x.kind, x.from,
           x.digest, x.body);
}

// -- local-only request payloads ----------------------------------------------

/// One handoff command for a partition, parsed and checked by
/// actors/handoff.cpp (docs/sagas.md, "Partition handoff").
struct handoff_request {
  enum class op_t : uint8_t { freeze, export_chunk, import_chunk, release,
                              drop, status, base };
  op_t op = op_t::status;
  std::string token;
  std::string target;   ///< freeze: the member the partition goes to
  uint64_t offset = 0;  ///< export, import
  uint64_t max = 0;     ///< export: chunk size
  uint64_t total = 0;   ///< import: size of the whole export
  uint32_t crc = 0;     ///< import: CRC-32C of the whole export
  std::string payload;  ///< import: the chunk
  /// export, import: of the pre-copy's base (docs/sagas.md, "Pre-copy").
  bool base = false;
  /// export: a full snapshot even if the freeze prepared a delta (the
  /// target refused the delta with no_base).
  bool full = false;
};

/// A partition's answer to a handoff_request: the reply object (with "ok",
/// and "code"/"error" when false) and, for export, the chunk.
struct handoff_reply {
  nlohmann::json body;
  std::string payload;
};

using query_spec_ptr = std::shared_ptr<const cqrs::query_spec>;
using topk_spec_ptr = std::shared_ptr<const cqrs::topk_spec>;
using series_spec_ptr = std::shared_ptr<const cqrs::series_spec>;

/// The buckets one close pass (or seal pass, or apply) of partition
/// `partition` published, in publishing order (docs/architecture.md,
/// "Closed-bucket notifications"). Shared read-only by every subscriber.
struct closed_batch {
  uint32_t partition = 0;
  /// Wall clock (ms) of the pass that published them.
  cqrs::millis published_at = 0;
  std::vector<cqrs::closed_bucket> buckets;
};

using closed_batch_ptr = std::shared_ptr<const closed_batch>;

/// Protocol request objects for the coordinator's direct path, with the
/// callback their replies go to (actors/query_coordinator.hpp,
/// direct_read). If the message is dropped unanswered (the coordinator is
/// gone), the destructor answers every request `unavailable`.
struct direct_read_job {
  nlohmann::json requests;  ///< an array of request objects
  bool batch = false;       ///< false: one request, one reply object
  std::function<void(nlohmann::json)> done;

  /// Calls `done` with `replies` (an array, one per request) unless it was
  /// called before.
  void answer(nlohmann::json replies);
  ~direct_read_job();
};

using direct_read_ptr = std::shared_ptr<direct_read_job>;

/// A client's stream of live messages (a WebSocket or an NDJSON connection).
using stream_sink_ptr = std::shared_ptr<runtime::stream_sink>;

/// What one partition reports about itself.
struct partition_stats {
  uint32_t id = 0;
  uint64_t series = 0;
  uint64_t buckets = 0;
  uint64_t events = 0;
  uint64_t batches = 0;
  uint64_t journal_seq = 0;
  uint64_t snapshot_seq = 0;
  uint64_t replayed_events = 0;
  int64_t recovery_ms = 0;
  uint64_t duplicates = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, partition_stats& x) {
  return f(caf::meta::type_name("cairn.partition_stats"), x.id, x.series,
           x.buckets, x.events, x.batches, x.journal_seq, x.snapshot_seq,
           x.replayed_events, x.recovery_ms, x.duplicates);
}

// -- node-to-node messages (cross the wire) -----------------------------------

/// Events for partitions owned by the receiving node: batches[i] belongs to
/// partitions[i]. `key` is the idempotency key every partition applies the
/// batch under (the client's, or one generated per forwarded message so that
/// a redelivery from the hinted-handoff queue is applied exactly once).
/// Sent to the owner's node actor: (forward_atom, remote_ingest) -> uint64_t
/// events applied, answered once every partition acknowledged durably.
struct remote_ingest {
  std::vector<uint32_t> partitions;
  std::vector<cqrs::event_batch> batches;
  std::string key;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, remote_ingest& x) {
  return f(caf::meta::type_name("cairn.remote_ingest"), x.partitions,
           x.batches, x.key);
}

/// A partial read over some partitions of the receiving node: the client's
/// request line, the asking node's `now` (so relative times resolve the same
/// everywhere) and the partitions to cover. Sent to the owner's node actor:
/// (partial_atom, remote_query) -> remote_partial.
struct remote_query {
  std::string op;
  std::string request;
  int64_t now = 0;
  std::vector<uint32_t> partitions;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, remote_query& x) {
  return f(caf::meta::type_name("cairn.remote_query"), x.op, x.request, x.now,
           x.partitions);
}

/// The owner's merged partial (cqrs/partial_codec encoding) plus the
/// partitions that did not answer there.
struct remote_partial {
  std::string bytes;
  std::vector<uint32_t> missing;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, remote_partial& x) {
  return f(caf::meta::type_name("cairn.remote_partial"), x.bytes, x.missing);
}

/// Registers every message type with `cfg` (call before constructing the
/// actor system, on every node).
void register_message_types(caf::actor_system_config& cfg);

} // namespace cairn::actors

namespace cairn::cqrs {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, event_entry& x) {
  return f(caf::meta::type_name("cairn.event_entry"), x.hash, x.key_offset,
           x.key_length, x.ts, x.value);
}

// On the wire an event batch is one self-contained (version 1) journal
// record: ~17 bytes per event plus each distinct series key once, where
// field-by-field serialization sent a copy of the key and five fields per
// event (docs/cluster.md, "Wire format").

template <class Inspector>
std::enable_if_t<Inspector::reads_state, typename Inspector::result_type>
inspect(Inspector& f, event_batch& x) {
  std::string bytes;
  encode_record(0, {}, x, bytes);
  return f(caf::meta::type_name("cairn.event_batch"), bytes);
}

template <class Inspector>
std::enable_if_t<Inspector::writes_state, typename Inspector::result_type>
inspect(Inspector& f, event_batch& x) {
  std::string bytes;
  return f(caf::meta::type_name("cairn.event_batch"), bytes,
           caf::meta::load_callback([&]() -> caf::error {
             journal_record rec;
             if (decode_record(bytes, rec) != decode_result::ok)
               return caf::make_error(caf::sec::invalid_argument,
                                      "event batch does not decode");
             x = std::move(rec.events);
             return caf::none;
           }));
}

} // namespace cairn::cqrs

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::runtime::chunk)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::query_spec_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::closed_batch_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::stream_sink_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::topk_spec_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::series_spec_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::direct_read_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::handoff_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::actors::handoff_reply)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::cqrs::query_partial)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::cqrs::topk_partial)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::cqrs::series_partial)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cairn::cqrs::metrics_partial)
