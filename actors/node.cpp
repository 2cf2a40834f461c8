#include "actors/node.hpp"

#include "actors/ingestor.hpp"
#include "actors/parser.hpp"
#include "actors/query_coordinator.hpp"

#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

namespace cairn::actors {

node::node(caf::actor_system& sys, std::shared_ptr<node_settings> settings)
  : sys_(sys), settings_(settings) {
  partitions_.reserve(settings->partitions);
  for (uint32_t p = 0; p < settings->partitions; ++p)
    partitions_.push_back(spawn_partition(sys, p, settings_));
  ingestor_ = spawn_ingestor(sys, settings_, partitions_);
  coordinator_ = spawn_query_coordinator(sys, settings_, partitions_);
  parsers_ = spawn_parser_pool(sys, settings_, ingestor_, coordinator_);
  if (!settings->journal)
    settings->status = node_status::ready;
}

void node::dispatch(runtime::chunk c) {
  caf::anon_send(parsers_, std::move(c));
}

void node::shutdown() {
  auto stop = [](const auto& h) {
    if (h)
      caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
  };
  stop(parsers_);
  stop(coordinator_);
  stop(ingestor_);
  for (auto& p : partitions_)
    stop(p);
}

} // namespace cairn::actors
