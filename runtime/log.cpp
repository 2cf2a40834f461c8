#include "runtime/log.hpp"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <stdexcept>

namespace cairn::runtime {

void setup_logging(const std::string& node_name, const std::string& level,
                   const std::string& file) {
  // Map the level first so that a typo fails before anything changes.
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off")
    throw std::invalid_argument("unknown log level '" + level
                                + "' (trace, debug, info, warn, error, "
                                  "critical, off)");
  // Idempotent: a second call (tests, reconfiguration) replaces the logger.
  auto name = "cairn:" + node_name;
  spdlog::drop(name);
  std::shared_ptr<spdlog::logger> logger;
  if (file.empty()) {
    logger = spdlog::stderr_color_mt(name);
  } else {
    // Throws spdlog::spdlog_ex (a std::exception) if the file cannot be
    // opened: bad configuration at start-up.
    logger = spdlog::basic_logger_mt(name, file);
  }
  // 2025-01-01 12:00:00.123 [info] [n1] [tid] message
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e [%^%l%$] [" + node_name
                      + "] [%t] %v");
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
  spdlog::set_level(lvl);
}

} // namespace cairn::runtime
