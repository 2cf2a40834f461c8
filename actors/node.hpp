// node: spawns and owns the actors of one cairn node.
//
// Builds the pipeline of DESIGN.md section 3: P partitions, the ingestor, the
// query coordinator and the parser pool. The gateway feeds chunks in through
// `dispatch` (thread-safe, never blocks). `shutdown` stops every actor so the
// actor system can be destroyed.
#pragma once

#include "actors/node_settings.hpp"
#include "actors/partition.hpp"
#include "runtime/connection_context.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <vector>

namespace cairn::actors {

class node {
public:
  node(caf::actor_system& sys, std::shared_ptr<node_settings> settings);

  /// Hands a chunk of lines to the parser pool. Callable from any thread.
  void dispatch(runtime::chunk c);

  /// Sends exit messages to all actors of the node (idempotent).
  void shutdown();

  const settings_ptr& settings() const noexcept { return settings_; }
  const std::vector<partition_actor>& partitions() const noexcept {
    return partitions_;
  }
  const caf::actor& coordinator() const noexcept { return coordinator_; }

private:
  caf::actor_system& sys_;
  settings_ptr settings_;
  std::vector<partition_actor> partitions_;
  caf::actor ingestor_;
  caf::actor coordinator_;
  caf::actor parsers_;
};

} // namespace cairn::actors
