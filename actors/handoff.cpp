#include "actors/handoff.hpp"

#include "actors/messages.hpp"
#include "actors/node.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <optional>
#include <utility>

namespace cairn::actors {

namespace {

using nlohmann::json;

/// Longest token accepted (saga id + partition).
constexpr size_t max_token_size = 256;

/// How long a partition may take for one command (an import's last chunk
/// decodes the state and waits for its snapshot to be durable).
constexpr std::chrono::seconds partition_timeout{60};

std::string error_reply(std::string_view code, const std::string& message) {
  return json{{"ok", false}, {"code", code}, {"error", message}}.dump();
}

/// An unsigned integer field of `req`, `fallback` if absent; nullopt if it
/// is present but not an unsigned integer.
std::optional<uint64_t> unsigned_field(const json& req, const char* name,
                                       uint64_t fallback = 0) {
  auto it = req.find(name);
  if (it == req.end())
    return fallback;
  if (!it->is_number_unsigned())
    return std::nullopt;
  return it->get<uint64_t>();
}

std::optional<handoff_request::op_t> op_of(std::string_view cmd) {
  using op = handoff_request::op_t;
  if (cmd == "handoff.base")
    return op::base;
  if (cmd == "handoff.freeze")
    return op::freeze;
  if (cmd == "handoff.export")
    return op::export_chunk;
  if (cmd == "handoff.import")
    return op::import_chunk;
  if (cmd == "handoff.release")
    return op::release;
  if (cmd == "handoff.drop")
    return op::drop;
  if (cmd == "handoff.status")
    return op::status;
  return std::nullopt;
}

} // namespace

bool handoff_commands::handles(std::string_view cmd) noexcept {
  return cmd.substr(0, 8) == "handoff.";
}

caf::result<std::string, std::string>
handoff_commands::run(caf::event_based_actor* self, const std::string& cmd_json,
                      std::string payload) {
  auto req = json::parse(cmd_json, nullptr, false);
  if (req.is_discarded() || !req.is_object())
    return caf::result<std::string, std::string>(error_reply("bad_request",
                                       "command is not a JSON object"),
                           std::string{});
  return run(self, req, std::move(payload));
}

caf::result<std::string, std::string>
handoff_commands::run(caf::event_based_actor* self, const json& req,
                      std::string payload) {
  auto fail = [](std::string_view code, const std::string& message) {
    return caf::result<std::string, std::string>{error_reply(code, message),
                                                 std::string{}};
  };
  auto cmd = req.value("cmd", std::string{});
  auto op = op_of(cmd);
  if (!op)
    return fail("unknown_command",
                "unknown command " + json(cmd).dump()
                  + " (handoff.base, handoff.freeze, handoff.export, handoff.import, "
                    "handoff.release, handoff.drop, handoff.status)");
  auto& parts = node_.partitions();
  auto p = unsigned_field(req, "partition", UINT64_MAX);
  if (!p || *p >= parts.size())
    return fail("bad_request",
                "\"partition\" must be an integer below "
                  + std::to_string(parts.size()));
  handoff_request hr;
  hr.op = *op;
  if (*op != handoff_request::op_t::status) {
    auto it = req.find("token");
    if (it == req.end() || !it->is_string() || it->get_ref<const std::string&>().empty()
        || it->get_ref<const std::string&>().size() > max_token_size)
      return fail("bad_request", "\"token\" must be a non-empty string of at "
                                 "most "
                                   + std::to_string(max_token_size)
                                   + " bytes");
    hr.token = it->get<std::string>();
  }
  if (auto it = req.find("target"); it != req.end() && it->is_string())
    hr.target = it->get<std::string>();
  auto offset = unsigned_field(req, "offset");
  auto max = unsigned_field(req, "max");
  auto total = unsigned_field(req, "total");
  auto crc = unsigned_field(req, "crc");
  if (!offset || !max || !total || !crc || *crc > UINT32_MAX)
    return fail("bad_request", "\"offset\", \"max\", \"total\" and \"crc\" "
                               "must be unsigned integers (crc: 32 bits)");
  if (*op == handoff_request::op_t::import_chunk
      && (req.find("total") == req.end() || req.find("crc") == req.end()))
    return fail("bad_request", "handoff.import needs \"total\" and \"crc\"");
  for (auto [name, flag] : {std::pair{"base", &hr.base}, std::pair{"full", &hr.full}})
    if (auto it = req.find(name); it != req.end()) {
      if (!it->is_boolean())
        return fail("bad_request", std::string{"\""} + name + "\" must be a boolean");
      *flag = it->get<bool>();
    }
  hr.offset = *offset;
  hr.max = *max;
  hr.total = *total;
  hr.crc = static_cast<uint32_t>(*crc);
  hr.payload = std::move(payload);
  auto rp = self->make_response_promise<std::string, std::string>();
  self
    ->request(parts[*p], partition_timeout, handoff_atom::value, std::move(hr))
    .then(
      [rp](handoff_reply& r) mutable {
        rp.deliver(r.body.dump(), std::move(r.payload));
      },
      [rp](caf::error& err) mutable {
        rp.deliver(error_reply("unavailable",
                               "partition did not answer: " + to_string(err)),
                   std::string{});
      });
  return rp;
}

bool is_moved(const caf::error& err) {
  return to_string(err).find("moved: partition") != std::string::npos;
}

} // namespace cairn::actors
