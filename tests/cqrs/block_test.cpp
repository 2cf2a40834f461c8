#include "cqrs/block.hpp"

#include "cqrs/detail/bits.hpp"
#include "cqrs/detail/stream_pool.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <vector>

using namespace cairn::cqrs;

namespace {

constexpr millis t0 = 1'764'190'000'000;

bool same_bits(double x, double y) {
  return std::bit_cast<uint64_t>(x) == std::bit_cast<uint64_t>(y);
}

/// Field by field, doubles compared bit for bit (NaN == NaN, -0.0 != 0.0).
void check_same(const bucket& x, const bucket& y) {
  CHECK(x.count == y.count);
  CHECK(same_bits(x.sum, y.sum));
  CHECK(same_bits(x.min, y.min));
  CHECK(same_bits(x.max, y.max));
  CHECK(same_bits(x.last, y.last));
  CHECK(x.last_ts == y.last_ts);
  CHECK(x.sketch == y.sketch);
}

using bucket_list = std::vector<std::pair<millis, bucket>>;

/// The persisted form of `blk` decodes (which checks its restart links) to
/// the same block and end state `st`.
void check_persisted(const bucket_block& blk, millis res,
                     const ddsketch_mapping& m, const block_state& st) {
  std::string bytes;
  blk.encode(bytes);
  std::string_view view{bytes};
  bucket_block back;
  block_state st2;
  REQUIRE(back.decode(view, res, m, st2));
  CHECK(view.empty());
  CHECK(back == blk);
  CHECK(st2 == st);
}

/// Encodes `in` into one block, decodes it with a cursor and through
/// encode/decode, and checks both against `in`; returns the block.
bucket_block round_trip(const bucket_list& in, millis res,
                        const ddsketch_mapping& m) {
  bucket_block blk;
  block_state st;
  for (auto& [start, b] : in)
    blk.append(start, b, res, m, st);
  REQUIRE(blk.size() == in.size());
  block_cursor cur{blk, res, m};
  millis start = 0;
  bucket b;
  size_t i = 0;
  while (cur.next(start, b)) {
    REQUIRE(i < in.size());
    CHECK(start == in[i].first);
    check_same(b, in[i].second);
    ++i;
  }
  CHECK(cur.ok());
  CHECK(i == in.size());
  CHECK(cur.state() == st);
  // A walk that skips every sketch (what a coarse tier's append decodes
  // its state with, series_store state_after) ends in the same state.
  block_cursor skip{blk, res, m};
  size_t skipped = 0;
  while (skip.next(start, b, std::numeric_limits<millis>::max()))
    ++skipped;
  CHECK(skip.ok());
  CHECK(skipped == in.size());
  CHECK(skip.state() == st);
  check_persisted(blk, res, m, st);
  return blk;
}

bucket one_event(millis ts, double v, const ddsketch_mapping& m) {
  bucket b;
  b.add(ts, v, m);
  return b;
}

} // namespace

