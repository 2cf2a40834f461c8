#include "actors/messages.hpp"

namespace cairn::actors {

// add_message_type<T> also registers std::vector<T> and stream<T>.
void register_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<cqrs::event_entry>("cairn.event_entry");
  cfg.add_message_type<cqrs::event_batch>("cairn.event_batch");
  cfg.add_message_type<partition_stats>("cairn.partition_stats");
  cfg.add_message_type<std::vector<uint32_t>>("cairn.partition_ids");
  cfg.add_message_type<remote_ingest>("cairn.remote_ingest");
  cfg.add_message_type<remote_query>("cairn.remote_query");
  cfg.add_message_type<remote_partial>("cairn.remote_partial");
  cfg.add_message_type<remote_closed>("cairn.remote_closed");
  cfg.add_message_type<alert_peer_msg>("cairn.alert_peer_msg");
}

} // namespace cairn::actors
