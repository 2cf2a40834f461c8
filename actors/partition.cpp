#include "actors/partition.hpp"

#include "actors/introspection.hpp"

#include "cqrs/detail/stream_pool.hpp"
#include "cqrs/handoff_delta.hpp"
#include "cqrs/handoff_marker.hpp"
#include "cqrs/idempotency_window.hpp"
#include "cqrs/journal_record.hpp"
#include "cqrs/series_store.hpp"
#include "cqrs/snapshot.hpp"
#include "runtime/journal.hpp"
#include "runtime/log.hpp"
#include "runtime/metrics.hpp"
#include "runtime/process_metrics.hpp"

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/response_promise.hpp>
#include <caf/sec.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <algorithm>
#include <deque>
#include <functional>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>
#include <variant>

#include <malloc.h>
#include <unistd.h>

namespace cairn::actors {

struct recovered_partition {
  cqrs::series_store store;
  cqrs::idempotency_window keys;
  cqrs::restore_report report;
  int64_t recovery_ms = 0;
  /// The handoff marker found under ('m', id, 1), if any.
  std::optional<cqrs::handoff_marker> marker;
};

recovered_partition_ptr recover_partition(uint32_t id,
                                          const settings_ptr& s) {
  auto start = std::chrono::steady_clock::now();
  auto result = std::make_shared<recovered_partition>(recovered_partition{
    cqrs::series_store{s->tiers, s->mapping},
    cqrs::idempotency_window{s->idempotency_keys, s->idempotency_window},
    {},
    0,
    std::nullopt});
  result->store.seal_after(s->seal_after);
  cqrs::restore_options opts;
  opts.skip_corrupt = s->skip_corrupt;
  result->report = cqrs::restore_partition(*s->journal, id, result->store,
                                           result->keys, opts);
  if (!result->report.ok)
    throw std::runtime_error("partition " + std::to_string(id)
                             + ": recovery failed: " + result->report.error);
  // Snapshots newer than the one used were rejected as corrupt: drop them so
  // they never count towards cairn.snapshot.keep and push a valid one out.
  for (auto seq : s->journal->snapshot_seqs(id))
    if (seq > result->report.snapshot_seq) {
      spdlog::warn("partition {}: deleting corrupt snapshot at seq {}", id,
                   seq);
      s->journal->erase_snapshot(id, seq);
    }
  // A partition frozen for a handoff comes back frozen, one that was
  // imported remembers the token (docs/sagas.md, "Partition handoff").
  if (auto bytes = s->journal->read_meta(id, runtime::journal::handoff_slot)) {
    cqrs::handoff_marker m;
    if (cqrs::decode_handoff_marker(*bytes, m)) {
      result->marker = std::move(m);
    } else if (s->skip_corrupt) {
      spdlog::warn("partition {}: handoff marker does not decode; ignored "
                   "(skip-corrupt)",
                   id);
    } else {
      throw std::runtime_error("partition " + std::to_string(id)
                               + ": handoff marker does not decode");
    }
  }
  result->recovery_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - start)
                          .count();
  return result;
}

uint64_t replayed_events(const recovered_partition& r) noexcept {
  return r.report.events_replayed;
}

namespace {

/// Size of the series keys in a partition's journal dictionary above which
/// the next record resets it (bounds its memory between snapshots).
constexpr size_t max_dictionary_bytes = 64u << 20;

/// An ingest batch waiting for its journal write.
struct pending_write {
  uint64_t seq = 0;  ///< 0 for duplicates (no write)
  cqrs::event_batch batch;
  std::string key;
  caf::typed_response_promise<uint64_t> promise;
  cqrs::millis accepted_at = 0;
  bool done = false;
  bool ok = true;
  std::string error;
};

/// Node-wide memory gauges (docs/architecture.md, "Memory"): every
/// partition adds the change of its own figures, so the gauges are sums.
struct memory_gauges {
  std::atomic<int64_t>* open_bytes;
  std::atomic<int64_t>* open_buckets;
  std::vector<std::atomic<int64_t>*> sealed_bytes;
  std::vector<std::atomic<int64_t>*> sealed_buckets;
  std::atomic<int64_t>* dictionary_bytes;
  std::atomic<int64_t>* idempotency_bytes;
  /// The process's block stream pool (cqrs/detail/stream_pool.hpp): bytes
  /// held from the system and bytes in live streams; set by partition 0.
  std::atomic<int64_t>* stream_pool_bytes;
  std::atomic<int64_t>* stream_pool_used_bytes;
  std::atomic<int64_t>* series;
  std::atomic<int64_t>* snapshot_age = nullptr; ///< this partition's, in ms

  explicit memory_gauges(runtime::metrics_registry& m,
                         const cqrs::tier_set& tiers) {
    open_bytes = &m.gauge("cairn_memory_open_bucket_bytes",
                          "Bytes of open (mutable) buckets");
    open_buckets = &m.gauge("cairn_memory_open_buckets", "Open buckets");
    for (auto& t : tiers.tiers()) {
      sealed_bytes.push_back(&m.gauge("cairn_memory_sealed_bytes",
                                      "Bytes of sealed blocks, by tier",
                                      {{"tier", t.name}}));
      sealed_buckets.push_back(&m.gauge("cairn_memory_sealed_buckets",
                                        "Sealed buckets, by tier",
                                        {{"tier", t.name}}));
    }
    dictionary_bytes = &m.gauge("cairn_memory_series_dictionary_bytes",
                                "Bytes of series keys and indexes");
    idempotency_bytes = &m.gauge("cairn_memory_idempotency_bytes",
                                 "Bytes of the idempotency windows");
    stream_pool_bytes = &m.gauge("cairn_memory_stream_pool_bytes",
                                 "Bytes the sealed-block stream pool holds "
                                 "from the system (all partitions)");
    stream_pool_used_bytes = &m.gauge("cairn_memory_stream_pool_used_bytes",
                                      "Bytes of live block streams in the "
                                      "stream pool (all partitions)");
    series = &m.gauge("cairn_series", "Series held by this node");
  }

  void track_snapshots(runtime::metrics_registry& m, uint32_t partition) {
    snapshot_age = &m.gauge("cairn_snapshot_age_seconds",
                            "Time since the partition last started a "
                            "snapshot or finished recovery",
                            {{"partition", std::to_string(partition)}}, 1000);
  }
};

struct replacement;

/// A partition's batches are a few hundred events: their `encode` and
/// `apply` are timed once in this many (runtime/ingest_costs.hpp).
constexpr uint32_t cost_sample = 8;

struct partition_state {
  uint32_t id = 0;
  settings_ptr settings;
  std::optional<cqrs::series_store> store;
  std::optional<cqrs::idempotency_window> keys;
  std::unordered_set<std::string> pending_keys;
  std::deque<pending_write> pending;
  partition_stats stats;
  bool recovering = false;
  uint64_t next_seq = 1;
  uint64_t applied_seq = 0;  ///< highest seq applied to the store
  uint64_t drained_seq = 0;  ///< highest seq whose write completed (in order)
  uint64_t events_since_snapshot = 0;
  std::chrono::steady_clock::time_point last_snapshot;
  bool snapshot_in_flight = false;
  /// Series dictionary of the journal records (cqrs/journal_record.hpp).
  /// Replay after a snapshot starts with an empty one, so the record after
  /// a snapshot's covered seq must reset it: a snapshot is requested by
  /// flagging the next record as a reset (`reset_dictionary`) and taken
  /// once every record before that one is applied (`snapshot_at`).
  cqrs::series_dictionary dictionary;
  bool reset_dictionary = true;  ///< the next record starts a new one
  bool snapshot_pending = false;
  uint64_t snapshot_at = 0;
  std::vector<caf::typed_response_promise<uint64_t>> snapshot_waiters;
  /// (covered seq, time taken) of written snapshots, oldest first; used to
  /// delete journal records once older than the raw retention.
  std::deque<std::pair<uint64_t, cqrs::millis>> snapshots;
  std::string scratch;
  /// Memory figures last added to the gauges (subtracted on the next update).
  cqrs::store_memory reported;
  int64_t reported_keys_bytes = 0;
  int64_t reported_series = 0;
  std::optional<memory_gauges> gauges;
  uint32_t ticks = 0;

