// node: spawns and owns the actors of one cairn node.
//
// Builds the pipeline of docs/design.md, "Data flow": P partitions, the
// ingestor, the query coordinator and the parser pool. The gateway feeds
// chunks in through `dispatch` (thread-safe, never blocks). `shutdown` stops
// every actor so the actor system can be destroyed.
#pragma once

#include "actors/node_settings.hpp"
#include "actors/partition.hpp"
#include "runtime/connection_context.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace cairn::actors {

class node {
public:
  /// Spawns the actors. With a journal in `settings`, also starts the
  /// recovery thread: the node reports `recovering` until every partition
  /// has its state back, then `ready`. A corrupt journal record (without
  /// skip-corrupt) stops the process with exit status 3 and a log line
  /// naming the partition and sequence.
  node(caf::actor_system& sys, std::shared_ptr<node_settings> settings);
  ~node();

  /// Hands a chunk of lines to the parser pool. Callable from any thread.
  void dispatch(runtime::chunk c);

  /// Takes a final snapshot of every partition (persistence on), closes the
  /// journal, and sends exit messages to all actors (idempotent). Blocks the
  /// calling thread: call it from main, never from an actor.
  void shutdown();

  /// Calls `f` once the node is ready (recovery complete): now, on the
  /// calling thread, if it is already, else on the recovery thread when
  /// recovery ends. Replaces an earlier `f` not called yet. Never called if
  /// recovery stops the process.
  void when_ready(std::function<void()> f);

  const settings_ptr& settings() const noexcept { return settings_; }
  const std::vector<partition_actor>& partitions() const noexcept {
    return partitions_;
  }
  const caf::actor& coordinator() const noexcept { return coordinator_; }
  const caf::actor& ingestor() const noexcept { return ingestor_; }
  /// The live hub (actors/live/live_hub.hpp): subscribe / unsubscribe.
  const caf::actor& live_hub() const noexcept { return live_hub_; }
  /// The alert manager (actors/alerts/alert_manager.hpp; null if disabled).
  const caf::actor& alert_manager() const noexcept { return alert_manager_; }
  /// The saga coordinator (actors/sagas/saga_coordinator.hpp; null on a
  /// single node).
  const caf::actor& saga_coordinator() const noexcept { return sagas_; }
  /// Peer links by partition-map member index (null for this node; empty on
  /// a single node), at this moment: a member that joins gets one
  /// (docs/cluster.md, "Joining through seeds").
  std::vector<caf::actor> links() const;
  /// The parser pool (an actor_pool; its workers answer
  /// (caf::sys_atom, caf::get_atom) -> std::vector<caf::actor>).
  const caf::actor& parsers() const noexcept { return parsers_; }

private:
  /// A new map lists members this node has no link to yet: adds them to
  /// the member table and spawns their links.
  void add_members(const cqrs::partition_map& m);

  caf::actor_system& sys_;
  settings_ptr settings_;
  std::vector<partition_actor> partitions_;
  caf::actor ingestor_;
  caf::actor coordinator_;
  caf::actor live_hub_;
  caf::actor alert_manager_;
  caf::actor sagas_;
  caf::actor parsers_;
  std::thread recovery_;
  bool stopped_ = false;
  std::mutex ready_mtx_;             ///< guards the two below
  bool ready_ = false;               ///< recovery done (or none needed)
  std::function<void()> on_ready_;   ///< when_ready's, until called
};

} // namespace cairn::actors
