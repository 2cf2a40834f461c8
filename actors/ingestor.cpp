#include "actors/ingestor.hpp"

#include "actors/messages.hpp"

#include "actors/introspection.hpp"

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
  /// Cluster: link to each member by map index (null for this node).
  std::vector<caf::actor> links;
  uint64_t links_seen = 0;  ///< member_table version of `links`
  std::vector<remote_ingest> by_owner;
  uint64_t next_key = 0;
  std::string key_prefix;
  static inline const char* name = "cairn.ingestor";

  /// Console introspection: credits in use and queued batches per partition.
  void describe(nlohmann::json& out) const {
    out["credits_per_partition"] = settings->partition_credits;
    out["in_flight"] = in_flight;
    auto& queued = out["waiting"] = nlohmann::json::array();
    for (auto& q : waiting)
      queued.push_back(q.size());
  }
};

using ingestor_pointer = introspectable_actor<ingestor_state>*;

using routed_batches = std::vector<std::pair<uint32_t, cqrs::event_batch>>;

/// Routes (partition, batch) pairs by the current map: local partitions
/// directly, the others grouped into one remote_ingest per owner. Adds one
/// to f->outstanding per destination. `key` empty: remote messages get a
/// generated key, local batches none.
void route(ingestor_pointer self, routed_batches items, const std::string& key,
           const std::shared_ptr<fan_in>& f);

void finish_one(const std::shared_ptr<fan_in>& f) {
  if (--f->outstanding == 0 && !f->failed)
    f->promise.deliver(f->applied);
}

/// True if `err` is a partition's answer to a batch it held while frozen
/// and that moved away meanwhile (docs/cluster.md, "Partition map").
bool is_moved(const caf::error& err) {
  auto text = to_string(err);
  return text.find("moved") != std::string::npos;
}

void send_batch(ingestor_pointer self, uint32_t p, queued_batch q) {
  auto& st = self->state;
  ++st.in_flight[p];
  auto owner = std::move(q.owner);
  // A partition being handed off (frozen) may answer its held batches
  // `moved`: for those the batch is kept to re-route it by the new map.
  std::shared_ptr<cqrs::event_batch> copy;
  if (st.settings->cluster.enabled && st.settings->cluster.map->retained(p))
    copy = std::make_shared<cqrs::event_batch>(q.batch);
  auto key = q.key;
  // No timeout on this hop: the partition is local, so a partition that
  // dies bounces the request with an error, and the parser's request to us
  // carries the client's deadline. A CAF 0.17 request timeout stays in the
  // actor clock until it expires, answered or not: at 500k events/s that
  // was tens of MB held for a minute (docs/architecture.md, "Ingest path").
  self
    ->request(st.partitions[p], caf::infinite, ingest_atom::value,
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
        auto& st = self->state;
        if (copy && is_moved(err) && !st.settings->cluster.local(p)) {
          // Re-routed by the current map; `owner` is answered from there.
          std::vector<std::pair<uint32_t, cqrs::event_batch>> again;
          again.emplace_back(p, std::move(*copy));
          route(self, std::move(again), key, owner);
          finish_one(owner);
        } else if (!owner->failed) {
          owner->failed = true;
          owner->promise.deliver(err);
          --owner->outstanding;
        } else {
          --owner->outstanding;
        }
        --st.in_flight[p];
        if (!st.waiting[p].empty()) {
          auto next = std::move(st.waiting[p].front());
          st.waiting[p].pop_front();
          send_batch(self, p, std::move(next));
        }
      });
}

/// Queues or sends partition p's sub-batch of request `f`.
void submit_local(ingestor_pointer self, uint32_t p, queued_batch q) {
  auto& st = self->state;
  if (st.in_flight[p] < st.settings->partition_credits)
    send_batch(self, p, std::move(q));
  else
    st.waiting[p].push_back(std::move(q));
}

/// Sends the events for one remote owner through its peer link (which
/// re-routes them here with reroute_atom if the owner refused them as
/// `not_owner` and this node's map moved them meanwhile).
void submit_remote(ingestor_pointer self, uint32_t owner, remote_ingest msg,
                   std::shared_ptr<fan_in> f) {
  auto& st = self->state;
  ++f->outstanding;
  self
    ->request(st.links[owner], st.settings->ingest_timeout, ingest_atom::value,
              std::move(msg))
    .then(
      [f](uint64_t n) {
        f->applied += n;
        finish_one(f);
      },
      [f](caf::error& err) {
        if (!f->failed) {
          f->failed = true;
          f->promise.deliver(err);
        }
        --f->outstanding;
      });
}

void route(ingestor_pointer self, routed_batches items, const std::string& key,
           const std::shared_ptr<fan_in>& f) {
  auto& st = self->state;
  auto& cluster = st.settings->cluster;
  // A member joined: its link (docs/cluster.md, "Joining through seeds").
  if (cluster.enabled && cluster.members->refresh(st.links, st.links_seen))
    st.by_owner.resize(st.links.size());
  for (auto& [p, batch] : items) {
    if (batch.empty())
      continue;
    // One reading of the owner per partition (a map may change meanwhile).
    auto owner = cluster.enabled ? cluster.map->owner_index(p)
                                 : cluster.self_index;
    if (!cluster.enabled || owner == cluster.self_index
        || owner >= st.links.size() || !st.links[owner]) {
      ++f->outstanding;
      submit_local(self, p, queued_batch{std::move(batch), key, f});
      continue;
    }
    auto& m = st.by_owner[owner];
    m.partitions.push_back(p);
    m.batches.push_back(std::move(batch));
  }
  for (uint32_t owner = 0; owner < st.by_owner.size(); ++owner) {
    auto& m = st.by_owner[owner];
    if (m.partitions.empty())
      continue;
    m.key = key.empty() ? st.key_prefix + std::to_string(st.next_key++) : key;
    auto msg = std::move(m);
    m = remote_ingest{};
    submit_remote(self, owner, std::move(msg), f);
  }
}

