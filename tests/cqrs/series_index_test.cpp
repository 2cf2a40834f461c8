// The node's series index (cqrs/series_index.hpp): attach/detach by token,
// add/remove only for attached partitions, and match() answering what the
// partitions' own `series` reads answer, kept by the stores' series handler
// through new series and eviction.
#include "cqrs/series_index.hpp"
#include "cqrs/series_store.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>

using namespace cairn::cqrs;

namespace {

constexpr millis now = 1'764'190'000'000;

std::string key(const std::string& metric, std::vector<tag> tags) {
  return make_series_key(metric, std::move(tags));
}

/// What the stores' series reads list for `q`, merged and sorted (at most
/// `q.limit + 1`, as the renderer needs).
std::vector<std::string> stores_answer(const std::vector<series_store>& stores,
                                       const series_spec& q) {
  series_partial merged;
  for (auto& s : stores) {
    series_partial part;
    s.series(q, part);
    merged.merge(std::move(part));
  }
  std::sort(merged.keys.begin(), merged.keys.end());
  if (merged.keys.size() > q.limit + 1)
    merged.keys.resize(q.limit + 1);
  return merged.keys;
}

} // namespace

TEST_SUITE("cqrs.series_index") {

TEST_CASE("only attached partitions are listed and covered") {
  series_index index{3};
  index.add(0, key("m", {{"host", "a"}}));  // not attached: ignored
  CHECK(index.size() == 0);
  auto t0 = index.attach(0, {key("m", {{"host", "a"}}), key("m", {{"host", "b"}})});
  auto t1 = index.attach(1, {key("m", {{"host", "c"}}), key("n", {{"host", "a"}})});
  CHECK(t0 != 0);
  CHECK(t1 != t0);
  CHECK(index.size() == 4);
  std::vector<std::string> out;
  auto covered = index.match("m", {}, 100, out);
  CHECK(covered == std::vector<bool>{true, true, false});
  CHECK(out == std::vector<std::string>{key("m", {{"host", "a"}}), key("m", {{"host", "b"}}),
                                        key("m", {{"host", "c"}})});
  // New series and evicted ones of attached partitions.
  index.add(1, key("m", {{"host", "d"}, {"region", "eu"}}));
  index.remove(0, key("m", {{"host", "a"}}));
  index.remove(1, key("m", {{"host", "b"}}));  // not partition 1's: kept
  out.clear();
  (void) index.match("m", {{"region", "eu"}}, 100, out);
  CHECK(out == std::vector<std::string>{key("m", {{"host", "d"}, {"region", "eu"}})});
  out.clear();
  (void) index.match("m", {}, 2, out);  // the smallest `limit`
  CHECK(out == std::vector<std::string>{key("m", {{"host", "b"}}), key("m", {{"host", "c"}})});
  out.clear();
  (void) index.match("", {{"host", "a"}}, 100, out);  // every metric
  CHECK(out == std::vector<std::string>{key("n", {{"host", "a"}})});
  // A detach with an old token does nothing; the current one drops the
  // partition's series and its coverage.
  auto t0b = index.attach(0, {key("m", {{"host", "z"}})});
  index.detach(0, t0);
  out.clear();
  CHECK(index.match("m", {}, 100, out)[0]);
  CHECK(out.front() == key("m", {{"host", "c"}}));
  index.detach(0, t0b);
  out.clear();
  covered = index.match("m", {}, 100, out);
  CHECK(covered == std::vector<bool>{false, true, false});
  CHECK(out == std::vector<std::string>{key("m", {{"host", "c"}}),
                                        key("m", {{"host", "d"}, {"region", "eu"}})});
  index.add(0, key("m", {{"host", "y"}}));  // detached: ignored again
  CHECK(index.size() == 3);
  // Out of range partitions are ignored.
  CHECK(index.attach(7, {key("m", {})}) == 0);
  index.add(7, key("m", {}));
  CHECK(index.size() == 3);
}

TEST_CASE("the index answers what the stores answer, through new series and eviction") {
  auto tiers = tier_set::parse({"1s:15m", "1m:2d"});
  constexpr uint32_t partitions = 4;
  series_index index{partitions};
  std::vector<series_store> stores;
  for (uint32_t p = 0; p < partitions; ++p)
    stores.emplace_back(tiers, ddsketch_mapping{0.01});
  std::mt19937_64 rng{3};
  std::uniform_int_distribution<int> pick{0, 999};
  auto fill = [&](size_t events, millis ts) {
    for (size_t i = 0; i < events; ++i) {
      std::vector<tag> tags{{"host", "h" + std::to_string(pick(rng) % 40)}};
      if (pick(rng) < 700)
        tags.emplace_back("region", pick(rng) < 500 ? "eu" : "us");
      auto k = key(pick(rng) < 800 ? "m" : "n", tags);
      stores[series_hash(k) % partitions].apply(k, ts, 1);
    }
  };
  // Series from before the attach (as recovered), then the handler.
  fill(300, now - 10 * 60000);
  for (uint32_t p = 0; p < partitions; ++p) {
    std::vector<std::string> all;
    stores[p].for_each_key([&](std::string_view k) { all.emplace_back(k); });
    (void) index.attach(p, all);
    stores[p].on_series([&index, p](std::string_view k, uint64_t, bool added) {
      if (added)
        index.add(p, k);
      else
        index.remove(p, k);
    });
  }
  // Later series, newer than the first ones (eviction below drops those).
  fill(300, now);
  auto compare = [&] {
    size_t listed = 0;
    for (auto* metric : {"m", "n", "", "absent"})
      for (auto where : {std::vector<tag>{}, std::vector<tag>{{"region", "eu"}},
                         std::vector<tag>{{"host", "h7"}},
                         std::vector<tag>{{"host", "h7"}, {"region", "us"}},
                         // keys before, between and after the series' ones,
                         // a value that is a prefix of others, an empty one
                         std::vector<tag>{{"dc", "x"}}, std::vector<tag>{{"k", "v"}},
                         std::vector<tag>{{"host", "h3"}},
                         std::vector<tag>{{"host", "h3"}, {"zone", "a"}},
                         std::vector<tag>{{"region", ""}}})
        for (size_t limit : {size_t{3}, size_t{10000}}) {
          CAPTURE(metric);
          CAPTURE(where.size());
          CAPTURE(limit);
          series_spec q{metric, where, limit};
          std::vector<std::string> got;
          auto covered = index.match(q.metric, q.where, q.limit + 1, got);
          CHECK(std::all_of(covered.begin(), covered.end(), [](bool c) { return c; }));
          CHECK(got == stores_answer(stores, q));
          listed += got.size();
        }
    return listed;
  };
  CHECK(compare() > 100);
  size_t total = 0;
  for (auto& s : stores)
    total += s.series_count();
  CHECK(index.size() == total);
  auto before = total;
  // Eviction (the 1 m tier keeps 2 days): far enough ahead, only the
  // later series have buckets left... and then none.
  for (auto& s : stores)
    (void) s.evict(now + 2 * 86400000LL - 5 * 60000);
  total = 0;
  for (auto& s : stores)
    total += s.series_count();
  CHECK(index.size() == total);
  CHECK(total < before);
  CHECK(total > 0);
  (void) compare();
  for (auto& s : stores)
    (void) s.evict(now + 3 * 86400000LL);
  CHECK(index.size() == 0);
}

} // TEST_SUITE
