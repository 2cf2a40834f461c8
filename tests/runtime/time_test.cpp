#include "runtime/time.hpp"

#include <doctest/doctest.h>

using namespace cairn::runtime;

TEST_SUITE("runtime.time") {

TEST_CASE("parse_duration accepts ms digits and units") {
  CHECK(parse_duration("0") == 0);
  CHECK(parse_duration("1500") == 1500);
  CHECK(parse_duration("250ms") == 250);
  CHECK(parse_duration("10s") == 10'000);
  CHECK(parse_duration("15m") == 900'000);
  CHECK(parse_duration("2h") == 7'200'000);
  CHECK(parse_duration("90d") == 90LL * 86'400'000);
  CHECK(parse_duration("1w") == 7LL * 86'400'000);
}

TEST_CASE("parse_duration rejects bad input") {
  for (auto text : {"", "s", "-5s", "1.5s", "10x", "10 s", " 10s", "10sm",
                    "9223372036854775808", "99999999999999999999",
                    "9999999999999999w", "1e3", "+5s", "10S"})
    CHECK_MESSAGE(!parse_duration(text), text);
}

TEST_CASE("format_duration uses the largest exact unit") {
  CHECK(format_duration(0) == "0ms");
  CHECK(format_duration(1500) == "1500ms");
  CHECK(format_duration(1000) == "1s");
  CHECK(format_duration(60'000) == "1m");
  CHECK(format_duration(90'000) == "90s");
  CHECK(format_duration(3'600'000) == "1h");
  CHECK(format_duration(86'400'000) == "1d");
  CHECK(format_duration(14 * 86'400'000LL) == "2w");
  CHECK(format_duration(-60'000) == "-1m");
  for (millis d : {1LL, 999LL, 1000LL, 61'000LL, 7'200'000LL, 90 * 86'400'000LL})
    CHECK(parse_duration(format_duration(d)) == d);
}

TEST_CASE("parse_time") {
  millis now = 1'764'190'000'123;
  CHECK(parse_time("now", now) == now);
  CHECK(parse_time("-15m", now) == now - 900'000);
  CHECK(parse_time("now-15m", now) == now - 900'000);
  CHECK(parse_time("now+1h", now) == now + 3'600'000);
  CHECK(parse_time("-500", now) == now - 500);
  CHECK(parse_time("1764190000000", now) == 1'764'190'000'000);
  for (auto text : {"", "now-", "nowx", "yesterday", "-", "-15x", "12.5",
                    "1e12", "now - 5m", "99999999999999999999", "-1.5s"})
    CHECK_MESSAGE(!parse_time(text, now), text);
}

TEST_CASE("align_down floors also negative times") {
  CHECK(align_down(0, 1000) == 0);
  CHECK(align_down(999, 1000) == 0);
  CHECK(align_down(1000, 1000) == 1000);
  CHECK(align_down(1999, 1000) == 1000);
  CHECK(align_down(-1, 1000) == -1000);
  CHECK(align_down(-1000, 1000) == -1000);
  CHECK(align_down(-1001, 1000) == -2000);
}

TEST_CASE("wall_clock_now is epoch milliseconds") {
  auto now = wall_clock_now();
  CHECK(now > 1'700'000'000'000);     // after 2023
  CHECK(now < 4'102'444'800'000);     // before 2100
}

}
