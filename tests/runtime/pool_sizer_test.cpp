#include "runtime/pool_sizer.hpp"

#include <doctest/doctest.h>

using cairn::runtime::pool_sizer;

TEST_SUITE("runtime.pool_sizer") {
  TEST_CASE("busy parsers grow the pool one at a time up to max") {
    pool_sizer s{1, 3};
    CHECK(s.sample(0.08, 0.1, 1) == 2);   // 80 % busy
    CHECK(s.sample(0.15, 0.1, 2) == 3);   // 75 % of two
    CHECK(s.sample(0.3, 0.1, 3) == 3);    // saturated at max
    CHECK(s.sample(0.069, 0.1, 1) == 1);  // just below the threshold
  }

  TEST_CASE("the pool shrinks only after a lasting lull, never below min") {
    pool_sizer s{1, 4};
    size_t n = 3;
    // 0.07 s of work in 0.1 s would keep two parsers 35 % busy: low.
    for (int i = 1; i < pool_sizer::shrink_after; ++i)
      CHECK(s.sample(0.07, 0.1, n) == n);
    CHECK(s.sample(0.07, 0.1, n) == 2);
    // A busy sample in between starts the count again.
    for (int i = 1; i < pool_sizer::shrink_after; ++i)
      CHECK(s.sample(0.0, 0.1, 2) == 2);
    CHECK(s.sample(0.1, 0.1, 2) == 2);  // 50 % of two, 100 % of one: keep
    for (int i = 1; i < pool_sizer::shrink_after; ++i)
      CHECK(s.sample(0.0, 0.1, 2) == 2);
    CHECK(s.sample(0.0, 0.1, 2) == 1);
    for (int i = 0; i < 3 * pool_sizer::shrink_after; ++i)
      CHECK(s.sample(0.0, 0.1, 1) == 1);
  }

  TEST_CASE("bounds: a count outside them is brought back, min <= max") {
    pool_sizer s{2, 1};
    CHECK(s.min() == 2);
    CHECK(s.max() == 2);
    CHECK(s.sample(1.0, 0.1, 5) == 2);
    pool_sizer t{0, 2};
    CHECK(t.min() == 1);
    CHECK(t.sample(0.0, 0.0, 2) == 2);  // no interval: no decision
  }
}
