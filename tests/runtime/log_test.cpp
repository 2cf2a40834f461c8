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

} // TEST_SUITE
