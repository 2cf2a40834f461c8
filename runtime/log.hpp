// Logging through spdlog (CAF's own logger is compiled out in Debian's build).
//
// `setup_logging` configures the default spdlog logger once at start-up;
// afterwards any thread may call spdlog::info(...) etc.
//
// Lines that can repeat at the rate of a fault (an accept failing with
// EMFILE, a flood of refused connections) go through `log_limited`: at most
// one line per key per period, the next line that gets through carries
// "(suppressed K)" with the number of lines dropped in between. Without it a
// node out of descriptors once wrote 225 MB of log in 10 s.
#pragma once

#include <spdlog/common.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace cairn::runtime {

/// Sets level ("trace".."off") and sink (stderr if `file` is empty).
/// Throws std::invalid_argument on an unknown level.
void setup_logging(const std::string& node_name, const std::string& level,
                   const std::string& file);

/// Decides which of a stream of repeated events may be logged: at most one
/// per key per period. Thread-safe. The clock is a parameter so that tests
/// can drive it.
class log_rate_limiter {
public:
  using clock = std::chrono::steady_clock;

  explicit log_rate_limiter(std::chrono::milliseconds period)
    : period_(period) {
  }

  /// Returns the number of events of `key` suppressed since the last one
  /// admitted if this one may be logged (0 for the first), nullopt if it
  /// must be dropped.
  [[nodiscard]] std::optional<uint64_t> admit(std::string_view key,
                                              clock::time_point now);

private:
  struct entry {
    clock::time_point last;
    uint64_t suppressed = 0;
  };

  std::chrono::milliseconds period_;
  std::mutex mtx_;
  std::unordered_map<std::string, entry> entries_;
};

/// Logs `message` at `level` unless a line with the same `key` was logged
/// less than `period` ago (then only counts it). Any thread. Keys are kept
/// for ever: use a small fixed set (e.g. "tcp:accept"), never a client
/// value.
void log_limited(spdlog::level::level_enum level, std::string_view key,
                 std::chrono::seconds period, std::string_view message);

/// `value` as a JSON string (quotes, control characters escaped, invalid
/// UTF-8 replaced): how a value that came from a client or a peer goes into
/// a log line, so that a newline in it cannot forge a line.
[[nodiscard]] std::string quoted(std::string_view value);

} // namespace cairn::runtime