  // -- handoff (docs/sagas.md, "Partition handoff") ---------------------------
  /// An ingest batch held while the partition is frozen.
  struct held_write {
    cqrs::event_batch batch;
    std::string key;
    caf::typed_response_promise<uint64_t> promise;
  };
  /// Frozen for a handoff (the source): ingest is held, reads are answered.
  bool frozen = false;
  /// The frozen marker is on disk (always true without a journal).
  bool marker_durable = false;
  /// Token, target and time of the freeze.
  cqrs::handoff_marker marker;
  std::deque<held_write> held;
  /// The export: a snapshot envelope of the frozen state, prepared once
  /// the freeze is durable and every write before it is applied.
  bool export_ready = false;
  /// The export is a delta over a pre-copy base (else a full snapshot).
  bool export_delta = false;
  std::string export_bytes;
  uint32_t export_crc = 0;
  std::vector<caf::typed_response_promise<handoff_reply>> freeze_waiters;
  /// The target: the import being received (chunks in order).
  std::string import_token;
  uint64_t import_total = 0;
  uint32_t import_crc = 0;
  std::string import_bytes;
  /// The token of the completed import this state came from (durable).
  std::string imported_token;
  /// "importing" or "dropping" while that new state is made durable.
  std::string busy;
  std::string busy_token;
  std::vector<caf::typed_response_promise<handoff_reply>> busy_waiters;
  /// Run once nothing is in flight (no pending write, no snapshot).
  std::vector<std::function<void()>> on_quiet;
  // -- pre-copy (docs/sagas.md, "Pre-copy") ------------------------------------
  /// The source: the base export of a pre-copy (a snapshot taken while
  /// serving), its token and time, and every batch applied since, in order
  /// (the delta the freeze exports). Memory only: a restart forgets it and
  /// the freeze exports a full snapshot.
  std::string base_token;
  std::string base_bytes;
  uint32_t base_crc = 0;
  cqrs::millis base_at = 0;
  std::vector<cqrs::journal_record> tail;
  size_t tail_bytes = 0;
  /// The tail outgrew max_tail_bytes and was dropped: the freeze exports a
  /// full snapshot.
  bool tail_overflow = false;
  /// The target: a received base, decoded, waiting for its delta.
  std::string staged_token;
  uint32_t staged_crc = 0;
  std::shared_ptr<replacement> staged;

  /// Applies `batch` to the store at wall clock `now`, timed as the
  /// `apply` stage (runtime/ingest_costs.hpp).
  void apply(const cqrs::event_batch& batch, cqrs::millis now) {
    runtime::stage_timer timer{settings->costs.get(), runtime::ingest_stage::apply,
                               batch.size(), cost_sample};
    store->set_clock(now);
    store->apply(batch);
  }

  /// Records a batch just applied (key before it moves into the window).
  void record_applied(const cqrs::event_batch& batch, const std::string& key,
                      cqrs::millis at);
  void forget_base() {
    base_token.clear();
    base_bytes = std::string{};
    tail.clear();
    tail.shrink_to_fit();
    tail_bytes = 0;
    tail_overflow = false;
  }

  /// Journal writes of the handoff awaited by ticket.
  uint64_t next_ticket = 1;
  std::unordered_map<uint64_t, std::function<void(bool, std::string)>> tickets;
  /// cairn_handoff_pause_seconds (null without metrics).
  runtime::latency_histogram* pause_histogram = nullptr;

  bool quiet() const noexcept {
    return pending.empty() && !snapshot_in_flight && !snapshot_pending;
  }

  // -- closed-bucket stream (docs/architecture.md) ----------------------------
  /// Subscribed actors (monitored).
  std::vector<caf::actor> subscribers;
  /// Buckets the store published since the last publish_closed.
  std::vector<cqrs::closed_bucket> closed;
  /// A close_atom timer is pending.
  bool close_armed = false;

  /// Installs the store's closed-bucket handler (with subscribers only:
  /// without one nothing is copied).
  void install_closed_handler() {
    if (!store)
      return;
    if (subscribers.empty()) {
      store->on_closed({});
      closed.clear();
      return;
    }
    store->on_closed([this](std::vector<cqrs::closed_bucket>&& batch) {
      if (closed.empty())
        closed = std::move(batch);
      else
        std::move(batch.begin(), batch.end(), std::back_inserter(closed));
    });
  }

  static inline const char* name = "cairn.partition";

  /// Tells the node's series registry (the cardinality guard) about every
  /// series of the store, now and as they come and go.
  /// Also installs the store's series handler for the node's series index
  /// (attached by index_series once recovered).
  void register_series() {
    if (!store)
      return;
    auto reg = settings->series_registry;
    if (reg && reg->limit() == 0)
      reg = nullptr;
    auto index = settings->series_index;
    if (reg)
      store->for_each_key(
        [&](std::string_view key) { reg->insert(cqrs::series_hash(key)); });
    if (!reg && !index)
      return;
    store->on_series([reg, index, p = id](std::string_view key, uint64_t hash,
                                          bool added) {
      if (reg) {
        if (added)
          reg->insert(hash);
        else
          reg->erase(hash);
      }
      if (index) {
        if (added)
          index->add(p, key);
        else
          index->remove(p, key);
      }
    });
  }

  /// Lists every series of the (recovered) store in the node's series index
  /// (cqrs/series_index.hpp); from now on the store's handler keeps it.
  void index_series() {
    // Other threads may read the recovered store from now on
    // (actors/store_access.hpp); the actor writes it under its latch.
    if (settings->stores && store)
      settings->stores->attach(id, &*store);
    auto& index = settings->series_index;
    if (!index || !store)
      return;
    std::vector<std::string> all;
    store->for_each_key([&](std::string_view key) { all.emplace_back(key); });
    index_token = index->attach(id, all);
  }

  /// The token of this partition's attach to the series index (0: none).
  uint64_t index_token = 0;

  /// Held while the actor handles a message (introspectable_actor's
  /// consume): readers on other threads (store_access::try_read) never see
  /// the store in the middle of a write.
  store_access::writer_guard consume_guard() {
    if (!settings)
      return {};
    return store_access::writer(settings->stores, id);
  }

  ~partition_state() {
    // Readers on other threads stop before the store goes.
    if (settings && settings->stores)
      settings->stores->detach(id);
    // A stopped partition answers nothing: readers must not rely on the
    // series it listed.
    if (index_token != 0 && settings && settings->series_index)
      settings->series_index->detach(id, index_token);
  }

  /// Adds the change of this partition's memory figures to the gauges.
  void update_memory_gauges() {
    if (!gauges || !store || !keys)
      return;
    auto m = store->memory();
    auto add = [](std::atomic<int64_t>* g, uint64_t now, uint64_t before) {
      g->fetch_add(static_cast<int64_t>(now) - static_cast<int64_t>(before));
    };
    reported.sealed_bytes.resize(m.sealed_bytes.size(), 0);
    reported.sealed_buckets.resize(m.sealed_buckets.size(), 0);
    add(gauges->open_bytes, m.open_bytes, reported.open_bytes);
    add(gauges->open_buckets, m.open_buckets, reported.open_buckets);
    for (size_t i = 0; i < m.sealed_bytes.size(); ++i) {
      add(gauges->sealed_bytes[i], m.sealed_bytes[i], reported.sealed_bytes[i]);
      add(gauges->sealed_buckets[i], m.sealed_buckets[i],
          reported.sealed_buckets[i]);
    }
    add(gauges->dictionary_bytes, m.dictionary_bytes,
        reported.dictionary_bytes);
    auto kb = static_cast<int64_t>(keys->memory_usage());
    gauges->idempotency_bytes->fetch_add(kb - reported_keys_bytes);
    reported_keys_bytes = kb;
    auto n = static_cast<int64_t>(store->series_count());
    gauges->series->fetch_add(n - reported_series);
    reported_series = n;
    reported = std::move(m);
    if (id == 0) {
      auto pool = cqrs::detail::stream_pool_usage();
      gauges->stream_pool_bytes->store(static_cast<int64_t>(pool.system_bytes));
      gauges->stream_pool_used_bytes->store(
        static_cast<int64_t>(pool.used_bytes));
    }
  }

