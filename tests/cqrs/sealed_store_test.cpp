// The compact store against the plain bucket model: a series_store whose
// clock is never set keeps every bucket as a mutable struct (exactly the
// store before sealed blocks), so it is the model. The same events, with
// random lateness, go to stores that seal (short horizons, seal passes,
// evictions, snapshots in between); every query must give identical
// partials, bucket for bucket and bin for bin.
#include "cqrs/series_store.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <map>
#include <random>
#include <set>
#include <tuple>

using namespace cairn::cqrs;

namespace {

constexpr millis t0 = 1'764'190'000'000;

tier_set test_tiers() { return tier_set::parse({"1s:15m", "1m:2d", "1h:90d"}); }

bool same_bits(const std::vector<double>& x, const std::vector<double>& y) {
  return x.size() == y.size()
         && std::equal(x.begin(), x.end(), y.begin(), [](double a, double b) {
              return std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b);
            });
}

/// Same groups, points (buckets, sketches bin for bin) and final points
/// (values bit for bit).
bool same_partial(const query_partial& x, const query_partial& y) {
  if (x.groups.size() != y.groups.size() || x.collided != y.collided)
    return false;
  for (auto& [k, g] : x.groups) {
    auto it = y.groups.find(k);
    if (it == y.groups.end() || it->second.values != g.values
        || it->second.points != g.points || it->second.final != g.final
        || it->second.finals.size() != g.finals.size()
        || !same_bits(it->second.final_values, g.final_values))
      return false;
    for (size_t i = 0; i < g.finals.size(); ++i)
      if (g.finals[i].t != it->second.finals[i].t
          || g.finals[i].count != it->second.finals[i].count)
        return false;
  }
  return true;
}

struct cluster {
  std::vector<series_store> stores;
  explicit cluster(size_t partitions, millis horizon, bool seal) {
    for (size_t p = 0; p < partitions; ++p) {
      stores.emplace_back(test_tiers(), ddsketch_mapping{0.01});
      stores.back().seal_after(horizon);
    }
    sealing = seal;
  }
  bool sealing;

  void apply(const event_batch& batch, millis clock) {
    std::vector<event_batch> parts;
    split_by_partition(batch, static_cast<uint32_t>(stores.size()), parts);
    for (size_t p = 0; p < stores.size(); ++p) {
      if (sealing)
        stores[p].set_clock(clock);
      stores[p].apply(parts[p]);
    }
  }

  query_partial query(const query_spec& q) const {
    query_partial merged;
    for (auto& s : stores) {
      query_partial part;
      s.query(q, part);
      merged.merge(std::move(part));
    }
    return merged;
  }

  topk_partial topk(const topk_spec& q) const {
    topk_partial merged;
    for (auto& s : stores) {
      topk_partial part;
      s.topk(q, part);
      merged.merge(std::move(part));
    }
    return merged;
  }
};

} // namespace

