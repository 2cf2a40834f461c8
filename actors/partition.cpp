#include "actors/partition.hpp"

#include "cqrs/series_store.hpp"

#include <caf/actor_system.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <spdlog/spdlog.h>

#include <optional>

namespace cairn::actors {

namespace {

struct partition_state {
  uint32_t id = 0;
  settings_ptr settings;
  std::optional<cqrs::series_store> store;
  partition_stats stats;

  static inline const char* name = "cairn.partition";

  partition_stats current_stats() {
    stats.id = id;
    stats.series = store->series_count();
    stats.buckets = store->bucket_count();
    stats.events = store->events_applied();
    return stats;
  }
};

using partition_pointer = partition_actor::stateful_pointer<partition_state>;

partition_actor::behavior_type partition_impl(partition_pointer self,
                                              uint32_t id, settings_ptr s) {
  auto& st = self->state;
  st.id = id;
  st.settings = s;
  st.store.emplace(s->tiers, s->mapping);
  self->delayed_send(self, s->evict_interval, tick_atom::value);
  return {
    [=](ingest_atom, cqrs::event_batch& batch,
        std::string& key) -> uint64_t {
      auto& st = self->state;
      st.store->apply(batch);
      st.stats.batches += 1;
      return batch.size();
    },
    [=](query_atom, const query_spec_ptr& q) {
      cqrs::query_partial out;
      self->state.store->query(*q, out);
      return out;
    },
    [=](topk_atom, const topk_spec_ptr& q) {
      cqrs::topk_partial out;
      self->state.store->topk(*q, out);
      return out;
    },
    [=](series_atom, const series_spec_ptr& q) {
      cqrs::series_partial out;
      self->state.store->series(*q, out);
      return out;
    },
    [=](metrics_atom) {
      cqrs::metrics_partial out;
      self->state.store->metrics(out);
      return out;
    },
    [=](stats_atom) { return self->state.current_stats(); },
    [=](snapshot_atom) -> uint64_t { return self->state.stats.snapshot_seq; },
    [=](tick_atom) {
      auto& st = self->state;
      st.store->evict(cqrs::wall_clock_now());
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
