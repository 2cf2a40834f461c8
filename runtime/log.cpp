#include "runtime/log.hpp"

#include <nlohmann/json.hpp>
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

namespace cairn::runtime {

std::optional<uint64_t> log_rate_limiter::admit(std::string_view key,
                                                clock::time_point now) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = entries_.find(std::string{key});
  if (i == entries_.end()) {
    entries_.emplace(std::string{key}, entry{now, 0});
    return uint64_t{0};
  }
  auto& e = i->second;
  if (now - e.last < period_) {
    ++e.suppressed;
    return std::nullopt;
  }
  auto suppressed = e.suppressed;
  e.last = now;
  e.suppressed = 0;
  return suppressed;
}

void log_limited(spdlog::level::level_enum level, std::string_view key,
                 std::chrono::seconds period, std::string_view message) {
  // One limiter per period; the periods in use are few and fixed.
  static std::mutex mtx;
  static std::unordered_map<int64_t, std::unique_ptr<log_rate_limiter>>
    limiters;
  log_rate_limiter* limiter = nullptr;
  {
    std::lock_guard<std::mutex> guard{mtx};
    auto& slot = limiters[period.count()];
    if (!slot)
      slot = std::make_unique<log_rate_limiter>(period);
    limiter = slot.get();
  }
  auto admitted = limiter->admit(key, log_rate_limiter::clock::now());
  if (!admitted)
    return;
  if (*admitted > 0)
    spdlog::log(level, "{} (suppressed {})", message, *admitted);
  else
    spdlog::log(level, "{}", message);
}

std::string quoted(std::string_view value) {
  return nlohmann::json(std::string{value})
    .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace cairn::runtime