  /// The memory figures of this partition for `inspect`.
  void describe_memory(nlohmann::json& out) const {
    auto m = store->memory();
    out["open_buckets"] = m.open_buckets;
    out["open_bucket_bytes"] = m.open_bytes;
    auto& sealed = out["sealed"] = nlohmann::json::object();
    for (size_t i = 0; i < m.sealed_bytes.size(); ++i)
      sealed[store->tiers()[i].name] = {{"buckets", m.sealed_buckets[i]},
                                        {"bytes", m.sealed_bytes[i]}};
    out["series_dictionary_bytes"] = m.dictionary_bytes;
    out["idempotency_bytes"] = keys ? keys->memory_usage() : 0;
    out["process_rss_bytes"] = runtime::read_process_figures().resident_bytes;
  }

  runtime::journal* journal() const { return settings->journal.get(); }

  /// Console introspection (actors/introspection.hpp).
  void describe(nlohmann::json& out) const {
    out["partition"] = id;
    out["recovering"] = recovering;
    if (store) {
      out["series"] = store->series_count();
      out["buckets"] = store->bucket_count();
      out["events"] = store->events_applied();
      describe_memory(out["memory"]);
    }
    out["batches"] = stats.batches;
    out["duplicates"] = stats.duplicates;
    out["journal_seq"] = applied_seq;
    out["next_seq"] = next_seq;
    out["pending_writes"] = pending.size();
    out["persistent"] = settings->journal != nullptr;
    out["snapshot_seq"] = stats.snapshot_seq;
    out["snapshot_in_flight"] = snapshot_in_flight;
    out["snapshot_pending"] = snapshot_pending;
    out["dictionary_series"] = dictionary.size();
    out["events_since_snapshot"] = events_since_snapshot;
    out["last_snapshot_ms"] = snapshots.empty() ? cqrs::millis{0}
                                                : snapshots.back().second;
    out["snapshots_kept"] = snapshots.size();
    auto& h = out["handoff"] = nlohmann::json::object();
    h["frozen"] = frozen;
    if (frozen) {
      h["token"] = marker.token;
      h["target"] = marker.target;
      h["held"] = held.size();
      h["export_bytes"] = export_bytes.size();
    }
    if (!import_token.empty())
      h["import"] = {{"token", import_token}, {"have", import_bytes.size()},
                     {"total", import_total}};
    if (!imported_token.empty())
      h["imported_token"] = imported_token;
    if (!busy.empty())
      h["busy"] = busy;
  }

