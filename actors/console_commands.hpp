// console_commands: the node side of cairn-console (docs/console.md).
//
// cairn-console reaches a node through the node actor's generic entry point
// (request_atom, string request_json) -> string reply_json. The node actor
// hands every request whose "cmd" this class `handles` to `run`, which
// answers it by talking to the node's own actors (partitions, ingestor,
// query coordinator, parser pool) with finite timeouts and never blocks:
//
//   commands  the console commands this node understands
//   actors    every registered actor with kind, mailbox size, messages
//             processed and a state summary (actors/introspection.hpp)
//   inspect   one actor in detail; a partition also shows its credits
//   send      a control message ({"op":...}) to one actor, and its reply
//   snapshot  takes a snapshot of one partition (or "all") and answers once
//             it is written
//   stats, metrics, series, query, topk
//             the protocol requests of docs/protocol.md, answered by the
//             query coordinator with the same reply JSON
//   ingest    events through the parser pool, like {"op":"ingest"}
//   nodes, cluster, breakers
//             membership, partition map and circuit breakers, from the query
//             coordinator's cluster view ({"op":"cluster"}; a single node
//             reports itself alone)
//   sagas     the saga.* op in "op" (default saga.list): membership sagas,
//             answered by the saga coordinator's leader (docs/sagas.md)
//   route     a command meant for another member ("node": NAME): installed
//             by the node actor with `set_handler`, it goes through that
//             member's peer link
//
// Replies are JSON objects with "ok"; console-level errors are
// {"ok":false,"error":"readable message"}, protocol errors keep the protocol
// shape {"ok":false,"error":{"code":..,"message":..}}.
//
// Threading: owned by the node actor's state; `run` and `set_handler` are
// called on the node actor's thread only.
#pragma once

#include <caf/event_based_actor.hpp>
#include <caf/result.hpp>

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace cairn::actors {

class node;

class console_commands {
public:
  /// Answers one console request on the node actor `self`.
  using handler = std::function<caf::result<std::string>(
    caf::event_based_actor* self, const nlohmann::json& request)>;

  /// `n` must outlive this object.
  explicit console_commands(node& n);

  /// Returns whether `cmd` is a console command.
  bool handles(const std::string& cmd) const;

  /// Answers `request` (an object with "cmd"). Never blocks; the reply is
  /// delivered later through a response promise when actors must be asked.
  caf::result<std::string> run(caf::event_based_actor* self,
                               const nlohmann::json& request);

  /// Installs (or replaces) the handler of `cmd` (the node actor installs
  /// "route"). Any other name also becomes a console command.
  void set_handler(const std::string& cmd, handler h);

  /// The names of every console command, sorted.
  std::vector<std::string> commands() const;

private:
  node* node_;
  std::map<std::string, handler> handlers_;
};

} // namespace cairn::actors
