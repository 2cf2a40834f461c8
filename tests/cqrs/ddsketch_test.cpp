#include "cqrs/ddsketch.hpp"

#include <doctest/doctest.h>

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

}