  partition_stats current_stats() {
    stats.id = id;
    stats.series = store->series_count();
    stats.buckets = store->bucket_count();
    stats.events = store->events_applied();
    stats.journal_seq = applied_seq;
    return stats;
  }
};

using partition_pointer
  = introspectable_actor<partition_state, partition_actor::base>*;

/// Sends what the store published since the last call to every
/// subscriber, as one shared batch.
void publish_closed(partition_pointer self) {
  auto& st = self->state;
  if (st.closed.empty())
    return;
  auto batch = std::make_shared<closed_batch>();
  batch->partition = st.id;
  batch->published_at = cqrs::wall_clock_now();
  batch->buckets.swap(st.closed);
  closed_batch_ptr out = std::move(batch);
  for (auto& sub : st.subscribers)
    caf::anon_send(sub, closed_atom::value, out);
}

/// Arms the next close pass: the next window end of the finest tier plus
/// the grace (docs/architecture.md, "Closed-bucket notifications").
void arm_close(partition_pointer self) {
  auto& st = self->state;
  if (st.close_armed || st.subscribers.empty())
    return;
  st.close_armed = true;
  cqrs::millis res = st.settings->tiers[0].resolution;
  for (auto& t : st.settings->tiers.tiers())
    res = std::min(res, t.resolution);
  auto now = cqrs::wall_clock_now();
  auto grace = st.settings->live_grace;
  auto next = (now - grace) - (now - grace) % res + res + grace;
  self->delayed_send(self, std::chrono::milliseconds{std::max<cqrs::millis>(1, next - now)},
                     close_atom::value);
}

void take_snapshot(partition_pointer self) {
  auto& st = self->state;
  if (!st.journal() || st.snapshot_in_flight || st.applied_seq == 0
      || st.applied_seq == st.stats.snapshot_seq)
    return;
  st.snapshot_in_flight = true;
  cqrs::snapshot_header header;
  header.partition = st.id;
  header.covered_seq = st.applied_seq;
  header.taken_at = cqrs::wall_clock_now();
  std::string bytes;
  cqrs::encode_snapshot(header, *st.store, *st.keys, bytes);
  auto covered = st.applied_seq;
  auto hdl = caf::actor_cast<partition_actor>(self);
  st.journal()->write_snapshot(
    st.id, covered, std::move(bytes),
    [hdl, covered](bool ok, std::string err) {
      caf::anon_send(hdl, snapshot_atom::value, covered, ok, std::move(err));
    });
  st.events_since_snapshot = 0;
  st.last_snapshot = std::chrono::steady_clock::now();
}

/// Takes the requested snapshot once every record before the reset record
/// is applied, and answers whoever waits for it.
void maybe_snapshot(partition_pointer self) {
  auto& st = self->state;
  if (!st.snapshot_pending || st.drained_seq < st.snapshot_at)
    return;
  st.snapshot_pending = false;
  take_snapshot(self);
  for (auto& rp : st.snapshot_waiters)
    rp.deliver(st.applied_seq);
  st.snapshot_waiters.clear();
}

/// Asks for a snapshot at the next dictionary reset: the records encoded so
/// far (up to next_seq - 1) use the current dictionary, the next one starts
/// a new one, and the snapshot covers exactly the records before it.
void request_snapshot(partition_pointer self) {
  auto& st = self->state;
  if (!st.journal() || st.recovering || st.snapshot_in_flight
      || st.snapshot_pending)
    return;
  st.reset_dictionary = true;
  st.snapshot_pending = true;
  st.snapshot_at = st.next_seq - 1;
  maybe_snapshot(self);
}

void run_quiet_actions(partition_pointer self);

/// Applies and acknowledges the writes at the front of the queue that are
/// durable, in order.
void drain(partition_pointer self) {
  auto& st = self->state;
  while (!st.pending.empty() && st.pending.front().done) {
    auto& w = st.pending.front();
    if (!w.key.empty())
      st.pending_keys.erase(w.key);
    if (w.seq == 0) {
      st.stats.duplicates += 1;
      w.promise.deliver(uint64_t{0});
    } else if (w.ok) {
      st.apply(w.batch, cqrs::wall_clock_now());
      publish_closed(self);
      st.applied_seq = w.seq;
      st.drained_seq = w.seq;
      st.events_since_snapshot += w.batch.size();
      st.record_applied(w.batch, w.key, w.accepted_at);
      if (!w.key.empty())
        st.keys->insert(std::move(w.key), w.accepted_at);
      w.promise.deliver(static_cast<uint64_t>(w.batch.size()));
    } else {
      st.drained_seq = w.seq;
      w.promise.deliver(caf::make_error(caf::sec::runtime_error,
                                        "journal write failed: " + w.error));
    }
    st.pending.pop_front();
    // Before the next record is applied: the snapshot must not see it.
    maybe_snapshot(self);
  }
  if (st.events_since_snapshot >= st.settings->snapshot_every_events)
    request_snapshot(self);
  run_quiet_actions(self);
}

/// A partition still replaying its journal has not got every acknowledged
/// write yet: reads fail, so the answer lists it as missing (a peer asking
/// for a partial of it included) instead of claiming to be complete.
caf::error not_recovered(partition_pointer self) {
  return caf::make_error(caf::sec::runtime_error,
                         "partition " + std::to_string(self->state.id)
                           + " is recovering");
}

/// Writes held by a frozen partition, at most (docs/sagas.md, "Partition
/// handoff"); beyond it ingest is refused as unavailable (clients retry).
constexpr size_t max_held_writes = 1024;

/// Largest export chunk a partition answers (handoff.export's `max`).
constexpr uint64_t max_export_chunk = 16u << 20;
constexpr uint64_t default_export_chunk = 1u << 20;

/// Bytes of applied batches a pre-copy's source keeps for its delta, at
/// most; past it the delta is given up and the freeze exports a full
/// snapshot (docs/sagas.md, "Pre-copy").
constexpr size_t max_tail_bytes = 64u << 20;
/// A pre-copy base (source) or staged base (target) not followed by its
/// freeze or delta within this long is forgotten.
constexpr cqrs::millis base_lifetime = 10 * 60'000;

void partition_state::record_applied(const cqrs::event_batch& batch,
                                     const std::string& key, cqrs::millis at) {
  if (base_token.empty() || tail_overflow)
    return;
  tail_bytes += batch.keys.size() + batch.entries.size() * sizeof(cqrs::event_entry)
                + key.size() + sizeof(cqrs::journal_record);
  if (tail_bytes > max_tail_bytes) {
    // The token came from a peer's request: logged as a JSON string, so a
    // control character in it cannot forge a log line.
    spdlog::info("partition {}: the delta of pre-copy {} passed {} bytes; the "
                 "freeze will export a full snapshot",
                 id, runtime::quoted(base_token), max_tail_bytes);
    tail_overflow = true;
    tail.clear();
    tail.shrink_to_fit();
    return;
  }
  tail.push_back(cqrs::journal_record{at, key, batch});
}

/// The answer to a write for a partition this node does not own (any
/// more): the ingestor re-routes it by the current map (actors/handoff.hpp,
/// is_moved).
caf::error moved_error(uint32_t id) {
  return caf::make_error(caf::sec::runtime_error,
                         "moved: partition " + std::to_string(id)
                           + " is not owned by this node");
}

/// In-memory mode, where the projection is the only state: applies `batch`
/// under `key` unless the key is a duplicate; returns the events applied.
uint64_t apply_in_memory(partition_pointer self, cqrs::event_batch& batch,
                         std::string& key) {
  auto& st = self->state;
  if (!key.empty() && st.keys->contains(key)) {
    st.stats.duplicates += 1;
    return 0;
  }
  auto now = cqrs::wall_clock_now();
  st.apply(batch, now);
  publish_closed(self);
  st.record_applied(batch, key, now);
  if (!key.empty())
    st.keys->insert(std::move(key), now);
  return batch.size();
}

/// Applies (in memory mode) or journals `batch` under `key`, answering
/// `promise` once it is applied (journal mode: durable).
void accept(partition_pointer self, cqrs::event_batch& batch, std::string& key,
            caf::typed_response_promise<uint64_t> promise) {
  auto& st = self->state;
  if (!st.journal()) {
    promise.deliver(apply_in_memory(self, batch, key));
    return;
  }
  pending_write w;
  w.accepted_at = cqrs::wall_clock_now();
  st.keys->expire(w.accepted_at);
  w.promise = std::move(promise);
  if (!key.empty()
      && (st.keys->contains(key) || st.pending_keys.count(key) > 0)) {
    // Seen before: answer (in order, once everything before it is durable)
    // without writing or applying anything.
    w.done = true;
    st.pending.push_back(std::move(w));
    drain(self);
    return;
  }
  w.seq = st.next_seq++;
  st.scratch.clear();
  // A dictionary that grew large (many series between snapshots) starts
  // over too: a reset is valid at any record.
  bool reset = st.reset_dictionary
               || st.dictionary.key_bytes() > max_dictionary_bytes;
  st.reset_dictionary = false;
  {
    // `write` is timed by the journal's thread; its events are counted here.
    runtime::stage_timer timer{st.settings->costs.get(),
                               runtime::ingest_stage::encode, batch.size(),
                               cost_sample};
    cqrs::encode_record(w.accepted_at, key, batch, st.dictionary, reset,
                        st.scratch);
    if (auto* costs = st.settings->costs.get())
      costs->add(runtime::ingest_stage::write, 0, batch.size());
  }
  auto hdl = caf::actor_cast<partition_actor>(self);
  auto seq = w.seq;
  st.journal()->append(st.id, seq, st.scratch,
                       [hdl, seq](bool ok, std::string err) {
                         caf::anon_send(hdl, journaled_atom::value, seq, ok,
                                        std::move(err));
                       });
  if (!key.empty())
    st.pending_keys.insert(key);
  w.batch = std::move(batch);
  w.key = std::move(key);
  st.pending.push_back(std::move(w));
}

caf::result<uint64_t> ingest(partition_pointer self, cqrs::event_batch& batch,
                             std::string& key) {
  auto& st = self->state;
  st.stats.batches += 1;
  if (st.recovering)
    return caf::make_error(caf::sec::runtime_error,
                           "partition " + std::to_string(st.id)
                             + " is recovering");
  if (st.frozen) {
    // Held: not journaled, not applied, not acknowledged until release
    // (applied then) or drop (answered `moved`).
    if (st.held.size() >= max_held_writes)
      return caf::make_error(caf::sec::runtime_error,
                             "unavailable: partition " + std::to_string(st.id)
                               + " is frozen for a handoff and holds "
                               + std::to_string(st.held.size())
                               + " writes; retry");
    auto rp = self->make_response_promise<uint64_t>();
    st.held.push_back({std::move(batch), std::move(key), rp});
    return rp;
  }
  if (!st.settings->cluster.local(st.id))
    return moved_error(st.id);
  if (!st.journal())
    return apply_in_memory(self, batch, key); // no promise
  auto rp = self->make_response_promise<uint64_t>();
  accept(self, batch, key, rp);
  return rp;
}

// -- handoff (docs/sagas.md, "Partition handoff") -----------------------------

using nlohmann::json;

handoff_reply refuse(const std::string& code, const std::string& error,
                     json extra = json::object()) {
  extra["ok"] = false;
  extra["code"] = code;
  extra["error"] = error;
  return {std::move(extra), {}};
}

std::string partition_name(const partition_state& st) {
  return "partition " + std::to_string(st.id);
}

/// A journal callback that hands (ok, error) to `fn` on the actor's thread.
runtime::journal_callback durable(partition_pointer self,
                                  std::function<void(bool, std::string)> fn) {
  auto& st = self->state;
  auto ticket = st.next_ticket++;
  st.tickets.emplace(ticket, std::move(fn));
  auto hdl = caf::actor_cast<partition_actor>(self);
  return [hdl, ticket](bool ok, std::string err) {
    caf::anon_send(hdl, handoff_atom::value, ticket, ok, std::move(err));
  };
}

/// Runs `f` now if nothing is in flight, else once that is the case.
void when_quiet(partition_pointer self, std::function<void()> f) {
  auto& st = self->state;
  if (st.quiet())
    f();
  else
    st.on_quiet.push_back(std::move(f));
}

void run_quiet_actions(partition_pointer self) {
  auto& st = self->state;
  while (!st.on_quiet.empty() && st.quiet()) {
    auto f = std::move(st.on_quiet.front());
    st.on_quiet.erase(st.on_quiet.begin());
    f();
  }
}

void observe_pause(partition_state& st) {
  if (st.pause_histogram == nullptr)
    return;
  auto ms = std::max<cqrs::millis>(0, cqrs::wall_clock_now() - st.marker.at);
  st.pause_histogram->observe(std::chrono::milliseconds{ms});
}

/// Feeds the held writes through the normal path, in arrival order.
void replay_held(partition_pointer self) {
  auto& st = self->state;
  auto held = std::move(st.held);
  st.held.clear();
  for (auto& h : held) {
    if (!st.settings->cluster.local(st.id)) {
      h.promise.deliver(moved_error(st.id));
      continue;
    }
    accept(self, h.batch, h.key, h.promise);
  }
}

/// Ends a freeze (release, drop, or a failed marker write): answers the
/// freeze waiters with `code` and forgets the export.
void unfreeze(partition_pointer self, const std::string& code) {
  auto& st = self->state;
  if (st.frozen && st.marker_durable)
    observe_pause(st);
  st.frozen = false;
  st.marker_durable = false;
  st.export_ready = false;
  st.export_delta = false;
  st.export_bytes = std::string{};
  st.forget_base();
  auto waiters = std::move(st.freeze_waiters);
  st.freeze_waiters.clear();
  for (auto& w : waiters)
    w.deliver(refuse(code, partition_name(st) + ": the freeze ended ("
                             + code + ")"));
}

/// A snapshot envelope of the partition's current state into `out`.
void encode_state(const partition_state& st, std::string& out) {
  cqrs::snapshot_header header;
  header.partition = st.id;
  header.covered_seq = st.applied_seq;
  header.taken_at = cqrs::wall_clock_now();
  out.clear();
  cqrs::encode_snapshot(header, *st.store, *st.keys, out);
}

/// The freeze's export: the delta since the pre-copy's base if this
/// handoff made one and its tail is whole (docs/sagas.md, "Pre-copy"),
/// else a full snapshot (`full` forces it).
void prepare_export(partition_state& st, bool full = false) {
  if (st.export_ready && !(full && st.export_delta))
    return;
  st.export_bytes.clear();
  st.export_delta = !full && st.base_token == st.marker.token
                    && !st.base_token.empty() && !st.tail_overflow;
  if (st.export_delta)
    cqrs::encode_handoff_delta(st.base_crc, st.tail, st.export_bytes);
  else
    encode_state(st, st.export_bytes);
  st.forget_base();
  st.export_crc = cqrs::crc32c(st.export_bytes);
  st.export_ready = true;
}

json frozen_reply(const partition_state& st) {
  return {{"ok", true},
          {"total", st.export_bytes.size()},
          {"crc", st.export_crc},
          {"series", st.store->series_count()},
          {"events", st.store->events_applied()},
          {"delta", st.export_delta},
          {"held", st.held.size()}};
}

/// Answers the freeze waiters once the marker is durable and every write
/// accepted before the freeze is applied.
void finish_freeze(partition_pointer self) {
  auto& st = self->state;
  if (!st.frozen || !st.marker_durable || st.freeze_waiters.empty())
    return;
  if (!st.quiet()) {
    st.on_quiet.push_back([self] { finish_freeze(self); });
    return;
  }
  prepare_export(st);
  auto waiters = std::move(st.freeze_waiters);
  st.freeze_waiters.clear();
  auto body = frozen_reply(st);
  for (auto& w : waiters)
    w.deliver(handoff_reply{body, {}});
}

caf::result<handoff_reply> handoff_freeze(partition_pointer self,
                                          handoff_request& req) {
  auto& st = self->state;
  if (st.frozen) {
    if (st.marker.token != req.token)
      return refuse("handoff_conflict",
                    partition_name(st) + " is frozen for another handoff",
                    {{"token", st.marker.token}});
  } else {
    if (!st.settings->cluster.local(st.id))
      return refuse("not_owner",
                    partition_name(st) + " is not owned by this node");
    if (!st.busy.empty())
      return refuse("busy", partition_name(st) + " is " + st.busy);
    st.frozen = true;
    st.marker = {cqrs::handoff_marker::kind_t::frozen, req.token, req.target,
                 cqrs::wall_clock_now()};
    st.imported_token.clear();
    st.import_token.clear();
    st.import_bytes = std::string{};
    if (!st.journal()) {
      st.marker_durable = true;
    } else {
      std::string bytes;
      cqrs::encode_handoff_marker(st.marker, bytes);
      auto token = req.token;
      st.journal()->put_meta(
        st.id, runtime::journal::handoff_slot, std::move(bytes),
        durable(self, [self, token](bool ok, std::string err) {
          auto& st = self->state;
          if (!st.frozen || st.marker.token != token)
            return; // released or dropped meanwhile
          if (!ok) {
            spdlog::error("{}: handoff marker write failed: {}",
                          partition_name(st), err);
            unfreeze(self, "storage");
            replay_held(self);
            return;
          }
          st.marker_durable = true;
          finish_freeze(self);
        }));
    }
  }
  auto rp = self->make_response_promise<handoff_reply>();
  st.freeze_waiters.push_back(rp);
  finish_freeze(self);
  return rp;
}

/// The pre-copy's base (docs/sagas.md, "Pre-copy"): a snapshot of the
/// serving partition, encoded now; every batch applied from here on is kept
/// for the freeze's delta. Answered again (the same base) on a retry.
handoff_reply handoff_base(partition_pointer self, handoff_request& req) {
  auto& st = self->state;
  if (st.frozen)
    return refuse("handoff_conflict",
                  partition_name(st) + " is frozen for a handoff",
                  {{"token", st.marker.token}});
  if (!st.settings->cluster.local(st.id))
    return refuse("not_owner", partition_name(st) + " is not owned by this node");
  if (!st.busy.empty())
    return refuse("busy", partition_name(st) + " is " + st.busy);
  if (st.base_token != req.token) {
    st.forget_base();
    encode_state(st, st.base_bytes);
    st.base_crc = cqrs::crc32c(st.base_bytes);
    st.base_token = req.token;
    st.base_at = cqrs::wall_clock_now();
  }
  return {{{"ok", true},
           {"total", st.base_bytes.size()},
           {"crc", st.base_crc},
           {"series", st.store->series_count()},
           {"events", st.store->events_applied()}},
          {}};
}

/// Chunk [offset, offset + max) of `bytes` as an export answer.
handoff_reply export_chunk(const std::string& bytes, uint32_t crc,
                           handoff_request& req) {
  auto total = bytes.size();
  if (req.offset > total)
    return refuse("bad_offset", "offset past the end of the export",
                  {{"total", total}, {"crc", crc}});
  auto max = req.max == 0 ? default_export_chunk
                          : std::min(req.max, max_export_chunk);
  handoff_reply out;
  out.payload = bytes.substr(req.offset, max);
  out.body = {{"ok", true},
              {"total", total},
              {"crc", crc},
              {"offset", req.offset},
              {"size", out.payload.size()}};
  return out;
}

handoff_reply handoff_export(partition_pointer self, handoff_request& req) {
  auto& st = self->state;
  if (req.base) {
    if (st.base_token.empty() || st.base_token != req.token)
      return refuse("no_base", partition_name(st)
                                 + " holds no pre-copy base with this token");
    return export_chunk(st.base_bytes, st.base_crc, req);
  }
  if (!st.frozen || st.marker.token != req.token)
    return refuse("not_frozen",
                  partition_name(st) + " is not frozen with this token");
  if (!st.marker_durable)
    return refuse("busy", partition_name(st) + ": the freeze is not durable "
                                               "yet");
  if (!st.export_ready || (req.full && st.export_delta)) {
    // After a restart: re-encoded from the recovered frozen state; a full
    // snapshot instead of the delta when the target has no base.
    if (!st.quiet())
      return refuse("busy", partition_name(st) + " has writes in flight");
    prepare_export(st, req.full);
  }
  auto reply = export_chunk(st.export_bytes, st.export_crc, req);
  reply.body["delta"] = st.export_delta;
  return reply;
}

caf::result<handoff_reply> handoff_release(partition_pointer self,
                                           handoff_request& req) {
  auto& st = self->state;
  if (!st.frozen) {
    if (st.base_token == req.token)
      st.forget_base();  // the pre-copy is undone
    return handoff_reply{{{"ok", true}, {"released", 0}, {"state", "serving"}},
                         {}};
  }
  if (st.marker.token != req.token)
    return refuse("handoff_conflict",
                  partition_name(st) + " is frozen for another handoff",
                  {{"token", st.marker.token}});
  auto n = st.held.size();
  unfreeze(self, "released");
  // Held writes go to the journal after the marker's deletion.
  auto rp = self->make_response_promise<handoff_reply>();
  json body{{"ok", true}, {"released", n}, {"state", "serving"}};
  if (!st.journal()) {
    replay_held(self);
    rp.deliver(handoff_reply{body, {}});
    return rp;
  }
  st.journal()->erase_meta(
    st.id, runtime::journal::handoff_slot,
    durable(self, [rp, body](bool ok, std::string err) mutable {
      if (ok)
        rp.deliver(handoff_reply{body, {}});
      else
        rp.deliver(refuse("storage", "handoff marker deletion failed: " + err));
    }));
  replay_held(self);
  return rp;
}

/// A new state for the partition (an import, or empty for a drop).
struct replacement {
  cqrs::series_store store;
  cqrs::idempotency_window keys;
};

/// Replaces the store and window with `r` (series registry, series index
/// and readers follow), then makes it durable: a snapshot covering a seq
/// above every record of the partition, older snapshots and records pruned,
/// and the handoff marker written (`marker`) or deleted (none). `done` runs
/// once all of it is on disk (or failed). Call only when quiet().
void replace_state(partition_pointer self, replacement& r,
                   std::optional<cqrs::handoff_marker> marker,
                   std::function<void(bool, std::string)> done) {
  auto& st = self->state;
  // The old series leave the cardinality guard, the index and the readers.
  if (auto& reg = st.settings->series_registry; reg && reg->limit() != 0)
    st.store->for_each_key(
      [&](std::string_view key) { reg->erase(cqrs::series_hash(key)); });
  if (st.settings->stores)
    st.settings->stores->detach(st.id);
  if (st.index_token != 0 && st.settings->series_index)
    st.settings->series_index->detach(st.id, st.index_token);
  st.index_token = 0;
  st.store.emplace(std::move(r.store));
  st.keys.emplace(std::move(r.keys));
  st.keys->expire(cqrs::wall_clock_now());
  st.register_series();
  st.install_closed_handler();
  st.index_series();
  st.update_memory_gauges();
  st.export_ready = false;
  st.export_bytes = std::string{};
  if (!st.journal()) {
    done(true, {});
    return;
  }
  // A fresh seq: every record and snapshot of the partition is below it.
  auto covered = st.next_seq;
  st.next_seq = covered + 1;
  st.applied_seq = covered;
  st.drained_seq = covered;
  st.reset_dictionary = true; // replay after the snapshot starts a new one
  st.events_since_snapshot = 0;
  st.stats.snapshot_seq = covered;
  st.snapshots.clear();
  st.snapshots.emplace_back(covered, cqrs::wall_clock_now());
  st.last_snapshot = std::chrono::steady_clock::now();
  cqrs::snapshot_header header;
  header.partition = st.id;
  header.covered_seq = covered;
  header.taken_at = cqrs::wall_clock_now();
  std::string bytes;
  cqrs::encode_snapshot(header, *st.store, *st.keys, bytes);
  struct group {
    int left = 3;
    bool ok = true;
    std::string error;
    std::function<void(bool, std::string)> done;
  };
  auto g = std::make_shared<group>();
  g->done = std::move(done);
  auto one = [g](bool ok, std::string err) {
    if (!ok && g->ok) {
      g->ok = false;
      g->error = std::move(err);
    }
    if (--g->left == 0)
      g->done(g->ok, g->error);
  };
  auto* j = st.journal();
  j->write_snapshot(st.id, covered, std::move(bytes), durable(self, one));
  j->prune(st.id, 1, covered, durable(self, one));
  if (marker) {
    std::string m;
    cqrs::encode_handoff_marker(*marker, m);
    j->put_meta(st.id, runtime::journal::handoff_slot, std::move(m),
                durable(self, one));
  } else {
    j->erase_meta(st.id, runtime::journal::handoff_slot, durable(self, one));
  }
}

/// Answers everyone waiting for the import or drop in progress.
void finish_busy(partition_pointer self, const handoff_reply& reply) {
  auto& st = self->state;
  st.busy.clear();
  st.busy_token.clear();
  auto waiters = std::move(st.busy_waiters);
  st.busy_waiters.clear();
  for (auto& w : waiters)
    w.deliver(reply);
}

caf::result<handoff_reply> handoff_drop(partition_pointer self,
                                        handoff_request& req) {
  auto& st = self->state;
  if (st.busy == "dropping") {
    auto rp = self->make_response_promise<handoff_reply>();
    st.busy_waiters.push_back(rp);
    return rp;
  }
  if (!st.busy.empty())
    return refuse("busy", partition_name(st) + " is " + st.busy);
  if (st.settings->cluster.local(st.id))
    return refuse("owner", partition_name(st)
                             + " is owned by this node: drop refused");
  if (st.frozen && st.marker.token != req.token)
    return refuse("handoff_conflict",
                  partition_name(st) + " is frozen for another handoff",
                  {{"token", st.marker.token}});
  // Held writes go to the new owner: the ingestor re-routes `moved`.
  auto held = std::move(st.held);
  st.held.clear();
  for (auto& h : held)
    h.promise.deliver(moved_error(st.id));
  unfreeze(self, "dropped");
  st.forget_base();
  st.staged.reset();
  st.staged_token.clear();
  st.import_token.clear();
  st.import_bytes = std::string{};
  st.imported_token.clear();
  st.busy = "dropping";
  st.busy_token = req.token;
  auto rp = self->make_response_promise<handoff_reply>();
  st.busy_waiters.push_back(rp);
  auto moved = held.size();
  when_quiet(self, [self, moved] {
    auto& st = self->state;
    replacement r{cqrs::series_store{st.settings->tiers, st.settings->mapping},
                  cqrs::idempotency_window{st.settings->idempotency_keys,
                                           st.settings->idempotency_window}};
    r.store.seal_after(st.settings->seal_after);
    replace_state(self, r, std::nullopt,
                  [self, moved](bool ok, std::string err) {
                    if (ok)
                      finish_busy(self, {{{"ok", true},
                                          {"dropped", true},
                                          {"held_moved", moved}},
                                         {}});
                    else
                      finish_busy(self, refuse("storage",
                                               "drop not durable: " + err));
                  });
  });
  return rp;
}

/// Decodes a full snapshot import into a new state, or the refusal.
std::variant<std::shared_ptr<replacement>, handoff_reply>
decode_import(const partition_state& st, std::string_view bytes) {
  cqrs::snapshot_view view;
  if (auto r = cqrs::decode_snapshot(bytes, view); r != cqrs::snapshot_result::ok)
    return refuse("bad_snapshot", "the import does not decode ("
                                    + std::string{cqrs::to_string(r)} + ")",
                  {{"have", 0}});
  if (view.header.partition != st.id)
    return refuse("bad_snapshot",
                  "the import is of partition "
                    + std::to_string(view.header.partition),
                  {{"have", 0}});
  auto r = std::make_shared<replacement>(
    replacement{cqrs::series_store{st.settings->tiers, st.settings->mapping},
                cqrs::idempotency_window{st.settings->idempotency_keys,
                                         st.settings->idempotency_window}});
  r->store.seal_after(st.settings->seal_after);
  if (!r->keys.decode(view.idempotency) || !r->store.decode(view.projection))
    return refuse("bad_snapshot",
                  "the import's projection or idempotency window does not "
                  "decode (configuration mismatch?)",
                  {{"have", 0}});
  return r;
}

/// Applies a delta import to the staged base of the same handoff, or the
/// refusal (no_base: the source must export a full snapshot).
std::variant<std::shared_ptr<replacement>, handoff_reply>
apply_delta(partition_state& st, std::string_view bytes,
            const std::string& token) {
  uint32_t base_crc = 0;
  std::vector<cqrs::journal_record> records;
  if (!cqrs::decode_handoff_delta(bytes, base_crc, records))
    return refuse("bad_snapshot", "the delta import does not decode",
                  {{"have", 0}});
  if (!st.staged || st.staged_token != token || st.staged_crc != base_crc)
    return refuse("no_base",
                  partition_name(st) + " holds no pre-copy base for this "
                                       "delta (export a full snapshot)",
                  {{"have", 0}});
  auto r = std::move(st.staged);
  st.staged_token.clear();
  r->store.set_clock(cqrs::wall_clock_now());
  for (auto& rec : records) {
    r->store.apply(rec.events);
    if (!rec.idempotency_key.empty())
      r->keys.insert(std::move(rec.idempotency_key), rec.accepted_at);
  }
  return r;
}

caf::result<handoff_reply> handoff_import(partition_pointer self,
                                          handoff_request& req) {
  auto& st = self->state;
  auto complete = [&st] {
    return handoff_reply{{{"ok", true},
                          {"complete", true},
                          {"series", st.store->series_count()},
                          {"events", st.store->events_applied()}},
                         {}};
  };
  if (st.busy == "importing" && st.busy_token == req.token) {
    auto rp = self->make_response_promise<handoff_reply>();
    st.busy_waiters.push_back(rp);
    return rp;
  }
  if (!st.busy.empty())
    return refuse("busy", partition_name(st) + " is " + st.busy);
  if (!req.base && !st.imported_token.empty() && st.imported_token == req.token)
    return complete();
  if (st.settings->cluster.local(st.id))
    return refuse("owner", partition_name(st)
                             + " is owned by this node: import refused");
  if (st.frozen)
    return refuse("handoff_conflict", partition_name(st)
                                        + " is frozen for a handoff");
  auto staged_reply = [&st] {
    return handoff_reply{{{"ok", true}, {"complete", true}, {"staged", true}},
                         {}};
  };
  if (req.base && st.staged && st.staged_token == req.token
      && st.staged_crc == req.crc)
    return staged_reply();  // a retried pre-copy: the base is here
  if (req.offset == 0) {
    st.import_token = req.token;
    st.import_total = req.total;
    st.import_crc = req.crc;
    st.import_bytes.clear();
  }
  bool same = st.import_token == req.token && st.import_total == req.total
              && st.import_crc == req.crc;
  uint64_t have = same ? st.import_bytes.size() : 0;
  if (!same || req.offset != have)
    return refuse("bad_offset",
                  "chunk at offset " + std::to_string(req.offset)
                    + ", expected " + std::to_string(have),
                  {{"have", have}});
  if (have + req.payload.size() > st.import_total) {
    st.import_bytes.clear();
    return refuse("bad_offset", "chunk runs past the announced total",
                  {{"have", 0}});
  }
  st.import_bytes += req.payload;
  if (st.import_bytes.size() < st.import_total)
    return handoff_reply{{{"ok", true},
                          {"complete", false},
                          {"have", st.import_bytes.size()}},
                         {}};
  // Complete: check, decode, then replace the state durably (a pre-copy's
  // base is only kept, decoded, for its delta).
  auto bytes = std::move(st.import_bytes);
  st.import_bytes = std::string{};
  st.import_token.clear();
  if (cqrs::crc32c(bytes) != req.crc)
    return refuse("crc_mismatch", "the import does not match its crc",
                  {{"have", 0}});
  auto decoded = cqrs::is_handoff_delta(bytes) && !req.base
                   ? apply_delta(st, bytes, req.token)
                   : decode_import(st, bytes);
  if (auto* refused = std::get_if<handoff_reply>(&decoded))
    return std::move(*refused);
  auto r = std::get<std::shared_ptr<replacement>>(std::move(decoded));
  if (req.base) {
    st.staged = std::move(r);
    st.staged_token = req.token;
    st.staged_crc = req.crc;
    st.base_at = cqrs::wall_clock_now();
    return staged_reply();
  }
  st.staged.reset();
  st.staged_token.clear();
  st.busy = "importing";
  st.busy_token = req.token;
  auto rp = self->make_response_promise<handoff_reply>();
  st.busy_waiters.push_back(rp);
  auto token = req.token;
  when_quiet(self, [self, r, token, complete] {
    cqrs::handoff_marker m{cqrs::handoff_marker::kind_t::imported, token, {},
                           cqrs::wall_clock_now()};
    replace_state(self, *r, m,
                  [self, token, complete](bool ok, std::string err) {
                    if (!ok) {
                      finish_busy(self,
                                  refuse("storage", "import not durable: "
                                                      + err));
                      return;
                    }
                    self->state.imported_token = token;
                    finish_busy(self, complete());
                  });
  });
  return rp;
}

handoff_reply handoff_status(partition_pointer self) {
  auto& st = self->state;
  std::string state = "serving";
  if (st.recovering)
    state = "recovering";
  else if (!st.busy.empty())
    state = st.busy;
  else if (st.frozen)
    state = st.marker_durable ? "frozen" : "freezing";
  else if (!st.import_token.empty())
    state = "importing";
  json body{{"ok", true},
            {"partition", st.id},
            {"state", state},
            {"owner", st.settings->cluster.local(st.id)},
            {"held", st.held.size()}};
  if (st.store) {
    body["series"] = st.store->series_count();
    body["events"] = st.store->events_applied();
  }
  if (st.frozen) {
    body["token"] = st.marker.token;
    body["target"] = st.marker.target;
    body["frozen_at"] = st.marker.at;
    body["bytes"] = st.export_bytes.size();
    if (st.export_ready)
      body["crc"] = st.export_crc;
  } else if (!st.import_token.empty()) {
    body["token"] = st.import_token;
    body["bytes"] = st.import_bytes.size();
    body["total"] = st.import_total;
  } else if (!st.busy_token.empty()) {
    body["token"] = st.busy_token;
  }
  if (!st.imported_token.empty())
    body["imported_token"] = st.imported_token;
  if (!st.base_token.empty()) {
    body["base_token"] = st.base_token;
    body["base_bytes"] = st.base_bytes.size();
    body["delta_batches"] = st.tail.size();
  }
  if (st.staged)
    body["staged_token"] = st.staged_token;
  if (st.frozen)
    body["delta"] = st.export_delta;
  return {std::move(body), {}};
}

caf::result<handoff_reply> handoff(partition_pointer self,
                                   handoff_request& req) {
  using op = handoff_request::op_t;
  auto& st = self->state;
  if (req.op == op::status)
    return handoff_status(self);
  if (st.recovering)
    return refuse("recovering", partition_name(st) + " is recovering");
  switch (req.op) {
    case op::base:
      return handoff_base(self, req);
    case op::freeze:
      return handoff_freeze(self, req);
    case op::export_chunk:
      return handoff_export(self, req);
    case op::import_chunk:
      return handoff_import(self, req);
    case op::release:
      return handoff_release(self, req);
    case op::drop:
      return handoff_drop(self, req);
    case op::status:
      break;
  }
  return handoff_status(self);
}

partition_actor::behavior_type partition_impl(partition_pointer self,
                                              uint32_t id, settings_ptr s) {
  auto& st = self->state;
  st.id = id;
  st.settings = s;
  st.store.emplace(s->tiers, s->mapping);
  st.store->seal_after(s->seal_after);
  st.keys.emplace(s->idempotency_keys, s->idempotency_window);
  if (s->metrics) {
    st.gauges.emplace(*s->metrics, s->tiers);
    if (s->journal)
      st.gauges->track_snapshots(*s->metrics, id);
    self->track_mailbox(*s->metrics);
    st.pause_histogram = &s->metrics->histogram(
      "cairn_handoff_pause_seconds",
      "Write pause of a partition handoff: freeze to release or drop");
  }
  st.register_series();
  st.recovering = s->journal != nullptr;
  if (!st.recovering)
    st.index_series();
  st.last_snapshot = std::chrono::steady_clock::now();
  self->delayed_send(self, s->evict_interval, tick_atom::value);
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    auto& subs = st.subscribers;
    subs.erase(std::remove_if(subs.begin(), subs.end(),
                              [&](const caf::actor& a) {
                                return a.address() == msg.source;
                              }),
               subs.end());
    if (subs.empty())
      st.install_closed_handler();
  });
  return {
    [=](ingest_atom, cqrs::event_batch& batch,
        std::string& key) -> caf::result<uint64_t> {
      return ingest(self, batch, key);
    },
    [=](journaled_atom, uint64_t seq, bool ok, std::string& err) {
      auto& st = self->state;
      for (auto& w : st.pending)
        if (w.seq == seq) {
          w.done = true;
          w.ok = ok;
          w.error = std::move(err);
          if (!ok) {
            spdlog::error("partition {}: journal write of seq {} failed: {}",
                          st.id, seq, w.error);
            // Later records must not name series only it defined.
            st.reset_dictionary = true;
          }
          break;
        }
      drain(self);
    },
    [=](query_atom, const query_spec_ptr& q) -> caf::result<cqrs::query_partial> {
      if (self->state.recovering)
        return not_recovered(self);
      cqrs::query_partial out;
      self->state.store->query(*q, out);
      return out;
    },
    [=](topk_atom, const topk_spec_ptr& q) -> caf::result<cqrs::topk_partial> {
      if (self->state.recovering)
        return not_recovered(self);
      cqrs::topk_partial out;
      self->state.store->topk(*q, out);
      return out;
    },
    [=](series_atom, const series_spec_ptr& q) -> caf::result<cqrs::series_partial> {
      if (self->state.recovering)
        return not_recovered(self);
      cqrs::series_partial out;
      self->state.store->series(*q, out);
      return out;
    },
    [=](metrics_atom) -> caf::result<cqrs::metrics_partial> {
      if (self->state.recovering)
        return not_recovered(self);
      cqrs::metrics_partial out;
      self->state.store->metrics(out);
      return out;
    },
    [=](stats_atom) { return self->state.current_stats(); },
    [=](subscribe_atom, caf::actor& who) {
      auto& st = self->state;
      if (!who || std::find(st.subscribers.begin(), st.subscribers.end(), who)
                    != st.subscribers.end())
        return;
      self->monitor(who);
      st.subscribers.push_back(std::move(who));
      if (st.subscribers.size() == 1)
        st.install_closed_handler();
      arm_close(self);
    },
    [=](unsubscribe_atom, const caf::actor& who) {
      auto& st = self->state;
      auto it = std::find(st.subscribers.begin(), st.subscribers.end(), who);
      if (it == st.subscribers.end())
        return;
      self->demonitor(who);
      st.subscribers.erase(it);
      if (st.subscribers.empty())
        st.install_closed_handler();
    },
    [=](close_atom) {
      auto& st = self->state;
      st.close_armed = false;
      if (st.subscribers.empty())
        return;
      if (!st.recovering)
        (void) st.store->close(cqrs::wall_clock_now(), st.settings->live_grace);
      publish_closed(self);
      arm_close(self);
    },
    // Snapshot now (shutdown, console): answered once it is enqueued, i.e.
    // after the records in flight are applied.
    [=](snapshot_atom) -> caf::result<uint64_t> {
      auto& st = self->state;
      request_snapshot(self);
      if (!st.snapshot_pending)
        return st.applied_seq;
      auto rp = self->make_response_promise<uint64_t>();
      st.snapshot_waiters.push_back(rp);
      return rp;
    },
    [=](snapshot_atom, uint64_t covered, bool ok, std::string& err) {
      auto& st = self->state;
      st.snapshot_in_flight = false;
      // An import or drop waiting for quiet runs after this handler.
      if (!st.on_quiet.empty())
        caf::anon_send(caf::actor_cast<partition_actor>(self),
                       handoff_atom::value, uint64_t{0}, true, std::string{});
      if (!ok) {
        spdlog::error("partition {}: snapshot at seq {} failed: {}", st.id,
                      covered, err);
        return;
      }
      auto now = cqrs::wall_clock_now();
      st.stats.snapshot_seq = covered;
      st.snapshots.emplace_back(covered, now);
      // Journal records may be deleted up to the oldest kept snapshot (so
      // that falling back to it on a corrupt newer one loses nothing), and
      // only as far as a snapshot taken at least raw-retention ago covers.
      auto keep = std::min(st.settings->snapshot_keep, st.snapshots.size());
      auto oldest_kept = st.snapshots[st.snapshots.size() - keep].first;
      uint64_t old_enough = 0;
      for (auto& [seq, taken] : st.snapshots)
        if (taken <= now - st.settings->raw_retention)
          old_enough = seq;
      uint64_t upto = std::min(oldest_kept, old_enough);
      // Entries before the newest old-enough one can no longer matter.
      while (st.snapshots.size() > keep
             && st.snapshots.front().first < std::min(oldest_kept, old_enough))
        st.snapshots.pop_front();
      // The final snapshots of a shutdown land after the journal closed:
      // the next start prunes instead.
      if (st.settings->status.load() == node_status::stopping)
        return;
      st.journal()->prune(st.id, st.settings->snapshot_keep, upto,
                          [id = st.id](bool ok, std::string err) {
                            if (!ok)
                              spdlog::error("partition {}: prune failed: {}",
                                            id, err);
                          });
    },
    [=](recovered_atom, recovered_partition_ptr& r) {
      auto& st = self->state;
      st.store.emplace(std::move(r->store));
      st.keys.emplace(std::move(r->keys));
      st.register_series();
      st.install_closed_handler();
      st.next_seq = r->report.next_seq;
      st.applied_seq = r->report.next_seq - 1;
      st.drained_seq = st.applied_seq;
      st.reset_dictionary = true;  // the recovered tail used another one
      st.stats.snapshot_seq = r->report.snapshot_seq;
      st.stats.replayed_events = r->report.events_replayed;
      // Replayed events count towards the next snapshot, or a node that is
      // restarted often would replay more and more.
      st.events_since_snapshot = r->report.events_replayed;
      st.stats.recovery_ms = r->recovery_ms;
      st.keys->expire(cqrs::wall_clock_now());
      if (r->report.snapshot_seq > 0)
        st.snapshots.emplace_back(r->report.snapshot_seq,
                                  cqrs::wall_clock_now());
      if (r->marker) {
        // docs/sagas.md, "Partition handoff": frozen before the restart,
        // frozen now (the export is re-encoded on demand).
        if (r->marker->kind == cqrs::handoff_marker::kind_t::frozen) {
          st.frozen = true;
          st.marker_durable = true;
          st.marker = std::move(*r->marker);
          spdlog::info("partition {}: recovered frozen for handoff {}", st.id,
                       st.marker.token);
        } else {
          st.imported_token = r->marker->token;
        }
      }
      st.recovering = false;
      st.index_series();
      st.last_snapshot = std::chrono::steady_clock::now();
      st.update_memory_gauges();
    },
    [=](handoff_atom, handoff_request& req) -> caf::result<handoff_reply> {
      return handoff(self, req);
    },
    // A handoff write is durable (ticket 0: only look for quiet).
    [=](handoff_atom, uint64_t ticket, bool ok, std::string& err) {
      auto& st = self->state;
      if (auto it = st.tickets.find(ticket); it != st.tickets.end()) {
        auto fn = std::move(it->second);
        st.tickets.erase(it);
        fn(ok, std::move(err));
      }
      run_quiet_actions(self);
    },
    [=](tick_atom) {
      auto& st = self->state;
      auto now = cqrs::wall_clock_now();
      // The seal pass: windows that ended seal-after ago become blocks
      // (docs/architecture.md, "Compact store"), then retention.
      (void) st.store->seal(now);
      publish_closed(self);
      st.store->evict(now);
      st.keys->expire(now);
      if ((!st.base_token.empty() || st.staged) && !st.frozen
          && now - st.base_at > base_lifetime) {
        spdlog::info("partition {}: pre-copy base {} not used in {} s; forgotten",
                     st.id, st.base_token.empty() ? st.staged_token : st.base_token,
                     base_lifetime / 1000);
        st.forget_base();
        st.staged.reset();
        st.staged_token.clear();
      }
      if (st.ticks++ % 5 == 0)
        st.update_memory_gauges();
      // Sealing frees many small allocations (open buckets, grown block
      // buffers); glibc keeps freed pages of its arenas. Hand them back to
      // the OS now and then (one partition does it for the process).
      if (st.id == 0 && st.ticks % 10 == 0) {
        malloc_trim(0);
        cqrs::detail::stream_pool_trim();
      }
      auto since_snapshot = std::chrono::steady_clock::now() - st.last_snapshot;
      if (st.gauges && st.gauges->snapshot_age)
        st.gauges->snapshot_age->store(
          std::chrono::duration_cast<std::chrono::milliseconds>(since_snapshot)
            .count());
      if (st.journal() && !st.recovering
          && since_snapshot >= st.settings->snapshot_interval)
        request_snapshot(self);
      self->delayed_send(self, st.settings->evict_interval, tick_atom::value);
    },
  };
}

} // namespace

partition_actor spawn_partition(caf::actor_system& sys, uint32_t id,
                                settings_ptr settings) {
  return sys.spawn(partition_impl, id, std::move(settings));
}

} // namespace cairn::actors
