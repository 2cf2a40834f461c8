#include "cqrs/idempotency_window.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace cairn::cqrs;

TEST_SUITE("cqrs.idempotency_window") {

TEST_CASE("remembers inserted keys") {
  idempotency_window w{10, 1000};
  CHECK(!w.contains("a"));
  w.insert("a", 100);
  w.insert("b", 100);
  CHECK(w.contains("a"));
  CHECK(w.contains("b"));
  CHECK(!w.contains("c"));
  CHECK(w.size() == 2);
  w.insert("", 100); // no key: nothing to remember
  CHECK(w.size() == 2);
  CHECK(!w.contains(""));
}

TEST_CASE("bounded by count: the oldest keys go first") {
  idempotency_window w{3, 0};
  for (int i = 0; i < 5; ++i)
    w.insert("k" + std::to_string(i), i);
  CHECK(w.size() == 3);
  CHECK(!w.contains("k0"));
  CHECK(!w.contains("k1"));
  CHECK(w.contains("k2"));
  CHECK(w.contains("k4"));
  // re-inserting a present key neither duplicates nor refreshes it
  w.insert("k2", 10);
  w.insert("k5", 11);
  CHECK(!w.contains("k2"));
  CHECK(w.contains("k3"));
  CHECK(w.size() == 3);
}

TEST_CASE("bounded by time") {
  idempotency_window w{100, 1000};
  w.insert("early", 0);
  w.insert("mid", 500);
  w.insert("late", 999);
  w.expire(999);
  CHECK(w.size() == 3);
  w.expire(1000); // "early" is exactly one window old
  CHECK(!w.contains("early"));
  CHECK(w.contains("mid"));
  w.expire(1600);
  CHECK(!w.contains("mid"));
  CHECK(w.contains("late"));
  w.expire(100000);
  CHECK(w.empty());
  // window 0 = no time bound
  idempotency_window forever{100, 0};
  forever.insert("x", 0);
  forever.expire(1'000'000'000);
  CHECK(forever.contains("x"));
}

TEST_CASE("a clock stepping back cannot reorder expiry") {
  idempotency_window w{100, 1000};
  w.insert("a", 5000);
  w.insert("b", 4000); // clamped to 5000
  w.expire(5999);
  CHECK(w.contains("a"));
  CHECK(w.contains("b"));
  w.expire(6000);
  CHECK(w.empty());
}

TEST_CASE("encode/decode round trip") {
  idempotency_window w{50, 60000};
  for (int i = 0; i < 40; ++i)
    w.insert("req-" + std::to_string(i * 7919), 1'764'190'000'000 + i * 13);
  w.insert(std::string(300, 'z'), 1'764'190'001'000);
  std::string bytes;
  w.encode(bytes);
  idempotency_window back{50, 60000};
  REQUIRE(back.decode(bytes));
  CHECK(back == w);
  CHECK(back.contains("req-7919"));
  CHECK(back.contains(std::string(300, 'z')));
  // decoding applies the receiver's (smaller) count bound, oldest first
  idempotency_window small{5, 60000};
  REQUIRE(small.decode(bytes));
  CHECK(small.size() == 5);
  CHECK(small.contains(std::string(300, 'z')));
  CHECK(!small.contains("req-0"));
  // an empty window
  idempotency_window empty{5, 0};
  std::string empty_bytes;
  empty.encode(empty_bytes);
  REQUIRE(back.decode(empty_bytes));
  CHECK(back.empty());
}

TEST_CASE("malformed input is rejected and leaves the state unchanged") {
  idempotency_window w{10, 0};
  w.insert("keep", 1);
  std::string bytes;
  idempotency_window other{10, 0};
  other.insert("a", 1);
  other.insert("b", 2);
  other.encode(bytes);
  CHECK(!w.decode(""));
  CHECK(!w.decode(std::string(1, '\x7f'))); // unknown version
  for (size_t len = 1; len < bytes.size(); ++len)
    CHECK(!w.decode(std::string_view{bytes}.substr(0, len)));
  CHECK(!w.decode(bytes + "x"));
  CHECK(w.size() == 1);
  CHECK(w.contains("keep"));
}

TEST_CASE("deterministic: the same calls give the same state") {
  auto run = [] {
    idempotency_window w{20, 500};
    for (int i = 0; i < 100; ++i) {
      w.insert("k" + std::to_string(i % 37), i * 10);
      if (i % 9 == 0)
        w.expire(i * 10);
    }
    return w;
  };
  auto x = run();
  auto y = run();
  CHECK(x == y);
  std::string bx;
  std::string by;
  x.encode(bx);
  y.encode(by);
  CHECK(bx == by);
}

TEST_CASE("copies and moves keep lookups working") {
  idempotency_window w{10, 0};
  w.insert("short", 1);
  w.insert(std::string(100, 'L'), 2);
  auto copy = w;
  CHECK(copy.contains("short"));
  CHECK(copy.contains(std::string(100, 'L')));
  auto moved = std::move(w);
  CHECK(moved.contains("short"));
  CHECK(moved.contains(std::string(100, 'L')));
  idempotency_window assigned{1, 0};
  assigned = moved;
  CHECK(assigned.contains("short"));
  assigned = std::move(copy);
  CHECK(assigned.contains(std::string(100, 'L')));
  assigned.insert("new", 3);
  CHECK(assigned.size() == 3);
}

} // TEST_SUITE
