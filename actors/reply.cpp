#include "actors/reply.hpp"

namespace cairn::actors {

namespace {

constexpr auto dump_mode = nlohmann::json::error_handler_t::replace;

} // namespace

std::string error_reply(const nlohmann::json& id, cqrs::error_code code,
                        const std::string& message) {
  nlohmann::json out;
  out["ok"] = false;
  if (!id.is_discarded())
    out["id"] = id;
  out["error"] = {{"code", std::string{cqrs::to_string(code)}},
                  {"message", message}};
  return out.dump(-1, ' ', false, dump_mode);
}

std::string line_error_reply(uint64_t line, const cqrs::problem& p) {
  nlohmann::json out;
  out["ok"] = false;
  out["line"] = line;
  out["error"] = {{"code", std::string{cqrs::to_string(p.code)}},
                  {"message", p.message}};
  return out.dump(-1, ' ', false, dump_mode);
}

std::string finish_reply(nlohmann::json& out, const nlohmann::json& id) {
  if (!id.is_discarded())
    out["id"] = id;
  return out.dump(-1, ' ', false, dump_mode);
}

nlohmann::json ping_reply(const node_settings& s, node_status status) {
  nlohmann::json out{{"ok", true},
                     {"node", s.node_name},
                     {"version", s.version},
                     {"status", to_string(status)}};
  // The peer links compare map versions on every ping (docs/cluster.md,
  // "Partition map": pull a higher one, push to a lower one).
  if (s.cluster.enabled && s.cluster.map)
    out["map_version"] = s.cluster.map->version();
  return out;
}

cqrs::error_code ack_error_code(const caf::error& err) {
  return to_string(err).find("decommissioned:") != std::string::npos
           ? cqrs::error_code::decommissioned
           : cqrs::error_code::unavailable;
}

nlohmann::json partition_stats_json(const partition_stats& p) {
  return {{"id", p.id},
          {"series", p.series},
          {"buckets", p.buckets},
          {"events", p.events},
          {"batches", p.batches},
          {"journal_seq", p.journal_seq},
          {"snapshot_seq", p.snapshot_seq},
          {"replayed_events", p.replayed_events},
          {"recovery_ms", p.recovery_ms},
          {"duplicates", p.duplicates}};
}

int http_status_of_reply(std::string_view line) {
  // `"ok":false` can only appear as JSON structure (inside a string the
  // quotes are escaped), so a successful reply, however large, is not
  // parsed; an error reply is small.
  if (line.find("\"ok\":false") == std::string_view::npos)
    return 200;
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.value("ok", true))
    return 200;
  auto err = j.find("error");
  if (err == j.end() || !err->is_object())
    return 500;
  cqrs::error_code code;
  auto name = err->value("code", std::string{});
  if (!cqrs::from_string(name, code))
    return 500;
  return cqrs::http_status(code);
}

} // namespace cairn::actors
