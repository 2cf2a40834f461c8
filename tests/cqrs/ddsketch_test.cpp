#include "cqrs/ddsketch.hpp"

#include <doctest/doctest.h>

#include <map>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

using namespace cairn::cqrs;

namespace {

/// Exact lower-rank quantile: the value of rank floor(q * (n - 1)).
double exact_quantile(std::vector<double> sorted, double q) {
  return sorted[static_cast<size_t>(std::floor(q * (sorted.size() - 1)))];
}

void check_quantiles(const std::vector<double>& values, double accuracy) {
  ddsketch_mapping m{accuracy};
  ddsketch s;
  for (auto v : values)
    s.add(v, m);
  REQUIRE(s.count() == values.size());
  auto sorted = values;
  std::sort(sorted.begin(), sorted.end());
  for (double q : {0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0}) {
    auto expected = exact_quantile(sorted, q);
    auto got = s.quantile(q, m);
    INFO("q=" << q << " accuracy=" << accuracy << " expected=" << expected
              << " got=" << got);
    CHECK(std::fabs(got - expected) <= accuracy * std::fabs(expected) * (1 + 1e-9));
  }
}

std::vector<double> generate(size_t n, std::function<double()> next) {
  std::vector<double> out(n);
  for (auto& v : out)
    v = next();
  return out;
}

} // namespace