TEST_SUITE("cqrs.block") {

TEST_CASE("bit writer and reader: fixed widths and gamma codes") {
  detail::byte_buffer buf;
  uint64_t nbits = 0;
  detail::bit_writer w{buf, nbits};
  std::vector<uint64_t> gammas = {0, 1, 2, 3, 1000, (uint64_t{1} << 53),
                                  std::numeric_limits<uint64_t>::max() - 1,
                                  std::numeric_limits<uint64_t>::max()};
  w.put(5, 3);
  for (auto g : gammas)
    w.gamma(g);
  w.put(0xdeadbeefcafef00dULL, 64);
  w.bit(true);
  detail::bit_reader r{buf.data(), nbits};
  CHECK(r.get(3) == 5);
  for (auto g : gammas)
    CHECK(r.gamma() == g);
  CHECK(r.get(64) == 0xdeadbeefcafef00dULL);
  CHECK(r.bit());
  CHECK(r.ok());
  CHECK(r.at_end());
  (void) r.get(1);
  CHECK_FALSE(r.ok());
}

TEST_CASE("bit writer and reader: Rice codes with escapes, every k") {
  detail::byte_buffer buf;
  uint64_t nbits = 0;
  detail::bit_writer w{buf, nbits};
  std::vector<uint64_t> values = {0, 1, 2, 15, 16, 17, 1000, 65535,
                                  (uint64_t{1} << 53),
                                  std::numeric_limits<uint64_t>::max() - 1,
                                  std::numeric_limits<uint64_t>::max()};
  for (unsigned k : {0u, 1u, 3u, 10u, 31u, 63u})
    for (auto v : values)
      w.rice(v, k);
  w.bit(true);
  detail::bit_reader r{buf.data(), nbits};
  for (unsigned k : {0u, 1u, 3u, 10u, 31u, 63u})
    for (auto v : values)
      CHECK(r.rice(k) == v);
  CHECK(r.bit());
  CHECK(r.ok());
  CHECK(r.at_end());
  // Small values with a fitting k cost k + 1 bits; a huge one escapes.
  detail::byte_buffer b2;
  uint64_t n2 = 0;
  detail::bit_writer w2{b2, n2};
  w2.rice(5, 3);
  CHECK(n2 == 4);
  w2.rice(std::numeric_limits<uint64_t>::max(), 0);
  CHECK(n2 == 4 + 16 + 6 + 63);
}

TEST_CASE("a block's handle is 40 bytes; its stream buffer copies and moves") {
  // A 1 s tier holds ~8 blocks per series (docs/architecture.md).
  // (Only the finest tiers keep a block_state, series_store keeps_tail.)
  CHECK(sizeof(bucket_block) <= 40);
  // Every series keeps one codec state per tier (its active block's).
  CHECK(sizeof(block_state) <= 152);
  detail::byte_buffer a;
  for (int i = 0; i < 1000; ++i)
    a.push_back(static_cast<uint8_t>(i));
  CHECK(a.size() == 1000);
  CHECK(a.capacity() < 1000 + 1000 / 8 + 16);
  auto b = a;
  CHECK(b == a);
  b.back() = 7;
  CHECK_FALSE(b == a);
  auto c = std::move(a);
  CHECK(c.size() == 1000);
  CHECK(a.size() == 0);
  c.shrink_to_fit();
  // The smallest slot of the stream pool that holds it (64-byte classes).
  CHECK(c.capacity() == detail::stream_capacity(1000));
  CHECK(c.capacity() == 1024);
  CHECK(c.data()[999] == static_cast<uint8_t>(999));
  a = c;
  CHECK(a == c);
}

TEST_CASE("lazy one-event buckets: no sketch built; quantiles and the "
          "materialized sketch equal a full decode's") {
  ddsketch_mapping m{0.01};
  const double values[] = {21.0, 0.0, -3.5, 1e-12, -1e-12, 1e300, 7.25, 7.25, -0.0, 42.0};
  bucket_list in;
  for (size_t i = 0; i < std::size(values); ++i)
    in.emplace_back(t0 + static_cast<millis>(i) * 1000,
                    one_event(t0 + static_cast<millis>(i) * 1000 + 7, values[i], m));
  // A bucket of two events among them: not single, decoded as before.
  bucket two;
  two.add(t0 + 20'000, 1.0, m);
  two.add(t0 + 20'500, 2.0, m);
  in.emplace_back(t0 + 20'000, two);
  auto blk = round_trip(in, 1000, m);
  block_cursor cur{blk, 1000, m};
  millis s = 0;
  bucket b;
  size_t i = 0, singles = 0;
  while (cur.next(s, b, std::numeric_limits<millis>::min(), true)) {
    REQUIRE(i < in.size());
    auto& want = in[i].second;
    // The encoder writes a one-event bucket in the short form unless its
    // fields say otherwise (-0.0: sum 0 + -0.0 is +0.0); only those come
    // out single.
    bool single = cur.single();
    CHECK((!single || want.count == 1));
    CHECK((!single || cur.lazy()));
    singles += single ? 1 : 0;
    if (single) {
      CHECK(b.sketch.count() == 0); // not built
      CHECK(same_bits(b.last, want.last));
    }
    for (double q : {0.0, 0.5, 0.99, 1.0})
      CHECK(same_bits(cur.quantile(b, q), want.sketch.quantile(q, m)));
    cur.materialize(b);
    CHECK_FALSE(cur.single());
    check_same(b, want);
    ++i;
  }
  CHECK(cur.ok());
  CHECK(i == in.size());
  CHECK(singles >= 8);
}

TEST_CASE("one-event buckets: jittered offsets and noisy values stay small") {
  // The benchmark's shape (docs/benchmarks.md): lognormal integers near
  // 20, the timestamp 0-99 ms into its second. Codec 1 needed ~3.6 bytes.
  ddsketch_mapping m{0.01};
  std::mt19937_64 rng{3};
  std::lognormal_distribution<double> val{3.0, 0.8};
  std::uniform_int_distribution<int> jitter{0, 99};
  bucket_list in;
  for (int i = 0; i < 128; ++i)
    in.emplace_back(t0 + i * 1000,
                    one_event(t0 + i * 1000 + jitter(rng),
                              std::max(1.0, std::round(val(rng))), m));
  auto blk = round_trip(in, 1000, m);
  CHECK(blk.bit_count() / 8.0 / in.size() < 3.0);
  // Ten events per bucket: the deltas of sum, min, max, last, the offset
  // and the sketch's gaps and counts.
  bucket_list ten;
  for (int i = 0; i < 128; ++i) {
    bucket b;
    for (int k = 0; k < 10; ++k)
      b.add(t0 + i * 1000 + k * 100 + jitter(rng) / 10,
            std::max(1.0, std::round(val(rng))), m);
    ten.emplace_back(t0 + i * 1000, b);
  }
  auto blk10 = round_trip(ten, 1000, m);
  CHECK(blk10.bit_count() / 8.0 / ten.size() < 16.0);
}

TEST_CASE("one-event buckets cost their value and little else") {
  ddsketch_mapping m{0.01};
  bucket_list in;
  for (int i = 0; i < 128; ++i)
    in.emplace_back(t0 + i * 1000, one_event(t0 + i * 1000 + 17, 20 + i % 7, m));
  auto blk = round_trip(in, 1000, m);
  // Integer values near 20, constant offset: a few bits per bucket.
  CHECK(blk.bit_count() / 8.0 / in.size() < 2.5);
}

TEST_CASE("every special double and extreme counts round-trip exactly") {
  ddsketch_mapping m{0.01};
  const double specials[] = {0.0,
                             -0.0,
                             std::numeric_limits<double>::quiet_NaN(),
                             -std::numeric_limits<double>::quiet_NaN(),
                             std::numeric_limits<double>::infinity(),
                             -std::numeric_limits<double>::infinity(),
                             std::numeric_limits<double>::denorm_min(),
                             -std::numeric_limits<double>::denorm_min(),
                             std::numeric_limits<double>::min(),
                             std::numeric_limits<double>::max(),
                             -std::numeric_limits<double>::max(),
                             std::numeric_limits<double>::epsilon(),
                             1e-9,
                             0.1,
                             123.456,
                             9007199254740993.0,
                             1e300};
  bucket_list in;
  millis start = t0;
  for (double v : specials) {
    in.emplace_back(start, one_event(start + 999, v, m));
    start += 1000;
  }
  // A bucket whose fields are special doubles directly (sum overflowed,
  // NaN last, -0.0 sum of a one-event bucket).
  for (double v : specials) {
    bucket b = one_event(start, 1.5, m);
    b.sum = v;
    in.emplace_back(start, b);
    start += 3000;  // irregular deltas
    bucket c;
    c.add(start + 1, v, m);
    c.add(start + 2, -v, m);
    c.min = v;
    c.max = -v;
    in.emplace_back(start, c);
    start += 1000;
  }
  // Counts up to 2^53 and beyond, empty and huge bins.
  for (uint64_t n : {uint64_t{2}, uint64_t{1} << 32, (uint64_t{1} << 53) - 1,
                     uint64_t{1} << 53, uint64_t{1} << 62}) {
    bucket b;
    b.add(start + 5, 3.0, m);
    ddsketch big;
    big.add_bin(false, m.index(3.0), n - 1);
    b.sketch.merge(big);
    b.count = n;
    b.sum = 3.0 * static_cast<double>(n);
    in.emplace_back(start, b);
    start += 1000;
  }
  // A bucket whose last_ts lies outside its window (decoded v1 data).
  bucket odd = one_event(start - 5000, 1, m);
  in.emplace_back(start, odd);
  round_trip(in, 1000, m);
}

TEST_CASE("random buckets of every shape round-trip (several resolutions)") {
  ddsketch_mapping m{0.01};
  std::mt19937_64 rng{7};
  std::lognormal_distribution<double> val{3, 1};
  std::uniform_int_distribution<int> pick{0, 99};
  for (millis res : {millis{1}, millis{1000}, millis{60'000}, millis{3'600'000}}) {
    bucket_list in;
    millis start = align_down(t0, res);
    for (int i = 0; i < 300; ++i) {
      start += res * (pick(rng) < 80 ? 1 : 1 + pick(rng));
      bucket b;
      int n = pick(rng) < 40 ? 1 : 1 + pick(rng) % 200;
      for (int k = 0; k < n; ++k) {
        double v = val(rng);
        if (pick(rng) < 30)
          v = std::round(v);  // decimal-friendly
        else if (pick(rng) < 20)
          v = std::round(v * 1000) / 1000;
        if (pick(rng) < 10)
          v = -v;
        if (pick(rng) < 3)
          v = 0;
        b.add(start + static_cast<millis>(rng() % static_cast<uint64_t>(res)), v, m);
      }
      in.emplace_back(start, b);
    }
    round_trip(in, res, m);
  }
}

TEST_CASE("appending continues a decoded block") {
  ddsketch_mapping m{0.01};
  bucket_list in;
  for (int i = 0; i < 40; ++i)
    in.emplace_back(t0 + i * 1000, one_event(t0 + i * 1000, 1.25 * i, m));
  bucket_block blk;
  block_state st;
  for (int i = 0; i < 20; ++i)
    blk.append(in[i].first, in[i].second, 1000, m, st);
  std::string bytes;
  blk.encode(bytes);
  std::string_view view{bytes};
  bucket_block back;
  block_state st2;
  REQUIRE(back.decode(view, 1000, m, st2));
  for (int i = 20; i < 40; ++i)
    back.append(in[i].first, in[i].second, 1000, m, st2);
  block_cursor cur{back, 1000, m};
  millis start = 0;
  bucket b;
  size_t i = 0;
  while (cur.next(start, b)) {
    CHECK(start == in[i].first);
    check_same(b, in[i].second);
    ++i;
  }
  CHECK(i == 40);
}

TEST_CASE("merging changes encodes from the first change on, bit for bit a "
          "fresh block") {
  ddsketch_mapping m{0.01};
  std::mt19937_64 rng{11};
  std::lognormal_distribution<double> val{3, 1};
  std::uniform_int_distribution<int> pick{0, 99};
  auto random_bucket = [&](millis start, millis res, int max_events) {
    bucket b;
    int n = max_events == 1 || pick(rng) < 30 ? 1 : 1 + pick(rng) % max_events;
    for (int k = 0; k < n; ++k)
      b.add(start + static_cast<millis>(rng() % static_cast<uint64_t>(res)),
            pick(rng) < 10 ? -val(rng) : std::round(val(rng) * 100) / 100, m);
    return b;
  };
  // One-event 1 s buckets (no restart point inside a block) and 1 m
  // buckets of up to 200 events (a restart point every few buckets).
  for (auto [res, max_events] : {std::pair{millis{1000}, 1},
                                 std::pair{millis{60'000}, 200}}) {
    bucket_list in;
    millis start = align_down(t0, res);
    for (int i = 0; i < 150; ++i) {
      start += res * (pick(rng) < 85 ? 1 : 2 + pick(rng) % 3);
      in.emplace_back(start, random_bucket(start, res, max_events));
    }
    auto blk = round_trip(in, res, m);
    if (max_events > 1) {
      block_cursor walk{blk, res, m};
      millis t = 0;
      bucket b;
      while (walk.next(t, b)) {}
      REQUIRE(walk.state().restart > 0);
    }
    merge_scratch scratch;
    for (int trial = 0; trial < 300; ++trial) {
      // 1-4 changes: a bucket replaced, or inserted into a gap, before the
      // first or after the last; biased to the block's end as late events are.
      std::map<millis, bucket> changes;
      int num = 1 + pick(rng) % 4;
      for (int c = 0; c < num; ++c) {
        millis at = 0;
        if (pick(rng) < 60) {
          size_t i = pick(rng) < 50 ? in.size() - 1 - rng() % 10 : rng() % in.size();
          at = in[i].first;
        } else {
          auto span = (in.back().first - in.front().first) / res + 6;
          at = in.front().first + (static_cast<millis>(rng() % static_cast<uint64_t>(span)) - 3) * res;
        }
        changes[at] = random_bucket(at, res, max_events);
      }
      if (trial == 0) // the very first bucket replaced: the whole block
        changes[in.front().first] = random_bucket(in.front().first, res, max_events);
      std::map<millis, bucket> merged{in.begin(), in.end()};
      size_t inserted = 0;
      for (auto& [at, b] : changes) {
        inserted += merged.count(at) == 0;
        merged[at] = b;
      }
      bucket_block expected;
      block_state expected_st;
      for (auto& [at, b] : merged)
        expected.append(at, b, res, m, expected_st);
      std::vector<bucket_change> list;
      for (auto& [at, b] : changes)
        list.push_back(bucket_change{at, &b});
      auto got = blk;
      block_state st;
      CHECK(got.merge(list.data(), list.size(), res, m, st, scratch) == inserted);
      REQUIRE(got == expected);
      CHECK(got.size() == merged.size());
      CHECK(got.first_start() == merged.begin()->first);
      CHECK(got.last_start() == merged.rbegin()->first);
      CHECK(st == expected_st);
      check_persisted(got, res, m, st);
    }
    // No changes: the block and its end state as they were.
    auto same = blk;
    block_state st;
    CHECK(same.merge(nullptr, 0, res, m, st, scratch) == 0);
    CHECK(same == blk);
  }
}

TEST_CASE("malformed blocks are rejected, never crash") {
  ddsketch_mapping m{0.01};
  std::mt19937_64 rng{11};
  bucket_list in;
  for (int i = 0; i < 50; ++i) {
    bucket b;
    for (int k = 0; k <= i % 5; ++k)
      b.add(t0 + i * 1000 + k, 0.5 * i - k, m);
    in.emplace_back(t0 + i * 1000, b);
  }
  auto blk = round_trip(in, 1000, m);
  std::string bytes;
  blk.encode(bytes);
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    std::string_view view{bytes.data(), cut};
    bucket_block x;
    block_state st;
    CHECK_FALSE(x.decode(view, 1000, m, st));
  }
  for (int i = 0; i < 5000; ++i) {
    auto corrupt = bytes;
    corrupt[rng() % corrupt.size()] ^= static_cast<char>(1 + rng() % 255);
    std::string_view view{corrupt};
    bucket_block x;
    block_state st;
    (void) x.decode(view, 1000, m, st);  // may pass on a benign flip
  }
}


TEST_CASE("seek: every range start decodes what a walk from the start gives") {
  // Buckets of many events (restart points every ~16 of them), gaps of
  // empty windows (a stretch with no bucket at all, also across a restart
  // point), one-event buckets between them; every `from` from before the
  // block to past its end, on bucket starts, restart points and in gaps.
  ddsketch_mapping m{0.01};
  std::mt19937_64 rng{5};
  std::lognormal_distribution<double> lat{3, 0.8};
  for (millis res : {1000, 60'000}) {
    CAPTURE(res);
    bucket_list in;
    millis t = t0 - t0 % res;
    for (int i = 0; i < 120; ++i) {
      t += res * (i % 17 == 0 ? 1 + static_cast<millis>(rng() % 40) : 1);
      bucket b;
      int n = i % 9 == 4 ? 1 : 20 + static_cast<int>(rng() % 60);
      for (int k = 0; k < n; ++k)
        b.add(t + static_cast<millis>(rng() % res), std::round(lat(rng) * 1000) / 1000, m);
      in.emplace_back(t, b);
    }
    auto blk = round_trip(in, res, m);
    // The restart points: where a cursor's state says one began.
    std::vector<millis> restarts;
    {
      block_cursor cur{blk, res, m};
      millis s = 0;
      bucket b;
      uint32_t at = 0;
      while (cur.next(s, b))
        if (cur.state().restart != at) {
          at = cur.state().restart;
          restarts.push_back(s);
        }
    }
    CHECK(restarts.size() >= 4);
    std::vector<millis> froms{in.front().first - 5 * res, in.back().first + res};
    for (auto& [s, b] : in)
      froms.insert(froms.end(), {s - res, s, s + 1, s + res / 2});
    for (auto s : restarts)
      froms.insert(froms.end(), {s - 1, s, s + 1});
    for (auto from : froms) {
      CAPTURE(from);
      block_cursor cur{blk, res, m};
      cur.seek(from);
      millis s = 0;
      bucket b;
      size_t first = static_cast<size_t>(
        std::lower_bound(in.begin(), in.end(), from,
                         [](auto& x, millis f) { return x.first < f; })
        - in.begin());
      size_t i = first;
      size_t skipped = 0;
      while (cur.next(s, b, from)) {
        if (s < from) {
          ++skipped;
          continue;
        }
        REQUIRE(i < in.size());
        CHECK(s == in[i].first);
        check_same(b, in[i].second);
        ++i;
      }
      CHECK(cur.ok());
      CHECK(i == in.size());
      // The walk starts at the last restart point at or before `from`:
      // only the buckets from there to `from` are decoded, and skipped.
      auto before = std::upper_bound(restarts.begin(), restarts.end(), from);
      size_t ri = 0;
      if (before != restarts.begin())
        ri = static_cast<size_t>(
          std::find_if(in.begin(), in.end(),
                       [&](auto& x) { return x.first == *(before - 1); })
          - in.begin());
      CHECK(skipped == first - ri);
      // The state at the end is the walk's (appending continues a seek).
      if (i > first) {
        block_cursor full{blk, res, m};
        while (full.next(s, b)) {}
        CHECK(cur.state() == full.state());
      }
    }
  }
}

TEST_CASE("restart links are checked when a block is decoded") {
  ddsketch_mapping m{0.01};
  bucket_list in;
  const millis base = t0 - t0 % 60'000;
  for (int i = 0; i < 60; ++i) {
    bucket b;
    for (int k = 0; k < 50; ++k)
      b.add(base + i * 60'000 + k * 1000, 10.0 + (i * 7 + k * 13) % 90, m);
    in.emplace_back(base + i * 60'000, b);
  }
  auto blk = round_trip(in, 60'000, m);
  std::string bytes;
  blk.encode(bytes);
  // The stream starts after the four header varints; its first 16 bits
  // link the second restart point. Any other link breaks the decode.
  size_t header = bytes.size() - (blk.bit_count() + 7) / 8;
  for (int bit = 0; bit < 16; ++bit) {
    auto bad = bytes;
    bad[header + static_cast<size_t>(bit / 8)] ^= static_cast<char>(0x80 >> (bit % 8));
    std::string_view view{bad};
    bucket_block x;
    block_state st;
    CHECK_FALSE(x.decode(view, 60'000, m, st));
  }
}


TEST_CASE("lazy long stores: quantiles from the top equal the decoded sketch's") {
  // Buckets of many bins (long stores, read top first), some with zeros,
  // some with negative values (decoded at once), some short.
  ddsketch_mapping m{0.01};
  std::mt19937_64 rng{9};
  std::lognormal_distribution<double> lat{3, 1.2};
  bucket_list in;
  const millis base = t0 - t0 % 60'000;
  for (int i = 0; i < 80; ++i) {
    bucket b;
    int n = i % 7 == 3 ? 5 : 20 + static_cast<int>(rng() % 200);
    for (int k = 0; k < n; ++k) {
      double v = lat(rng);
      if (i % 5 == 1 && k % 4 == 0)
        v = 0;
      if (i % 11 == 2 && k % 3 == 0)
        v = -v;
      b.add(base + i * 60'000 + k, v, m);
    }
    in.emplace_back(base + i * 60'000, b);
  }
  auto blk = round_trip(in, 60'000, m);
  block_cursor cur{blk, 60'000, m};
  millis s = 0;
  bucket b;
  size_t i = 0, lazy = 0;
  while (cur.next(s, b, std::numeric_limits<millis>::min(), true)) {
    REQUIRE(i < in.size());
    auto& want = in[i].second;
    CHECK(b.count == want.count);
    CHECK(same_bits(b.max, want.max));
    lazy += cur.lazy() ? 1 : 0;
    if (cur.lazy())
      CHECK(b.sketch.zero_count() == want.sketch.zero_count());
    for (double q : {0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0})
      CHECK(same_bits(cur.quantile(b, q), want.sketch.quantile(q, m)));
    cur.materialize(b);
    CHECK_FALSE(cur.lazy());
    check_same(b, want);
    ++i;
  }
  CHECK(cur.ok());
  CHECK(i == in.size());
  CHECK(lazy > 40);
}

TEST_CASE("stream pool: size classes, contents kept across classes, slabs "
          "returned when empty") {
  using namespace cairn::cqrs::detail;
  CHECK(stream_capacity(1) == 16);
  CHECK(stream_capacity(16) == 16);
  CHECK(stream_capacity(17) == 32);
  CHECK(stream_capacity(512) == 512);
  CHECK(stream_capacity(513) == 576);
  CHECK(stream_capacity(4096) == 4096);
  CHECK(stream_capacity(4097) == 4097);  // malloc above the pool's classes
  auto before = stream_pool_usage();
  {
    // Buffers grown byte by byte through every class and past the pool,
    // then shrunk back into it, interleaved so that slabs are shared.
    std::vector<byte_buffer> bufs(300);
    for (size_t n = 0; n < 5000; ++n)
      for (size_t i = 0; i < bufs.size(); i += 1 + n % 7)
        bufs[i].push_back(static_cast<uint8_t>(i * 31 + bufs[i].size()));
    for (size_t i = 0; i < bufs.size(); ++i) {
      CHECK(bufs[i].capacity() == stream_capacity(bufs[i].capacity()));
      bool same = true;
      for (size_t k = 0; k < bufs[i].size(); ++k)
        same = same && bufs[i].data()[k] == static_cast<uint8_t>(i * 31 + k);
      CHECK(same);
    }
    // Half of them freed, the pool's empty pages handed back: the others
    // keep their bytes, and slots in released pages work again.
    for (size_t i = 1; i < bufs.size(); i += 2)
      bufs[i] = byte_buffer{};
    stream_pool_trim();
    for (size_t i = 1; i < bufs.size(); i += 2)
      for (size_t n = 0; n < 700; ++n)
        bufs[i].push_back(static_cast<uint8_t>(i * 31 + n));
    for (size_t i = 0; i < bufs.size(); ++i) {
      bool same = true;
      for (size_t k = 0; k < bufs[i].size(); ++k)
        same = same && bufs[i].data()[k] == static_cast<uint8_t>(i * 31 + k);
      CHECK(same);
    }
    auto during = stream_pool_usage();
    CHECK(during.used_bytes > before.used_bytes);
    CHECK(during.system_bytes >= during.used_bytes);
    // Copies are exact-size slots of their own.
    byte_buffer copy = bufs[0];
    CHECK(copy == bufs[0]);
    CHECK(copy.capacity() == stream_capacity(copy.size()));
    for (size_t i = 0; i < bufs.size(); i += 2) {
      bufs[i].shrink_to_fit();
      CHECK(bufs[i].capacity() == stream_capacity(bufs[i].size()));
    }
  }
  // Everything freed: the bytes in use are back, and at most one spare
  // slab per size class is kept from the system.
  auto after = stream_pool_usage();
  CHECK(after.used_bytes == before.used_bytes);
  CHECK(after.system_bytes <= before.system_bytes + 88 * 65536);
}

}
