#include "runtime/process_metrics.hpp"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <string>

using namespace cairn::runtime;

TEST_SUITE("runtime.process_metrics") {

TEST_CASE("figures of this process read from /proc") {
  auto before = read_process_figures();
  CHECK(before.resident_bytes > 0);
  CHECK(before.virtual_bytes >= before.resident_bytes);
  CHECK(before.threads >= 1);
  CHECK(before.max_fds > 0);
  auto now = std::chrono::duration<double>(
               std::chrono::system_clock::now().time_since_epoch())
               .count();
  CHECK(before.start_time_seconds > now - 3600);
  CHECK(before.start_time_seconds <= now + 1);
  // One more open file shows.
  int fd = ::open("/dev/null", O_RDONLY);
  REQUIRE(fd >= 0);
  auto after = read_process_figures();
  ::close(fd);
  CHECK(after.open_fds == before.open_fds + 1);
  // Burn a little CPU: the counter does not go back.
  volatile double x = 0;
  for (int i = 0; i < 20'000'000; ++i)
    x = x + i * 0.5;
  CHECK(read_process_figures().cpu_seconds >= before.cpu_seconds);
}

TEST_CASE("process_* series and build info are registered") {
  metrics_registry reg;
  register_process_metrics(reg, "1.2.3");
  auto text = reg.render_prometheus();
  for (auto name : {"process_cpu_seconds_total ", "process_resident_memory_bytes ",
                    "process_virtual_memory_bytes ", "process_open_fds ",
                    "process_max_fds ", "process_start_time_seconds ",
                    "process_threads "})
    CHECK_MESSAGE(text.find(std::string{"\n"} + name) != std::string::npos, name);
  CHECK(text.find("cairn_build_info{version=\"1.2.3\",caf=\"0.17.6\"")
        != std::string::npos);
  CHECK(text.find("\nprocess_resident_memory_bytes 0\n") == std::string::npos);
}

} // TEST_SUITE
