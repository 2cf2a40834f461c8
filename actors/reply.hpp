// Reply lines of the client protocol that every actor renders the same way.
#pragma once

#include "cqrs/error.hpp"

#include <nlohmann/json.hpp>

#include <string>

namespace cairn::actors {

/// {"ok":false,"id":ID,"error":{"code":C,"message":M}} (id omitted if null).
std::string error_reply(const nlohmann::json& id, cqrs::error_code code,
                        const std::string& message);

/// {"ok":false,"line":N,"error":{...}} for a rejected fire-and-forget line.
std::string line_error_reply(uint64_t line, const cqrs::problem& p);

/// Sets out["id"] = id unless id is null, and dumps `out` to one line.
std::string finish_reply(nlohmann::json& out, const nlohmann::json& id);

} // namespace cairn::actors
