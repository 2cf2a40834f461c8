#include "runtime/fd_limit.hpp"

#include <doctest/doctest.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace cairn::runtime;

TEST_SUITE("runtime.fd_limit") {

TEST_CASE("the soft limit is raised up to the hard limit, else clamped") {
  rlimit old{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &old) == 0);
  rlimit low = old;
  low.rlim_cur = 256;
  REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
  fd_reserve reserve;
  reserve.journal = 100;
  reserve.http = 36;  // + base 64 = 200
  SUBCASE("fits after raising the soft limit") {
    auto b = fit_fd_limit(500, reserve);
    CHECK(b.soft_before == 256);
    if (old.rlim_max == RLIM_INFINITY || old.rlim_max >= 700) {
      CHECK(b.raised);
      CHECK(b.soft == 700);
      CHECK_FALSE(b.clamped);
      CHECK(b.max_connections == 500);
    }
  }
  SUBCASE("already fits: nothing changes") {
    auto b = fit_fd_limit(50, reserve);
    CHECK_FALSE(b.raised);
    CHECK_FALSE(b.clamped);
    CHECK(b.max_connections == 50);
  }
  REQUIRE(setrlimit(RLIMIT_NOFILE, &old) == 0);
}

TEST_CASE("a hard limit that is too low clamps the connections") {
  // Lowering the hard limit is irreversible: do it in a child process.
  auto pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    rlimit rl{300, 300};
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
      _exit(10);
    fd_reserve reserve;
    reserve.journal = 100;  // + base 64 = 164
    auto b = fit_fd_limit(1000, reserve);
    bool ok = !b.raised && b.clamped && b.max_connections == 300 - 164
              && b.soft == 300;
    auto tiny = fit_fd_limit(1000, fd_reserve{500, 0, 0, 0, 64});
    ok = ok && tiny.max_connections == min_clamped_connections;
    _exit(ok ? 0 : 11);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

} // TEST_SUITE
