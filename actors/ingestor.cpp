#include "actors/ingestor.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/response_promise.hpp>
#include <caf/sec.hpp>
#include <caf/stateful_actor.hpp>

#include <deque>
#include <memory>

namespace cairn::actors {

namespace {

/// One client request spread over several partitions.
struct fan_in {
  caf::response_promise promise;
  size_t outstanding = 0;
  uint64_t applied = 0;
  bool failed = false;
};

struct queued_batch {
  cqrs::event_batch batch;
  std::string key;
  std::shared_ptr<fan_in> owner;
};

struct ingestor_state {
  settings_ptr settings;
  std::vector<partition_actor> partitions;
  std::vector<size_t> in_flight;
  std::vector<std::deque<queued_batch>> waiting;
  static inline const char* name = "cairn.ingestor";
};

using ingestor_pointer = caf::stateful_actor<ingestor_state>*;

void finish_one(const std::shared_ptr<fan_in>& f) {
  if (--f->outstanding == 0 && !f->failed)
    f->promise.deliver(f->applied);
}

void send_batch(ingestor_pointer self, uint32_t p, queued_batch q) {
  auto& st = self->state;
  ++st.in_flight[p];
  auto owner = std::move(q.owner);
  self
    ->request(st.partitions[p], st.settings->ingest_timeout, ingest_atom::value,
              std::move(q.batch), std::move(q.key))
    .then(
      [=](uint64_t n) {
        owner->applied += n;
        finish_one(owner);
        auto& st = self->state;
        --st.in_flight[p];
        if (!st.waiting[p].empty()) {
          auto next = std::move(st.waiting[p].front());
          st.waiting[p].pop_front();
          send_batch(self, p, std::move(next));
        }
      },
      [=](caf::error& err) {
        if (!owner->failed) {
          owner->failed = true;
          owner->promise.deliver(err);
        }
        --owner->outstanding;
        auto& st = self->state;
        --st.in_flight[p];
        if (!st.waiting[p].empty()) {
          auto next = std::move(st.waiting[p].front());
          st.waiting[p].pop_front();
          send_batch(self, p, std::move(next));
        }
      });
}

caf::behavior ingestor_impl(ingestor_pointer self, settings_ptr s,
                            std::vector<partition_actor> partitions) {
  auto& st = self->state;
  st.settings = s;
  st.partitions = std::move(partitions);
  st.in_flight.assign(st.partitions.size(), 0);
  st.waiting.resize(st.partitions.size());
  return {
    [=](ingest_atom, std::vector<cqrs::event_batch>& by_partition,
        std::string& key) -> caf::result<uint64_t> {
      auto& st = self->state;
      if (by_partition.size() != st.partitions.size())
        return caf::make_error(caf::sec::invalid_argument,
                               "batch count does not match partitions");
      auto f = std::make_shared<fan_in>();
      for (auto& b : by_partition)
        if (!b.empty())
          ++f->outstanding;
      if (f->outstanding == 0)
        return uint64_t{0};
      f->promise = self->make_response_promise();
      for (uint32_t p = 0; p < by_partition.size(); ++p) {
        if (by_partition[p].empty())
          continue;
        queued_batch q{std::move(by_partition[p]), key, f};
        if (st.in_flight[p] < st.settings->partition_credits)
          send_batch(self, p, std::move(q));
        else
          st.waiting[p].push_back(std::move(q));
      }
      return caf::delegated<uint64_t>{};
    },
  };
}

} // namespace

caf::actor spawn_ingestor(caf::actor_system& sys, settings_ptr settings,
                          std::vector<partition_actor> partitions) {
  return sys.spawn(ingestor_impl, std::move(settings), std::move(partitions));
}

} // namespace cairn::actors
