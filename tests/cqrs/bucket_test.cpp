#include "cqrs/bucket.hpp"

#include <doctest/doctest.h>

#include <cmath>

using namespace cairn::cqrs;

TEST_SUITE("cqrs.bucket") {

TEST_CASE("bucket alignment, also before the epoch") {
  CHECK(align_down(1'764'190'000'123, 1000) == 1'764'190'000'000);
  CHECK(align_down(1'764'190'000'123, 60'000) == 1'764'189'960'000);
  CHECK(align_down(-1, 60'000) == -60'000);
  CHECK(align_down(-60'000, 60'000) == -60'000);
  CHECK(align_down(-60'001, 60'000) == -120'000);
}

TEST_CASE("add tracks count, sum, min, max, last") {
  ddsketch_mapping m;
  bucket b;
  CHECK(b.empty());
  b.add(10, 5.0, m);
  b.add(30, -2.0, m);
  b.add(20, 7.0, m); // late: not the last
  b.add(30, 3.0, m); // same ts, applied later: the last
  CHECK(b.count == 4);
  CHECK(b.sum == doctest::Approx(13.0));
  CHECK(b.min == -2.0);
  CHECK(b.max == 7.0);
  CHECK(b.last_ts == 30);
  CHECK(b.last == 3.0);
  CHECK(b.sketch.count() == 4);
}

TEST_CASE("merge equals adding everything to one bucket") {
  ddsketch_mapping m;
  bucket all, x, y;
  for (int i = 0; i < 100; ++i) {
    double v = std::sin(i) * 100;
    all.add(i * 7 % 50, v, m);
    (i % 3 == 0 ? x : y).add(i * 7 % 50, v, m);
  }
  bucket merged = x;
  merged.merge(y);
  CHECK(merged.count == all.count);
  CHECK(merged.sum == doctest::Approx(all.sum));
  CHECK(merged.min == all.min);
  CHECK(merged.max == all.max);
  CHECK(merged.last_ts == all.last_ts);
  CHECK(merged.sketch == all.sketch);
  bucket e;
  e.merge(bucket{});
  CHECK(e.empty());
  e.merge(all);
  CHECK(e == all);
}

}
