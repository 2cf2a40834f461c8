#include "runtime/node_config.hpp"

#include <doctest/doctest.h>

#include <caf/settings.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using cairn::runtime::node_config;

namespace {

/// argv for parse(): keeps the strings alive.
struct args {
  explicit args(std::vector<std::string> xs) : strs(std::move(xs)) {
    strs.insert(strs.begin(), "cairn-node");
    for (auto& s : strs)
      ptrs.push_back(s.data());
    ptrs.push_back(nullptr);
  }
  int argc() const { return static_cast<int>(strs.size()); }
  char** argv() { return ptrs.data(); }
  std::vector<std::string> strs;
  std::vector<char*> ptrs;
};

std::string write_file(const std::string& name, const std::string& text) {
  auto path = "/tmp/cairn-node-config-test-" + name + ".ini";
  std::ofstream out{path};
  out << text;
  return path;
}

const char* nested_ini = R"(; a node
[cairn]
node-name = "n7"
partitions = 32
tiers = ["1s:1m", "1m:1h"]

[cairn.tcp]
host = "0.0.0.0"
port = 7500
max-line = 4096
window = 8

[cairn.http]
port = 7580

[cairn.storage]
path = "/var/lib/cairn/n7"
sync = "interval"
sync-interval = "5ms"
skip-corrupt = true

[cairn.snapshot]
interval = "30s"

; 0.0.0.0 requires authentication (docs/operations.md)
[cairn.auth]
secret-file = "/etc/cairn/jwt-secret"

[cairn.rate]
events-per-sec = 5000
query-requests-per-sec = 20

[cairn.log]
level = "debug"
)";

} // namespace

