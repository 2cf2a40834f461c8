// Logging through spdlog (CAF's own logger is compiled out in Debian's build).
//
// `setup_logging` configures the default spdlog logger once at start-up;
// afterwards any thread may call spdlog::info(...) etc.
#pragma once

#include <string>

namespace cairn::runtime {

/// Sets level ("trace".."off") and sink (stderr if `file` is empty).
/// Throws std::invalid_argument on an unknown level.
void setup_logging(const std::string& node_name, const std::string& level,
                   const std::string& file);

} // namespace cairn::runtime
