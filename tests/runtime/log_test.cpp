#include "runtime/log.hpp"

#include <doctest/doctest.h>

#include <spdlog/spdlog.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

TEST_SUITE("runtime.log") {

TEST_CASE("unknown levels are refused; file sink carries the node name") {
  CHECK_THROWS_AS(cairn::runtime::setup_logging("n1", "loud", ""),
                  std::invalid_argument);
  auto path = "/tmp/cairn-log-test.log";
  std::remove(path);
  cairn::runtime::setup_logging("n5", "info", path);
  spdlog::debug("hidden");
  spdlog::warn("visible {}", 42);
  spdlog::default_logger()->flush();
  std::ifstream in{path};
  std::stringstream text;
  text << in.rdbuf();
  CHECK(text.str().find("[n5]") != std::string::npos);
  CHECK(text.str().find("visible 42") != std::string::npos);
  CHECK(text.str().find("hidden") == std::string::npos);
  // Idempotent: configuring again replaces the logger.
  cairn::runtime::setup_logging("n5", "warn", "");
  CHECK(spdlog::default_logger()->level() == spdlog::level::warn);
}

TEST_CASE("the rate limiter admits one line per key per period") {
  using namespace std::chrono_literals;
  cairn::runtime::log_rate_limiter limiter{10s};
  auto t0 = cairn::runtime::log_rate_limiter::clock::time_point{} + 1h;
  REQUIRE(limiter.admit("accept", t0).has_value());
  CHECK(*limiter.admit("other", t0) == 0);  // keys are independent
  for (int i = 0; i < 1000; ++i)
    CHECK_FALSE(limiter.admit("accept", t0 + 1ms * i).has_value());
  auto next = limiter.admit("accept", t0 + 10s);
  REQUIRE(next.has_value());
  CHECK(*next == 1000);  // the count of suppressed lines
  CHECK_FALSE(limiter.admit("accept", t0 + 11s).has_value());
  CHECK(*limiter.admit("accept", t0 + 25s) == 1);
}

TEST_CASE("log_limited writes one line per period with the suppressed count") {
  using namespace std::chrono_literals;
  auto path = "/tmp/cairn-log-limited-test.log";
  std::remove(path);
  cairn::runtime::setup_logging("n6", "info", path);
  for (int i = 0; i < 100000; ++i)
    cairn::runtime::log_limited(spdlog::level::warn, "test:flood", 3600s,
                                "accept: Too many open files");
  spdlog::default_logger()->flush();
  std::ifstream in{path};
  std::string line;
  int lines = 0;
  while (std::getline(in, line))
    if (line.find("Too many open files") != std::string::npos)
      ++lines;
  CHECK(lines == 1);
  cairn::runtime::setup_logging("n6", "warn", "");
}

TEST_CASE("quoted makes a peer's value one JSON string in a log line") {
  using cairn::runtime::quoted;
  CHECK(quoted("move-1.p3") == "\"move-1.p3\"");
  CHECK(quoted("a\n2026-12-06 [error] forged") == "\"a\\n2026-12-06 [error] forged\"");
  CHECK(quoted("\"}\x01") == "\"\\\"}\\u0001\"");
  CHECK(quoted(std::string_view{"\xff", 1}) == "\"\xef\xbf\xbd\"");  // U+FFFD
  CHECK(quoted("") == "\"\"");
}

}