caf::behavior ingestor_impl(ingestor_pointer self, settings_ptr s,
                            std::vector<partition_actor> partitions,
                            std::vector<caf::actor> links) {
  auto& st = self->state;
  st.settings = s;
  self->track_mailbox(*s->metrics);
  st.partitions = std::move(partitions);
  st.in_flight.assign(st.partitions.size(), 0);
  st.waiting.resize(st.partitions.size());
  st.links = std::move(links);
  if (s->cluster.enabled) {
    s->cluster.members->refresh(st.links, st.links_seen);
    st.by_owner.resize(st.links.size());
    // Keys of forwarded messages: unique per node incarnation.
    st.key_prefix = "~" + s->cluster.self_name + "."
                    + std::to_string(s->started_at) + ".";
  }
  return {
    [=](ingest_atom, std::vector<cqrs::event_batch>& by_partition,
        std::string& key) -> caf::result<uint64_t> {
      auto& st = self->state;
      if (by_partition.size() != st.partitions.size())
        return caf::make_error(caf::sec::invalid_argument,
                               "batch count does not match partitions");
      auto& cluster = st.settings->cluster;
      // A member that left refuses client writes (docs/cluster.md): its
      // clients must write through another member.
      if (cluster.enabled && cluster.map->self_left())
        return caf::make_error(caf::sec::runtime_error,
                               "decommissioned: " + cluster.self_name
                                 + " left the cluster; write to another "
                                   "member");
      runtime::stage_timer timer{st.settings->costs.get(),
                                 runtime::ingest_stage::route};
      auto f = std::make_shared<fan_in>();
      // Outstanding starts at 1 so that nothing is answered before every
      // destination was submitted; dropped at the end.
      f->outstanding = 1;
      f->promise = self->make_response_promise();
      routed_batches items;
      items.reserve(by_partition.size());
      for (uint32_t p = 0; p < by_partition.size(); ++p)
        if (!by_partition[p].empty()) {
          timer.count(by_partition[p].size());
          items.emplace_back(p, std::move(by_partition[p]));
        }
      route(self, std::move(items), key, f);
      finish_one(f);
      return caf::delegated<uint64_t>{};
    },
    // From a peer link: a forwarded message its owner refused as
    // `not_owner` (or a hint whose partition moved), routed again by the
    // current map under its own key.
    [=](reroute_atom, remote_ingest& msg) -> caf::result<uint64_t> {
      if (msg.partitions.size() != msg.batches.size())
        return caf::make_error(caf::sec::invalid_argument,
                               "malformed forwarded batch");
      auto f = std::make_shared<fan_in>();
      f->outstanding = 1;
      f->promise = self->make_response_promise();
      routed_batches items;
      for (size_t i = 0; i < msg.partitions.size(); ++i)
        if (msg.partitions[i] < self->state.partitions.size())
          items.emplace_back(msg.partitions[i], std::move(msg.batches[i]));
      route(self, std::move(items), msg.key, f);
      finish_one(f);
      return caf::delegated<uint64_t>{};
    },
    // From a peer: events for partitions this node owns.
    [=](forward_atom, remote_ingest& msg) -> caf::result<uint64_t> {
      auto& st = self->state;
      if (msg.partitions.size() != msg.batches.size())
        return caf::make_error(caf::sec::invalid_argument,
                               "malformed forwarded batch");
      // Refused whole, nothing applied: the sender keeps the batch and
      // re-routes or hints it (docs/cluster.md, "Partition map").
      for (auto p : msg.partitions)
        if (p >= st.partitions.size() || !st.settings->cluster.local(p))
          return caf::make_error(
            caf::sec::runtime_error,
            "not_owner: partition " + std::to_string(p)
              + " is not owned by " + st.settings->cluster.self_name
              + " in its partition map v"
              + std::to_string(st.settings->cluster.map->version()));
      auto f = std::make_shared<fan_in>();
      for (auto& b : msg.batches)
        if (!b.empty())
          ++f->outstanding;
      if (f->outstanding == 0)
        return uint64_t{0};
      f->promise = self->make_response_promise();
      for (size_t i = 0; i < msg.partitions.size(); ++i) {
        if (msg.batches[i].empty())
          continue;
        submit_local(self, msg.partitions[i],
                     queued_batch{std::move(msg.batches[i]), msg.key, f});
      }
      return caf::delegated<uint64_t>{};
    },
  };
}

} // namespace

caf::actor spawn_ingestor(caf::actor_system& sys, settings_ptr settings,
                          std::vector<partition_actor> partitions,
                          std::vector<caf::actor> links) {
  return sys.spawn(ingestor_impl, std::move(settings), std::move(partitions),
                   std::move(links));
}

} // namespace cairn::actors