TEST_SUITE("runtime.node_config") {

TEST_CASE("defaults are valid") {
  node_config cfg;
  args a{{}};
  REQUIRE(!cfg.parse(a.argc(), a.argv()));
  CHECK(cfg.tcp_port == 7411);
  CHECK(cfg.http_port == 7480);
  CHECK(cfg.cluster_port == 7400);
  CHECK(cfg.node_name == "n1");
  CHECK_NOTHROW(cfg.validate());
  CHECK(caf::get_or(cfg, "scheduler.max-throughput", size_t{0}) == 1000);
}

TEST_CASE("an INI file with [cairn] and nested [cairn.x] sections") {
  auto path = write_file("nested", nested_ini);
  node_config cfg;
  args a{{"--config-file=" + path}};
  auto err = cfg.parse(a.argc(), a.argv());
  REQUIRE_MESSAGE(!err, cfg.render(err));
  CHECK(cfg.node_name == "n7");
  CHECK(cfg.partitions == 32);
  CHECK(cfg.tier_texts == std::vector<std::string>{"1s:1m", "1m:1h"});
  CHECK(cfg.bind_host == "0.0.0.0");
  CHECK(cfg.tcp_port == 7500);
  CHECK(cfg.tcp_max_line == 4096);
  CHECK(cfg.tcp_window == 8);
  CHECK(cfg.http_port == 7580);
  CHECK(cfg.storage_path == "/var/lib/cairn/n7");
  CHECK(cfg.storage_sync == "interval");
  CHECK(cfg.storage_sync_interval_text == "5ms");
  CHECK(cfg.skip_corrupt);
  CHECK(cfg.snapshot_interval_text == "30s");
  CHECK(cfg.log_level == "debug");
  CHECK(cfg.auth_secret_file == "/etc/cairn/jwt-secret");
  CHECK(cfg.rate_events_per_sec == 5000);
  CHECK(cfg.rate_query_requests_per_sec == 20);
  CHECK(cfg.auth_enforced());
  CHECK_NOTHROW(cfg.validate());
}

TEST_CASE("authentication rules: a non-loopback client port needs a key") {
  auto check = [](std::vector<std::string> flags, const char* option) {
    node_config cfg;
    args a{flags};
    auto err = cfg.parse(a.argc(), a.argv());
    REQUIRE_MESSAGE(!err, cfg.render(err));
    if (option == nullptr) {
      CHECK_NOTHROW(cfg.validate());
      return;
    }
    try {
      cfg.validate();
      FAIL("no error for " << option);
    } catch (const cairn::runtime::config_error& e) {
      CHECK_MESSAGE(std::string{e.what()}.find(option) != std::string::npos, e.what());
    }
  };
  check({}, nullptr);  // loopback: off by default
  check({"--cairn.tcp.host=0.0.0.0"}, "cairn.tcp.host");
  check({"--cairn.tcp.host=10.1.2.3", "--cairn.auth.secret-file=/k"}, nullptr);
  check({"--cairn.auth.required=true"}, "cairn.auth.required");
  check({"--cairn.auth.required=true", "--cairn.auth.algorithm=ES256",
         "--cairn.auth.public-key-file=/k.pub"}, nullptr);
  check({"--cairn.auth.algorithm=none"}, "cairn.auth.algorithm");
  check({"--cairn.auth.secret-file=/k", "--cairn.auth.algorithm=RS256"},
        "cairn.auth.secret-file");
  check({"--cairn.auth.public-key-file=/k"}, "cairn.auth.public-key-file");
  check({"--cairn.auth.required=true", "--cairn.auth.secret-file=/k",
         "--cairn.influx.port=7499"}, "cairn.influx.port");
  check({"--cairn.rate.max-delay=soon"}, "cairn.rate.max-delay");
}

TEST_CASE("map syntax inside [cairn] is equivalent") {
  auto path = write_file("map", R"([cairn]
tcp = { port = 7600, max-connections = 10 }
storage = { sync = "never" }
)");
  node_config cfg;
  args a{{"--config-file=" + path}};
  REQUIRE(!cfg.parse(a.argc(), a.argv()));
  CHECK(cfg.tcp_port == 7600);
  CHECK(cfg.tcp_max_connections == 10);
  CHECK(cfg.storage_sync == "never");
}

TEST_CASE("command-line flags override the file") {
  auto path = write_file("cli", nested_ini);
  node_config cfg;
  args a{{"--config-file=" + path, "--cairn.tcp.port=7501",
          "--cairn.node-name=n9", "--cairn.storage.sync=always",
          "--cairn.storage.skip-corrupt=false", "--cairn.cluster.port=7401",
          "--cairn.tiers=[\"10s:1h\"]"}};
  auto err = cfg.parse(a.argc(), a.argv());
  REQUIRE_MESSAGE(!err, cfg.render(err));
  CHECK(cfg.tcp_port == 7501);
  CHECK(cfg.tcp_max_line == 4096);  // from the file
  CHECK(cfg.node_name == "n9");
  CHECK(cfg.storage_sync == "always");
  CHECK(!cfg.skip_corrupt);
  CHECK(cfg.cluster_port == 7401);
  CHECK(cfg.tier_texts == std::vector<std::string>{"10s:1h"});
}

TEST_CASE("flags without a file, boolean flag forms") {
  node_config cfg;
  args a{{"--cairn.tcp.port=7700", "--cairn.storage.skip-corrupt",
          "--cairn.tcp.io-threads=2"}};
  REQUIRE(!cfg.parse(a.argc(), a.argv()));
  CHECK(cfg.tcp_port == 7700);
  CHECK(cfg.skip_corrupt);
  CHECK(cfg.io_threads() == 2);
  node_config cfg2;
  args b{{"--cairn.storage.skip-corrupt=true"}};
  REQUIRE(!cfg2.parse(b.argc(), b.argv()));
  CHECK(cfg2.skip_corrupt);
}

TEST_CASE("unknown options and missing files fail") {
  node_config cfg;
  args a{{"--cairn.tcp.nope=1"}};
  CHECK(cfg.parse(a.argc(), a.argv()));
  node_config cfg2;
  args b{{"--config-file=/nonexistent/cairn.ini"}};
  CHECK(cfg2.parse(b.argc(), b.argv()));
}

TEST_CASE("validate names the bad option") {
  auto expect_bad = [](auto mutate, const char* option) {
    node_config cfg;
    mutate(cfg);
    try {
      cfg.validate();
      FAIL("no exception for ", option);
    } catch (const std::invalid_argument& e) {
      CHECK_MESSAGE(std::string{e.what()}.find(option) != std::string::npos,
                    e.what());
    }
  };
  expect_bad([](node_config& c) { c.tcp_port = 0; }, "cairn.tcp.port");
  expect_bad([](node_config& c) { c.tcp_window = 0; }, "cairn.tcp.window");
  expect_bad([](node_config& c) { c.partitions = 0; }, "cairn.partitions");
  expect_bad([](node_config& c) { c.storage_sync = "sometimes"; },
             "cairn.storage.sync");
  expect_bad([](node_config& c) { c.snapshot_interval_text = "10 parsecs"; },
             "cairn.snapshot.interval");
  expect_bad([](node_config& c) { c.max_future_text = "-5m"; },
             "cairn.ingest.max-future");
  expect_bad([](node_config& c) { c.log_level = "loud"; }, "cairn.log.level");
}

TEST_CASE("config errors name the key: INI keys, sections, types, ranges") {
  struct bad_case {
    const char* ini;
    std::vector<std::string> flags;
    const char* must_name;
  };
  const bad_case cases[] = {
    {"[cairn]\nno-such-key = 1\n", {}, "cairn.no-such-key"},
    {"[cairn.tcp]\nprot = 7411\n", {}, "cairn.tcp.prot"},
    {"[cairn.nosuch]\na = 1\n", {}, "[cairn.nosuch]"},
    {"[bogus]\na = 1\n", {}, "[bogus]"},
    {"stray = 1\n[cairn]\n", {}, "stray"},
    {"[scheduler]\nmax-thread = 2\n", {}, "scheduler.max-thread"},
    {"[middleman]\nheartbeat-interval = \"x\"\n", {}, "middleman.heartbeat-interval"},
    {"[cairn]\npartitions = -4\n", {}, "cairn.partitions"},
    {"[cairn.tcp]\nport = \"abc\"\n", {}, "cairn.tcp.port"},
    {"[cairn.tcp]\nport = 99999\n", {}, "cairn.tcp.port"},
    {"[cairn]\ntcp = { window = \"x\" }\n", {}, "cairn.tcp.window"},
    {"[cairn.tcp]\nmax-line = 99999999999999999999999\n", {}, "max-line"},
    {"", {"--cairn.tcp.prot=1"}, "cairn.tcp.prot"},
    {"", {"--bogus"}, "bogus"},
    {"", {"--cairn.tcp.port=abc"}, "cairn.tcp.port"},
    {"", {"--cairn.tcp.port=99999"}, "cairn.tcp.port"},
    {"", {"--cairn.partitions=-4"}, "cairn.partitions"},
    {"", {"stray-arg"}, "stray-arg"},
  };
  int n = 0;
  for (auto& c : cases) {
    CAPTURE(c.ini);
    CAPTURE(c.must_name);
    auto path = write_file("bad" + std::to_string(n++), c.ini);
    std::vector<std::string> xs{"--config-file=" + path};
    xs.insert(xs.end(), c.flags.begin(), c.flags.end());
    args a{xs};
    node_config cfg;
    auto err = cfg.parse(a.argc(), a.argv());
    CHECK(err);
    CHECK_MESSAGE(cfg.error_message().find(c.must_name) != std::string::npos,
                  cfg.error_message());
    CHECK(cfg.error_message().find('\n') == std::string::npos);
  }
}

TEST_CASE("CAF's own sections are allowed; a good file still parses") {
  auto path = write_file("caf-sections", std::string{nested_ini}
                                           + "\n[scheduler]\nmax-threads = 2\n"
                                             "[middleman]\nheartbeat-interval = 1s\n");
  args a{{"--config-file=" + path}};
  node_config cfg;
  auto err = cfg.parse(a.argc(), a.argv());
  CHECK_MESSAGE(!err, cfg.error_message());
  CHECK(cfg.tcp_port == 7500);
}

TEST_CASE("validate checks ranges and the timeouts") {
  auto expect_bad = [](auto mutate, const char* option) {
    node_config cfg;
    mutate(cfg);
    try {
      cfg.validate();
      FAIL("no exception for ", option);
    } catch (const cairn::runtime::config_error& e) {
      CHECK_MESSAGE(std::string{e.what()}.find(option) != std::string::npos,
                    e.what());
    }
  };
  expect_bad([](node_config& c) { c.partitions = 5000; }, "cairn.partitions");
  expect_bad([](node_config& c) { c.io_threads_text = "1000"; }, "cairn.tcp.io-threads");
  expect_bad([](node_config& c) { c.http_io_threads_text = "0"; }, "cairn.http.io-threads");
  expect_bad([](node_config& c) { c.parsers_text = "2x"; }, "cairn.ingest.parsers");
  expect_bad([](node_config& c) { c.tcp_max_connections = 0; },
             "cairn.tcp.max-connections");
  expect_bad([](node_config& c) { c.tcp_idle_timeout_text = "soon"; },
             "cairn.tcp.idle-timeout");
  expect_bad([](node_config& c) { c.tcp_line_timeout_text = "-1s"; },
             "cairn.tcp.line-timeout");
  expect_bad([](node_config& c) { c.http_read_timeout_text = "x"; },
             "cairn.http.read-timeout");
  node_config ok;
  ok.tcp_idle_timeout_text = "0";
  CHECK_NOTHROW(ok.validate());
  CHECK(node_config::duration_of("5m") == std::chrono::minutes{5});
}

TEST_CASE("cluster gate options: max-frame and handshake-timeout") {
  node_config defaults;
  CHECK(defaults.cluster_max_frame == 64u << 20);
  CHECK(defaults.handshake_timeout_text == "5s");
  node_config cfg;
  args a{{"--cairn.cluster.max-frame=1048576",
          "--cairn.cluster.handshake-timeout=750ms"}};
  REQUIRE(!cfg.parse(a.argc(), a.argv()));
  CHECK(cfg.cluster_max_frame == 1048576);
  CHECK(cfg.handshake_timeout_text == "750ms");
  CHECK_NOTHROW(cfg.validate());
  auto bad = [](auto mutate) {
    node_config c;
    mutate(c);
    CHECK_THROWS_AS(c.validate(), std::invalid_argument);
  };
  bad([](node_config& c) { c.cluster_max_frame = 100; });
  bad([](node_config& c) { c.cluster_max_frame = size_t{1} << 32; });
  bad([](node_config& c) { c.handshake_timeout_text = "0"; });
  bad([](node_config& c) { c.handshake_timeout_text = "soon"; });
}

} // TEST_SUITE

TEST_CASE("count-or-auto options: auto by default, a count in quotes fixes it") {
  node_config cfg;
  CHECK(cfg.parsers() == 0);  // auto: the node sizes the pool
  CHECK(cfg.io_threads() >= 1);
  CHECK(cfg.io_threads()
        == std::max<size_t>(1, std::thread::hardware_concurrency() / 4));
  CHECK(cfg.http_io_threads() == cfg.io_threads());
  args a{{"--cairn.ingest.parsers=3", "--cairn.tcp.io-threads=2",
          "--cairn.http.io-threads=5"}};
  REQUIRE(!cfg.parse(a.argc(), a.argv()));
  CHECK(cfg.parsers() == 3);
  CHECK(cfg.io_threads() == 2);
  CHECK(cfg.http_io_threads() == 5);
}