TEST_SUITE("cqrs.sealed_store") {

TEST_CASE("sealed + open + late data equal the plain bucket model exactly") {
  for (uint64_t seed : {1, 2, 3}) {
    CAPTURE(seed);
    std::mt19937_64 rng{seed};
    std::uniform_int_distribution<int> pick{0, 999};
    std::lognormal_distribution<double> val{2, 1};
    cluster model{3, 0, false};
    cluster sealed{3, 2000, true};
    cluster eager{3, 0, true};  // seals as soon as a window ends
    std::vector<std::string> keys;
    for (int i = 0; i < 12; ++i)
      keys.push_back(make_series_key(i % 2 ? "m.a" : "m.b",
                                     {{"host", "h" + std::to_string(i % 4)},
                                      {"shard", std::to_string(i % 3)}}));
    millis clock = t0 - 40 * 60'000;
    auto tiers = test_tiers();
    uint64_t corrections = 0;
    sealed.stores[0].on_closed([&](std::vector<closed_bucket>&& batch) {
      for (auto& c : batch)
        corrections += c.correction ? 1 : 0;
    });
    for (int round = 0; round < 400; ++round) {
      clock += 100 + pick(rng) * 10;
      event_batch batch;
      int n = 1 + pick(rng) % 60;
      for (int k = 0; k < n; ++k) {
        auto& key = keys[static_cast<size_t>(pick(rng)) % keys.size()];
        // Mostly on time, some seconds late, a few minutes late.
        millis late = pick(rng) < 850 ? pick(rng) % 500
                      : pick(rng) < 800 ? pick(rng) * 20
                                        : pick(rng) * 600;
        double v = pick(rng) < 300 ? std::round(val(rng)) : val(rng);
        if (pick(rng) < 50)
          v = -v;
        if (pick(rng) < 20)
          v = 0;
        batch.add(key, series_hash(key), clock - late, v);
      }
      model.apply(batch, clock);
      sealed.apply(batch, clock);
      eager.apply(batch, clock);
      if (round % 7 == 0)
        for (auto* c : {&sealed, &eager})
          for (auto& s : c->stores)
            (void) s.seal(clock);
      if (round % 50 == 49)
        for (auto* c : {&model, &sealed, &eager})
          for (auto& s : c->stores)
            (void) s.evict(clock);
      if (round % 97 == 0) {
        // A snapshot round trip in between keeps everything.
        for (auto& s : sealed.stores) {
          std::string buf;
          s.encode(buf);
          series_store back{test_tiers(), ddsketch_mapping{0.01}};
          back.seal_after(2000);
          REQUIRE(back.decode(buf));
          REQUIRE(back == s);
          back.set_clock(clock);
          s = std::move(back);
        }
        sealed.stores[0].on_closed([&](std::vector<closed_bucket>&& batch) {
          for (auto& c : batch)
            corrections += c.correction ? 1 : 0;
        });
      }
      if (round % 10 != 9)
        continue;
      for (size_t p = 0; p < 3; ++p) {
        REQUIRE(sealed.stores[p] == model.stores[p]);
        REQUIRE(eager.stores[p] == model.stores[p]);
      }
      // Random queries over every tier, steps and groupings.
      for (int qn = 0; qn < 8; ++qn) {
        query_spec q;
        q.metric = pick(rng) % 2 ? "m.a" : "m.b";
        q.tier = static_cast<size_t>(pick(rng)) % tiers.size();
        auto res = tiers[q.tier].resolution;
        q.step = res * (1 + pick(rng) % 5);
        q.to = align_down(clock + res, res);
        q.from = q.to - res * (1 + pick(rng) % 1200);
        // Ranges that end mid-history too, and starts between bucket
        // starts (blocks are entered by seeking to a restart point).
        if (pick(rng) % 3 == 0)
          q.to = q.from + res * (1 + pick(rng) % 600);
        if (pick(rng) % 3 == 0)
          q.from -= pick(rng) % res;
        // Quantiles (sketches merged, or read from the top of long stores
        // when finalised), finals on or off.
        switch (pick(rng) % 3) {
          case 0:
            break;
          case 1:
            q.aggs = {{agg_kind::count}, {agg_kind::quantile, 0.99},
                      {agg_kind::sum}};
            break;
          default:
            q.aggs = {{agg_kind::quantile, 0.5}, {agg_kind::quantile, 0.01},
                      {agg_kind::max}};
        }
        q.finals = pick(rng) % 2 == 0;
        if (pick(rng) % 2)
          q.group_by = {"host"};
        if (pick(rng) % 3 == 0)
          q.where = {{"shard", std::to_string(pick(rng) % 3)}};
        if (q.finals && pick(rng) % 2) {
          // A group per series (host and shard spell the key): points
          // finalised in the store, of one bucket each at step = res.
          q.group_by = {"host"};
          q.where = {{"shard", std::to_string(pick(rng) % 3)}};
          if (pick(rng) % 2)
            q.step = res;
        }
        auto expected = model.query(q);
        CHECK(same_partial(sealed.query(q), expected));
        CHECK(same_partial(eager.query(q), expected));
        topk_spec tq;
        tq.metric = q.metric;
        tq.by = "host";
        tq.from = q.from;
        tq.to = q.to;
        tq.tier = q.tier;
        CHECK(sealed.topk(tq).values == model.topk(tq).values);
      }
    }
    // Something was actually sealed, and late events re-closed buckets.
    uint64_t sealed_buckets = 0;
    for (auto& s : eager.stores) {
      auto mem = s.memory();
      for (auto n : mem.sealed_buckets)
        sealed_buckets += n;
    }
    CHECK(sealed_buckets > 1000);
    CHECK(corrections > 0);
  }
}

TEST_CASE("closed buckets: each published once, late re-closes as corrections") {
  std::mt19937_64 rng{42};
  std::uniform_int_distribution<int> pick{0, 999};
  series_store model{test_tiers(), ddsketch_mapping{0.01}};
  series_store s{test_tiers(), ddsketch_mapping{0.01}};
  s.seal_after(1000);
  using id = std::tuple<std::string, uint32_t, millis>;
  std::map<id, bucket> latest;       // last published value
  std::map<id, int> firsts;          // publications with correction = false
  std::map<id, int> corrections;
  s.on_closed([&](std::vector<closed_bucket>&& batch) {
    for (auto& c : batch) {
      id k{c.key, c.tier, c.start};
      if (c.correction) {
        CHECK(firsts.count(k) == 1);  // a correction follows a first close
        ++corrections[k];
      } else {
        ++firsts[k];
      }
      latest[k] = c.value;
    }
  });
  millis clock = t0;
  for (int i = 0; i < 3000; ++i) {
    clock += pick(rng);
    auto key = make_series_key("m", {{"i", std::to_string(pick(rng) % 5)}});
    millis late = pick(rng) < 900 ? 0 : pick(rng) * 30;
    event_batch b;
    b.add(key, series_hash(key), clock - late, pick(rng) * 0.5);
    s.set_clock(clock);
    s.apply(b);
    model.apply(b);
    if (i % 100 == 0)
      (void) s.seal(clock);
  }
  // Everything still open is sealed once the clock passes every window and
  // a pass found it quiet (the first pass only notes that it was written).
  (void) s.seal(clock + 3 * 3'600'000);
  (void) s.seal(clock + 3 * 3'600'000);
  size_t total = 0;
  for (auto& [k, n] : firsts) {
    CHECK(n == 1);
    ++total;
  }
  CHECK(total == model.bucket_count());
  CHECK(total == s.bucket_count());
  CHECK_FALSE(corrections.empty());
  // The last publication of every bucket is the bucket as it is now.
  for (auto& [k, b] : latest) {
    auto& [key, tier, start] = k;
    query_spec q;
    q.metric = "m";
    q.tier = tier;
    q.step = test_tiers()[tier].resolution;
    q.from = start;
    q.to = start + q.step;
    std::vector<tag> tags;
    REQUIRE(decode_series_tags(key, tags));
    q.where = tags;
    q.aggs = {*parse_agg("p50")};  // the whole bucket, sketch included
    query_partial one;
    model.query(q, one);
    REQUIRE(one.groups.size() == 1);
    CHECK(one.groups.begin()->second.points.begin()->second == b);
  }
  // Nothing open is left, nothing is published twice afterwards.
  auto mem = s.memory();
  CHECK(mem.open_buckets == 0);
  auto before = firsts.size();
  (void) s.seal(clock + 4 * 3'600'000);
  CHECK(firsts.size() == before);
}

TEST_CASE("memory: sealed one-event buckets cost a few bytes") {
  series_store s{test_tiers(), ddsketch_mapping{0.01}};
  s.seal_after(2000);
  std::mt19937_64 rng{3};
  std::lognormal_distribution<double> val{3, 0.8};
  millis start = t0 - 15 * 60'000;
  for (int sec = 0; sec < 900; ++sec) {
    event_batch b;
    for (int i = 0; i < 100; ++i) {
      auto key = make_series_key("m", {{"i", std::to_string(i)}});
      b.add(key, series_hash(key), start + sec * 1000 + static_cast<millis>(rng() % 100),
            std::round(val(rng)));
    }
    s.set_clock(start + sec * 1000 + 5000);
    s.apply(b);
  }
  (void) s.seal(t0);
  (void) s.seal(t0);
  auto mem = s.memory();
  CHECK(mem.sealed_buckets[0] > 80'000);
  auto per_bucket = static_cast<double>(mem.sealed_bytes[0])
                    / static_cast<double>(mem.sealed_buckets[0]);
  MESSAGE("1 s tier, one integer event per bucket: " << per_bucket
          << " bytes per sealed bucket");
  CHECK(per_bucket < 6);
}

}

TEST_CASE("close pass: buckets published at window end + grace, once, "
          "changes as corrections") {
  series_store s{test_tiers(), ddsketch_mapping{0.01}};
  s.seal_after(2000);
  using id = std::tuple<std::string, uint32_t, millis>;
  std::map<id, int> firsts;
  std::map<id, int> corrections;
  std::map<id, bucket> latest;
  s.on_closed([&](std::vector<closed_bucket>&& batch) {
    for (auto& c : batch) {
      id k{c.key, c.tier, c.start};
      if (c.correction) {
        CHECK(firsts.count(k) == 1);
        ++corrections[k];
      } else {
        ++firsts[k];
      }
      latest[k] = c.value;
    }
  });
  auto key = make_series_key("m", {});
  auto add = [&](millis ts, double v, millis now) {
    event_batch b;
    b.add(key, series_hash(key), ts, v);
    s.set_clock(now);
    s.apply(b);
  };
  id first_second{key, 0, t0};
  add(t0 + 10, 1.0, t0 + 10);
  add(t0 + 990, 2.0, t0 + 990);
  // Window [t0, t0+1000) ends at t0+1000; with a grace of 100 ms it closes
  // at t0+1100, not before.
  CHECK(s.close(t0 + 1099, 100) == 0);
  CHECK(s.close(t0 + 1100, 100) == 1);  // the 1s bucket only
  REQUIRE(firsts.count(first_second) == 1);
  CHECK(latest[first_second].count == 2);
  CHECK(latest[first_second].sum == 3.0);
  // A second pass publishes nothing new.
  CHECK(s.close(t0 + 1500, 100) == 0);
  // A late event (before sealing) is published again as a correction.
  add(t0 + 500, 4.0, t0 + 1600);
  CHECK(s.close(t0 + 1700, 100) == 1);
  CHECK(corrections[first_second] == 1);
  CHECK(latest[first_second].count == 3);
  // Sealing a published, unchanged bucket does not publish it again.
  (void) s.seal(t0 + 4000);
  (void) s.seal(t0 + 4000);
  CHECK(firsts[first_second] == 1);
  CHECK(corrections[first_second] == 1);
  // A late event after sealing reopens it: the close pass corrects it.
  add(t0 + 700, 8.0, t0 + 4100);
  CHECK(s.close(t0 + 4200, 100) == 1);
  CHECK(corrections[first_second] == 2);
  CHECK(latest[first_second].count == 4);
  (void) s.seal(t0 + 8000);
  (void) s.seal(t0 + 8000);
  CHECK(corrections[first_second] == 2);
  // Coarser tiers close at their own window end: the 1m bucket after a
  // minute plus grace.
  id first_minute{key, 1, t0 - t0 % 60'000};
  CHECK(firsts.count(first_minute) == 0);
  (void) s.close(t0 - t0 % 60'000 + 60'100, 100);
  CHECK(firsts.count(first_minute) == 1);
  CHECK(latest[first_minute].count == 4);
}

TEST_CASE("memory: an idle tier keeps no open slots; events below the floor "
          "open no bucket") {
  series_store s{test_tiers(), ddsketch_mapping{0.01}};
  s.seal_after(2000);
  auto key = make_series_key("m", {{"i", "1"}});
  millis now = t0;
  for (int sec = 0; sec < 120; ++sec) {
    s.set_clock(now + sec * 1000);
    s.apply(key, now + sec * 1000 + 10, 1.0 * sec);
  }
  now += 120 * 1000;
  // Everything of the 1 s and 1 m tiers sealed: only the hour stays open,
  // and the emptied tiers hold no capacity (one open entry's bytes plus
  // its sketch, not 4-8 slots of 144 bytes per tier).
  (void) s.seal(now + 3'600'000);
  (void) s.seal(now + 3'600'000);
  auto mem = s.memory();
  CHECK(mem.open_buckets == 0);
  CHECK(mem.open_bytes == 0);
  // After an evict the 1 s tier's floor is 15 minutes back: an event older
  // than that (a backfill) opens a bucket in the 1 m and 1 h tiers only.
  (void) s.evict(now);
  auto buckets = s.bucket_count();
  s.apply(key, now - 20 * 60'000 + 5, 7.0);
  CHECK(s.bucket_count() == buckets + 1);  // the 1 m bucket; the hour exists
  query_spec q;
  q.metric = "m";
  q.tier = 0;
  q.from = now - 3'600'000;
  q.to = now;
  q.step = 1000;
  q.aggs = {{agg_kind::count}};
  query_partial p;
  s.query(q, p);
  for (auto& [k, g] : p.groups)
    CHECK(g.points.find(align_down(now - 20 * 60'000, 1000)) == g.points.end());
  q.tier = 1;
  q.step = 60'000;
  query_partial p1;
  s.query(q, p1);
  REQUIRE(p1.groups.size() == 1);
  auto& pts = p1.groups.begin()->second.points;
  auto it = pts.find(align_down(now - 20 * 60'000, 60'000));
  REQUIRE(it != pts.end());
  CHECK(it->second.count == 1);
}

TEST_CASE("learned lateness: after a late event, windows stay open that long, "
          "then the hold decays; answers stay exact") {
  series_store s{test_tiers(), ddsketch_mapping{0.01}};
  s.seal_after(2000);
  auto key = make_series_key("m", {});
  s.set_clock(t0 + 10);
  s.apply(key, t0 + 10, 1.0);
  (void) s.seal(t0 + 5000);
  (void) s.seal(t0 + 5000);
  auto coarse_open = s.memory().open_buckets; // the 1 m and 1 h windows
  // 39 s after its window ended, an event for the sealed second t0: it is
  // reopened, and the tier learns to hold ~40 s.
  s.set_clock(t0 + 40'000);
  s.apply(key, t0 + 20, 2.0);
  s.apply(key, t0 + 30'000, 3.0); // ended 9 s ago: past the 2 s horizon
  (void) s.seal(t0 + 40'000);
  (void) s.seal(t0 + 40'000);
  CHECK(s.memory().open_buckets == coarse_open + 2);
  // Passes without late events: the hold decays, everything seals.
  for (int pass = 0; pass < 200; ++pass)
    (void) s.seal(t0 + 40'000 + pass * 1000);
  CHECK(s.memory().open_buckets <= coarse_open);
  query_spec q;
  q.metric = "m";
  q.tier = 0;
  q.from = t0;
  q.to = t0 + 60'000;
  q.step = 1000;
  q.aggs = {{agg_kind::count}, {agg_kind::sum}};
  query_partial p;
  s.query(q, p);
  REQUIRE(p.groups.size() == 1);
  auto& pts = p.groups.begin()->second.points;
  auto first = pts.find(t0);
  REQUIRE(first != pts.end());
  CHECK(first->second.count == 2);
  CHECK(first->second.sum == 3.0);
  auto later = pts.find(t0 + 30'000);
  REQUIRE(later != pts.end());
  CHECK(later->second.count == 1);
}

TEST_CASE("learned lateness is capped: an event ten minutes late does not "
          "hold windows open for ten minutes") {
  series_store s{test_tiers(), ddsketch_mapping{0.01}};
  s.seal_after(2000);
  auto key = make_series_key("m", {});
  s.set_clock(t0 + 10);
  s.apply(key, t0 + 10, 1.0);
  (void) s.seal(t0 + 5000);
  (void) s.seal(t0 + 5000);
  millis now = t0 + 600'000;
  s.set_clock(now);
  s.apply(key, t0 + 20, 2.0);                 // 10 minutes late
  s.apply(key, now - 200'000, 3.0);           // ended ~200 s ago: past the cap
  auto before = s.memory().open_buckets;
  (void) s.seal(now);
  (void) s.seal(now);
  // Both 1 s windows are older than the cap (120 s): sealed.
  CHECK(s.memory().open_buckets <= before - 2);
}

TEST_CASE("a batch applies exactly as its events one by one (prefetched "
          "apply, docs/benchmarks.md)") {
  std::mt19937_64 rng{14};
  std::uniform_int_distribution<int> pick{0, 999};
  std::uniform_int_distribution<millis> lateness{0, 60'000};
  series_store batched{test_tiers(), ddsketch_mapping{0.01}};
  series_store single{test_tiers(), ddsketch_mapping{0.01}};
  using published = std::tuple<std::string, uint32_t, millis, bool, bucket>;
  std::vector<published> closed_batched, closed_single;
  std::vector<std::string> added_batched, added_single;
  auto record = [](std::vector<published>& out) {
    return [&out](std::vector<closed_bucket>&& batch) {
      for (auto& c : batch)
        out.emplace_back(c.key, c.tier, c.start, c.correction, c.value);
    };
  };
  auto note = [](std::vector<std::string>& out) {
    return [&out](std::string_view key, uint64_t, bool added) {
      out.push_back((added ? "+" : "-") + std::string{key});
    };
  };
  for (auto* s : {&batched, &single})
    s->seal_after(2000);
  batched.on_closed(record(closed_batched));
  single.on_closed(record(closed_single));
  batched.on_series(note(added_batched));
  single.on_series(note(added_single));
  millis clock = t0;
  for (int round = 0; round < 200; ++round) {
    clock += 250;
    event_batch b;
    // Series appear over time (new ones inside a batch), events spread
    // over the last minute, sometimes a whole minute late, values signed.
    auto live = static_cast<size_t>(20 + round * 3);
    for (int i = 0; i < 256; ++i) {
      auto key = make_series_key(
        "m", {{"s", std::to_string(static_cast<size_t>(rng()) % live)}});
      auto ts = clock - lateness(rng) - (pick(rng) < 20 ? 60'000 : 0);
      b.add(key, series_hash(key), ts, (pick(rng) - 300) * 0.25);
    }
    for (auto* s : {&batched, &single})
      s->set_clock(clock);
    batched.apply(b);
    for (auto& e : b.entries)
      single.apply(b.key(e), e.ts, e.value);
    if (round % 8 == 0) {
      CHECK(batched.seal(clock) == single.seal(clock));
      CHECK(batched.close(clock, 500) == single.close(clock, 500));
    }
    if (round % 50 == 49)
      CHECK(batched.evict(clock - 14 * 60'000)
            == single.evict(clock - 14 * 60'000));
  }
  CHECK(batched == single);
  CHECK(batched.bucket_count() == single.bucket_count());
  CHECK(closed_batched.size() > 1000);
  CHECK(closed_batched == closed_single);
  CHECK(added_batched == added_single);
}
