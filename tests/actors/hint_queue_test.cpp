#include "actors/hint_queue.hpp"

#include "cqrs/series_key.hpp"

#include <doctest/doctest.h>

#include <algorithm>

using cairn::actors::hint_queue;
using cairn::cqrs::hint_record;

namespace {

hint_record record(std::vector<uint32_t> partitions, size_t events = 2) {
  hint_record r;
  r.key = "~n1.1." + std::to_string(partitions.front());
  r.partitions = partitions;
  for (size_t i = 0; i < partitions.size(); ++i) {
    cairn::cqrs::event_batch b;
    for (size_t e = 0; e < events; ++e)
      b.add("m", cairn::cqrs::series_hash("m"), 1000 + int64_t(e), 1.0);
    r.batches.push_back(std::move(b));
  }
  return r;
}

} // namespace

TEST_SUITE("actors.hint_queue") {
  TEST_CASE("in order, at most `credits` in flight, delivered prefix leaves") {
    hint_queue q;
    for (uint32_t p = 0; p < 5; ++p)
      CHECK(q.push(record({p}), 2, 0) == p + 1);
    for (uint64_t s = 1; s <= 5; ++s)
      q.mark_durable(s);
    CHECK(q.next_to_send(2) == std::vector<uint64_t>{1, 2});
    CHECK(q.in_flight() == 2);
    CHECK(q.next_to_send(2).empty());  // credits used up
    q.on_delivered(2);                  // out of order: 1 still pending
    CHECK(q.pop_delivered().count == 0);
    CHECK(q.next_to_send(2) == std::vector<uint64_t>{3});
    q.on_delivered(1);
    auto popped = q.pop_delivered();
    CHECK(popped.count == 2);
    CHECK(popped.upto == 2);
    CHECK(q.size() == 3);
    CHECK(q.in_flight() == 1);
  }

  TEST_CASE("a stale epoch's failure changes nothing; a current one resends") {
    hint_queue q;
    for (uint32_t p = 0; p < 4; ++p)
      q.mark_durable(q.push(record({p}), 1, 0));
    auto e0 = q.epoch();
    CHECK(q.next_to_send(4).size() == 4);
    q.on_delivered(1);
    CHECK(q.on_failed(e0));            // hint 2 failed: new epoch
    CHECK(q.in_flight() == 0);
    CHECK_FALSE(q.on_failed(e0));      // hints 3 and 4 failing late: stale
    // The new epoch resends 2, 3, 4 (1 was applied) ...
    CHECK(q.next_to_send(4) == std::vector<uint64_t>{2, 3, 4});
    // ... and a late success from the old epoch still counts as applied.
    q.on_delivered(3);
    CHECK(q.in_flight() == 2);
    q.on_delivered(2);
    q.on_delivered(4);
    CHECK(q.pop_delivered().count == 4);
    CHECK(q.empty());
    CHECK(q.bytes() == 0);
  }

  TEST_CASE("the accounting never wedges (the 3,060 pending hints stuck)") {
    // Replies of older batches interleaved with failures: in_flight must
    // always equal the hints sent and not yet answered in the current epoch.
    hint_queue q;
    for (uint32_t i = 0; i < 50; ++i)
      q.mark_durable(q.push(record({i % 8}), 1, 0));
    uint64_t rounds = 0;
    while (!q.empty() && rounds++ < 1000) {
      auto epoch = q.epoch();
      auto sent = q.next_to_send(8);
      REQUIRE(q.in_flight() <= 8);
      for (size_t i = 0; i < sent.size(); ++i) {
        if ((sent[i] + rounds) % 5 == 0)
          (void) q.on_failed(epoch);  // some fail, the rest answer late
        else
          q.on_delivered(sent[i]);
      }
      q.pop_delivered();
    }
    CHECK(q.empty());
    CHECK(rounds < 1000);
  }

  TEST_CASE("not durable: not popped; a failed write drops the hint") {
    hint_queue q;
    auto a = q.push(record({1}), 3, 0);
    auto b = q.push(record({2}), 3, 0);
    CHECK(q.next_to_send(8).size() == 2);  // sent before durable is fine
    q.on_delivered(a);
    q.on_delivered(b);
    CHECK(q.pop_delivered().count == 0);  // not durable yet
    q.mark_durable(a);
    auto p = q.pop_delivered();
    CHECK(p.count == 1);
    REQUIRE(p.answer.size() == 1);  // its client had not been answered
    CHECK(p.answer[0] == std::pair<uint64_t, uint64_t>{a, 3});
    auto dropped = q.drop(b);
    REQUIRE(dropped);
    CHECK(dropped->events == 3);
    CHECK(q.empty());
    CHECK_FALSE(q.drop(b));
  }

  TEST_CASE("clients are answered once, when durable and announced") {
    hint_queue q;
    auto a = q.push(record({1}), 1, 1);  // needs announcement 1
    auto b = q.push(record({1}), 1, 1);
    auto c = q.push(record({2}), 1, 0);
    CHECK(q.settle(0).empty());  // nothing durable
    q.mark_durable(a);
    q.mark_durable(c);
    CHECK(q.settle(0) == std::vector<uint64_t>{c});
    CHECK(q.settle(1) == std::vector<uint64_t>{a});
    CHECK(q.settle(1).empty());  // once
    q.mark_durable(b);
    CHECK(q.settle(1) == std::vector<uint64_t>{b});
  }

  TEST_CASE("loaded hints: durable, nobody waits, seqs continue after them") {
    hint_queue q;
    q.load(7, record({3}));
    q.load(5, record({4}));
    CHECK(q.entries().front().seq == 5);
    CHECK(q.next_seq() == 8);
    CHECK(q.push(record({3}), 2, 0) == 8);
    CHECK(q.settle(100).empty());  // loaded: no client; 8 not durable
    auto parts = q.partitions();
    std::sort(parts.begin(), parts.end());
    CHECK(parts == std::vector<uint32_t>{3, 3, 4});
    q.restart_epoch();
    CHECK(q.next_to_send(1) == std::vector<uint64_t>{5});
  }
}
