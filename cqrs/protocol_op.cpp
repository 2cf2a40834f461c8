#include "cqrs/protocol_op.hpp"

namespace cairn::cqrs {

std::string_view to_string(protocol_op op) noexcept {
  switch (op) {
    case protocol_op::ping:
      return "ping";
    case protocol_op::flush:
      return "flush";
    case protocol_op::ingest:
      return "ingest";
    case protocol_op::query:
      return "query";
    case protocol_op::topk:
      return "topk";
    case protocol_op::series:
      return "series";
    case protocol_op::metrics:
      return "metrics";
    case protocol_op::stats:
      return "stats";
    case protocol_op::cluster:
      return "cluster";
    case protocol_op::subscribe:
      return "subscribe";
    case protocol_op::unsubscribe:
      return "unsubscribe";
    case protocol_op::auth:
      return "auth";
    case protocol_op::alert_create:
      return "alert.create";
    case protocol_op::alert_update:
      return "alert.update";
    case protocol_op::alert_delete:
      return "alert.delete";
    case protocol_op::alert_list:
      return "alert.list";
    case protocol_op::alert_get:
      return "alert.get";
    case protocol_op::alert_history:
      return "alert.history";
    case protocol_op::saga_list:
      return "saga.list";
    case protocol_op::saga_get:
      return "saga.get";
    case protocol_op::saga_move:
      return "saga.move";
    case protocol_op::saga_decommission:
      return "saga.decommission";
    case protocol_op::saga_rebalance:
      return "saga.rebalance";
    case protocol_op::saga_join:
      return "saga.join";
    case protocol_op::saga_evict:
      return "saga.evict";
    case protocol_op::saga_abort:
      return "saga.abort";
  }
  return "?";
}

std::optional<protocol_op> from_string(std::string_view name) noexcept {
  for (auto op : all_protocol_ops)
    if (to_string(op) == name)
      return op;
  return std::nullopt;
}

bool is_barrier(protocol_op op) noexcept {
  switch (op) {
    case protocol_op::ping:
    case protocol_op::ingest:
    case protocol_op::auth:
      return false;
    default:
      return true;
  }
}

const std::string& known_ops() {
  static const std::string text = [] {
    std::string out;
    for (auto op : all_protocol_ops) {
      if (!out.empty())
        out += ", ";
      out += to_string(op);
    }
    return out;
  }();
  return text;
}

} // namespace cairn::cqrs
