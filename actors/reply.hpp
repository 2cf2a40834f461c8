// Reply lines of the client protocol that every actor renders the same way.
#pragma once

#include "actors/messages.hpp"
#include "actors/node_settings.hpp"
#include "cqrs/error.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace cairn::actors {

/// The id of a request without "id": replies then carry no "id" field (an
/// explicit "id":null is echoed as null).
inline nlohmann::json no_id() {
  return nlohmann::json(nlohmann::json::value_t::discarded);
}

/// {"ok":false,"id":ID,"error":{"code":C,"message":M}} (id omitted if
/// no_id()).
std::string error_reply(const nlohmann::json& id, cqrs::error_code code,
                        const std::string& message);

/// {"ok":false,"line":N,"error":{...}} for a rejected fire-and-forget line.
std::string line_error_reply(uint64_t line, const cqrs::problem& p);

/// Sets out["id"] = id unless id is no_id(), and dumps `out` to one line.
std::string finish_reply(nlohmann::json& out, const nlohmann::json& id);

/// {"ok":true,"node":N,"version":V,"status":S}: the ping reply, the same on
/// the NDJSON port, through the node actor and in the console. `status` is
/// passed in so that a caller that routed on one reading reports that one.
nlohmann::json ping_reply(const node_settings& s, node_status status);

/// The protocol code of an ingest that was not acknowledged: the ingestor's
/// `decommissioned` refusal keeps its code, everything else is
/// `unavailable` (retry).
cqrs::error_code ack_error_code(const caf::error& err);

/// The HTTP status of one reply line on POST /api (docs/protocol.md, "HTTP
/// statuses"): 200 unless the line is an error reply
/// ({"ok":false,...,"error":{"code":C}}), then cqrs::http_status(C); an
/// error without a known code is 500. Fire-and-forget results inside a
/// successful reply (ingest's `errors`) keep it 200.
int http_status_of_reply(std::string_view line);

/// One partition's figures, as the `stats` op lists them and the console
/// shows them (docs/protocol.md).
nlohmann::json partition_stats_json(const partition_stats& p);

} // namespace cairn::actors