TEST_SUITE("cqrs.ddsketch") {

TEST_CASE("quantiles are within the relative accuracy") {
  std::mt19937_64 rng{42};
  std::uniform_real_distribution<double> uniform{0, 1000};
  std::lognormal_distribution<double> lognormal{0, 2};
  std::uniform_real_distribution<double> symmetric{-100, 100};
  std::uniform_int_distribution<int> pick{0, 9};
  for (double accuracy : {0.001, 0.01, 0.02, 0.05}) {
    check_quantiles(generate(20000, [&] { return uniform(rng); }), accuracy);
    check_quantiles(generate(20000, [&] { return lognormal(rng); }), accuracy);
    check_quantiles(generate(20000, [&] {
                      return pick(rng) == 0 ? 0.0 : symmetric(rng);
                    }),
                    accuracy);
    check_quantiles({-3.5, 0, 12.25}, accuracy);
    check_quantiles({42}, accuracy);
  }
}

TEST_CASE("empty sketch and bad q give NaN") {
  ddsketch_mapping m;
  ddsketch s;
  CHECK(std::isnan(s.quantile(0.5, m)));
  s.add(1, m);
  CHECK(std::isnan(s.quantile(1.5, m)));
  CHECK(s.quantile(0.5, m) == doctest::Approx(1).epsilon(0.01));
}

TEST_CASE("merge equals the sketch of the union") {
  ddsketch_mapping m;
  std::mt19937_64 rng{7};
  std::lognormal_distribution<double> dist{1, 1.5};
  ddsketch a, b, all;
  for (int i = 0; i < 5000; ++i) {
    double v = dist(rng) * (i % 5 == 0 ? -1 : 1);
    (i % 2 ? a : b).add(v, m);
    all.add(v, m);
  }
  auto merged = a;
  merged.merge(b);
  CHECK(merged == all);
  CHECK(merged.count() == 5000);
  // sparse + sparse, sparse + dense, dense + sparse
  ddsketch small;
  small.add(3, m);
  small.add(-4, m);
  auto x = small;
  x.merge(all);
  auto y = all;
  y.merge(small);
  CHECK(x == y);
  auto z = small;
  z.merge(small);
  CHECK(z.count() == 4);
}

TEST_CASE("encode/decode round trip and garbage rejection") {
  ddsketch_mapping m;
  std::mt19937_64 rng{3};
  std::normal_distribution<double> dist{0, 1000};
  for (size_t n : {0, 1, 3, 100, 10000}) {
    ddsketch s;
    for (size_t i = 0; i < n; ++i)
      s.add(i % 17 == 0 ? 0 : dist(rng), m);
    std::string buf;
    s.encode(buf);
    buf += "tail";
    std::string_view in = buf;
    ddsketch d;
    REQUIRE(d.decode(in));
    CHECK(in == "tail");
    CHECK(d == s);
    if (n > 0)
      CHECK(d.quantile(0.5, m) == s.quantile(0.5, m));
    // Every truncation fails cleanly.
    for (size_t cut = 0; cut + 4 < buf.size(); cut += std::max<size_t>(1, buf.size() / 50)) {
      std::string_view part{buf.data(), cut};
      ddsketch g;
      if (cut < buf.size() - 4)
        CHECK_FALSE(g.decode(part));
    }
  }
  std::mt19937 noise{1};
  for (int i = 0; i < 2000; ++i) {
    std::string garbage(noise() % 64, '\0');
    for (auto& c : garbage)
      c = static_cast<char>(noise());
    std::string_view in = garbage;
    ddsketch g;
    (void) g.decode(in); // must not crash or allocate absurdly
  }
}

TEST_CASE("a store's first counts live inside it; copies and moves keep "
          "every count across the inline and heap forms") {
  ddsketch::store one;
  one.add(7, 1);
  CHECK(one.memory_usage() == 0);  // one one-byte bin: inline
  one.add(7, 100000);               // widened to 4 bytes: still inline
  CHECK(one.memory_usage() == 0);
  ddsketch::store wide;
  wide.add(3, uint64_t{1} << 40);  // one 8-byte count: inline
  CHECK(wide.memory_usage() == 0);
  // Grows bin by bin past the 8 inline bytes; at every size a copy and a
  // move (into fresh stores and over stores of the other form) agree.
  ddsketch::store grow;
  std::map<int32_t, uint64_t> model;
  auto bins_of = [](const ddsketch::store& st) {
    std::map<int32_t, uint64_t> out;
    st.for_each([&](int32_t i, uint64_t n) { out[i] = n; });
    return out;
  };
  for (int32_t i = 0; i < 24; ++i) {
    uint64_t n = 1 + static_cast<uint64_t>(i) * (i % 3 == 0 ? 300 : 1);
    grow.add(i, n);
    model[i] += n;
    REQUIRE(bins_of(grow) == model);
    ddsketch::store copy{grow};
    CHECK(bins_of(copy) == model);
    CHECK(copy == grow);
    ddsketch::store over_small = one;
    over_small = grow;
    CHECK(bins_of(over_small) == model);
    ddsketch::store over_big = grow;
    over_big = one;  // heap-backed (once grown) replaced by an inline one
    CHECK(bins_of(over_big) == bins_of(one));
    ddsketch::store moved{std::move(copy)};
    CHECK(bins_of(moved) == model);
    ddsketch::store moved_over = one;
    moved_over = std::move(moved);
    CHECK(bins_of(moved_over) == model);
    CHECK(moved_over.total() == grow.total());
  }
  CHECK(grow.memory_usage() > 0);  // 24 bins of 2 bytes: on the heap
  // clear() keeps the capacity and a re-grown store reuses it.
  grow.clear();
  CHECK(grow.empty());
  grow.add(5, 2);
  CHECK(bins_of(grow) == std::map<int32_t, uint64_t>{{5, 2}});
}

TEST_CASE("a small sketch is sparse and cheap; the dense switch keeps counts") {
  ddsketch_mapping m;
  ddsketch s;
  s.add(1, m);
  s.add(2, m);
  s.add(3, m);
  CHECK(s.memory_usage() <= 64);
  ddsketch::store st;
  for (int i = 0; i < 1000; ++i)
    st.add(i % 300, 1 + i % 3);
  uint64_t total = 0, bins = 0;
  st.for_each([&](int32_t i, uint64_t n) {
    CHECK(i >= 0);
    CHECK(i < 300);
    total += n;
    ++bins;
  });
  CHECK(bins == 300);
  CHECK(total == st.total());
  uint64_t expected = 0;
  for (int i = 0; i < 1000; ++i)
    expected += 1 + i % 3;
  CHECK(total == expected);
  CHECK(st.memory_usage() < 300 * 16); // dense: 8 bytes per bin
  // Equality is by content, whatever the form.
  ddsketch::store sparse, dense;
  for (int i = 0; i < 200; ++i)
    dense.add(i);
  for (int i = 0; i < 200; ++i) {
    ddsketch::store one;
    one.add(i);
    sparse.merge(one);
  }
  CHECK(sparse == dense);
  // Extreme spreads stay correct (no giant dense arrays).
  ddsketch wide;
  for (double v : {1e-9, 1e-5, 1.0, 1e10, 1e100, 1e300})
    for (int i = 0; i < 20; ++i)
      wide.add(v * (1 + i * 0.1), m);
  CHECK(wide.memory_usage() < 1 << 20);
  CHECK(wide.quantile(1, m) == doctest::Approx(2.9e300).epsilon(0.011));
}


TEST_CASE("randomized: adds, merges, form switches and round trips agree") {
  // A stand-in for a fuzzer: stores built in random orders from random
  // index clouds (narrow, wide, negative, extreme) must hold exactly the
  // counts of a std::map model, whatever form (sparse/dense) they are in.
  std::mt19937_64 rng{20261127};
  auto cloud = [&](int kind) -> int32_t {
    switch (kind) {
      case 0: return static_cast<int32_t>(rng() % 64);            // narrow
      case 1: return static_cast<int32_t>(rng() % 5000) - 2500;   // wide
      case 2: return static_cast<int32_t>(rng() % 200) - 40000;   // far low
      case 3: return static_cast<int32_t>(rng() % 200) + 40000;   // far high
      default: return static_cast<int32_t>(rng());                // anywhere
    }
  };
  for (int round = 0; round < 300; ++round) {
    std::map<int32_t, uint64_t> model;
    ddsketch::store a;
    ddsketch::store b;
    auto adds = 1 + rng() % 400;
    for (uint64_t k = 0; k < adds; ++k) {
      auto kind = static_cast<int>(rng() % (round % 5 + 1));
      auto idx = cloud(kind);
      auto n = 1 + rng() % 3;
      (rng() % 2 ? a : b).add(idx, n);
      model[idx] += n;
    }
    a.merge(b);
    std::map<int32_t, uint64_t> got;
    a.for_each([&](int32_t i, uint64_t n) { got[i] += n; });
    REQUIRE(got == model);
    uint64_t total = 0;
    for (auto& [i, n] : model)
      total += n;
    CHECK(a.total() == total);
  }
  // Whole sketches: random finite values of every magnitude and sign.
  ddsketch_mapping m{0.02};
  for (int round = 0; round < 50; ++round) {
    ddsketch x;
    ddsketch y;
    std::vector<double> values;
    for (int k = 0; k < 500; ++k) {
      double mag = std::pow(10.0, static_cast<double>(rng() % 600) - 300.0);
      double v = (rng() % 3 == 0 ? -1.0 : 1.0) * mag
                 * (1.0 + static_cast<double>(rng() % 1000) / 1000.0);
      if (rng() % 50 == 0)
        v = 0.0;
      if (rng() % 100 == 0)
        v = std::numeric_limits<double>::denorm_min();
      values.push_back(v);
      (k % 2 ? x : y).add(v, m);
    }
    x.merge(y);
    CHECK(x.count() == values.size());
    std::string bytes;
    x.encode(bytes);
    std::string_view in{bytes};
    ddsketch back;
    REQUIRE(back.decode(in));
    CHECK(back.count() == x.count());
    // By design |v| < min_indexable (1e-9) counts as zero.
    for (auto& v : values)
      if (std::fabs(v) < ddsketch_mapping::min_indexable())
        v = 0;
    std::sort(values.begin(), values.end());
    for (double q : {0.0, 0.25, 0.5, 0.75, 1.0}) {
      CHECK(back.quantile(q, m) == x.quantile(q, m));
      auto expected = exact_quantile(values, q);
      CHECK(std::fabs(x.quantile(q, m) - expected)
            <= 0.02 * std::fabs(expected) * (1 + 1e-9));
    }
  }
}

TEST_CASE("dense counts widen from one byte to eight and keep every count") {
  ddsketch a;
  std::map<int32_t, uint64_t> model;
  for (int32_t i = 0; i < 100; ++i) {  // dense: 100 bins over a span of 100
    a.add_bin(false, i, 1);
    model[i] += 1;
  }
  a.add_bin(false, 50, (uint64_t{1} << 32));  // past 32 bits
  model[50] += uint64_t{1} << 32;
  a.add_bin(false, 51, 0xffffffffu);
  model[51] += 0xffffffffu;
  a.add_bin(false, 200, 7);
  model[200] += 7;
  std::map<int32_t, uint64_t> got;
  a.positive().for_each([&](int32_t i, uint64_t n) { got[i] += n; });
  CHECK(got == model);
  CHECK(a.count() == 100 + (uint64_t{1} << 32) + 0xffffffffu + 7);
  // Merging a dense sketch into it keeps every count.
  ddsketch b;
  for (int32_t i = 0; i < 100; ++i)
    b.add_bin(false, i, 3);
  a.merge(b);
  for (int32_t i = 0; i < 100; ++i)
    model[i] += 3;
  got.clear();
  a.positive().for_each([&](int32_t i, uint64_t n) { got[i] += n; });
  CHECK(got == model);
}


TEST_CASE("dense widths: every boundary, merges of mixed widths, growing ranges") {
  for (uint64_t big : {uint64_t{255}, uint64_t{256}, uint64_t{65535},
                       uint64_t{65536}, uint64_t{0xffffffff},
                       uint64_t{1} << 32, uint64_t{1} << 53}) {
    ddsketch::store a;
    std::map<int32_t, uint64_t> model;
    for (int32_t i = -20; i < 20; ++i) {
      a.add(i, 1);
      model[i] += 1;
    }
    a.add(3, big - 1);  // bin 3 reaches exactly `big`
    model[3] += big - 1;
    ddsketch::store b;
    for (int32_t i = 10; i < 60; ++i) {
      b.add(i, 2);
      model[i] += 2;
    }
    a.merge(b);
    b.merge(a);  // the narrow one absorbs the wide one, too
    std::map<int32_t, uint64_t> got;
    a.for_each([&](int32_t i, uint64_t n) { got[i] += n; });
    CHECK(got == model);
    uint64_t total = 0;
    for (auto& [i, n] : model)
      total += n;
    CHECK(a.total() == total);
    CHECK(a.bins() == model.size());
    got.clear();
    b.for_each([&](int32_t i, uint64_t n) { got[i] += n; });
    auto expect_b = model;
    for (int32_t i = 10; i < 60; ++i)
      expect_b[i] += 2;
    CHECK(got == expect_b);
    // Rank walks see the wide bin.
    CHECK(a.index_of_rank(a.total() - 1) == 59);
    CHECK(a.index_of_rank(25) == 3);
  }
  // One byte per bin while counts are small: an hour of one series.
  ddsketch_mapping m;
  ddsketch hour;
  std::mt19937_64 rng{7};
  std::lognormal_distribution<double> v{3.0, 0.8};
  for (int i = 0; i < 3600; ++i)
    hour.add(std::max(1.0, std::round(v(rng))), m);
  CHECK(hour.memory_usage() < 600);
  // A steadily rising value does not copy the array per new bin, and a
  // sparse cloud stays sparse (no giant array).
  ddsketch::store rising;
  for (int32_t i = 0; i < 20000; ++i)
    rising.add(i);
  CHECK(rising.total() == 20000);
  CHECK(rising.bins() == 20000);
  CHECK(rising.memory_usage() < 20000 * 2);
  ddsketch::store cloud;
  for (int32_t i = 0; i < 50; ++i)
    cloud.add(i * 100000);
  CHECK(cloud.bins() == 50);
  CHECK(cloud.memory_usage() <= 64 * 16);
}


TEST_CASE("index_of_rank finds every rank in dense and sparse stores") {
  // Against a walk over for_each: counts of every width (1, 2, 4 and 8
  // bytes), runs of empty bins longer and shorter than a word, both forms.
  std::mt19937_64 rng{41};
  size_t checked = 0;
  for (int round = 0; round < 400; ++round) {
    ddsketch::store st;
    uint64_t big = round % 4 == 0 ? 1 : round % 4 == 1 ? 300 : round % 4 == 2 ? 70000 : 5'000'000'000ULL;
    int spread = 1 + static_cast<int>(rng() % 400);
    int bins = 1 + static_cast<int>(rng() % 40);
    for (int b = 0; b < bins; ++b)
      st.add(static_cast<int32_t>(rng() % spread) - 100,
             1 + (rng() % 3 == 0 ? rng() % big : 0));
    std::vector<std::pair<int32_t, uint64_t>> all;
    st.for_each([&](int32_t i, uint64_t n) { all.emplace_back(i, n); });
    auto ranks = std::min<uint64_t>(st.total(), 300);
    for (uint64_t k = 0; k < ranks; ++k) {
      // the lowest, the highest and random ranks
      uint64_t r = k < 100 ? k : k < 200 ? st.total() - 1 - (k - 100) : rng() % st.total();
      if (r >= st.total())
        continue;
      uint64_t seen = 0;
      int32_t expected = 0;
      for (auto& [i, n] : all) {
        seen += n;
        if (seen > r) {
          expected = i;
          break;
        }
      }
      REQUIRE(st.index_of_rank(r) == expected);
    }
    ++checked;
  }
  CHECK(checked == 400);
}

}
