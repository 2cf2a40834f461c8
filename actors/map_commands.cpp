#include "actors/map_commands.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace cairn::actors {

using nlohmann::json;

std::string control_error(const std::string& code, const std::string& error) {
  return json{{"ok", false}, {"code", code}, {"error", error}}.dump(
    -1, ' ', false, json::error_handler_t::replace);
}

map_holder::adopt_result adopt_map(const node_settings& s,
                                   const cqrs::partition_map& m,
                                   const std::string& from) {
  auto& c = s.cluster;
  auto r = c.map->adopt(m);
  if (!r.ok)
    spdlog::warn("partition map v{} from {} not adopted: {}", m.version(),
                 from, r.error);
  else if (r.changed)
    spdlog::info("partition map v{} adopted (from {}): this node owns [{}]{}",
                 m.version(), from,
                 fmt::join(m.owned_by(c.self_index), ","),
                 m.has_left(c.self_index) ? ", left the cluster" : "");
  return r;
}

std::string run_map_command(const node_settings& s, const json& req) {
  auto cmd = req.value("cmd", std::string{});
  auto& c = s.cluster;
  if (!c.enabled || !c.map)
    return control_error("not_clustered", "this node is not in a cluster");
  if (cmd == "map.get")
    return json{{"ok", true}, {"map", cqrs::to_json(*c.map->current())}}
      .dump();
  if (cmd == "map.adopt") {
    auto it = req.find("map");
    if (it == req.end())
      return control_error("bad_request", "map.adopt needs \"map\"");
    std::string error;
    auto m = cqrs::partition_map_from_json(*it, &error);
    if (!m)
      return control_error("bad_request", error);
    auto r = adopt_map(s, *m, req.value("from", std::string{"a client"}));
    if (!r.ok)
      return control_error(r.code, r.error);
    return json{{"ok", true}, {"version", r.version}, {"changed", r.changed}}
      .dump();
  }
  return control_error("unknown_command", "unknown map command '" + cmd + "'");
}

} // namespace cairn::actors
