// Property-based tests (rapidcheck, Debian's librapidcheck-dev): the codecs,
// the sketch and the partition map hold their laws for generated inputs, and
// a failure shrinks to a minimal counterexample. Each property runs 100..300
// generated cases; the seed is printed on failure (RC_PARAMS="seed=N" replays).
#include "cqrs/ddsketch.hpp"
#include "cqrs/event_parser.hpp"
#include "cqrs/influx_parser.hpp"
#include "cqrs/journal_record.hpp"
#include "cqrs/partition_map.hpp"
#include "cqrs/series_key.hpp"

#include <doctest/doctest.h>
#include <rapidcheck.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

using namespace cairn::cqrs;

namespace {

/// A metric name of the allowed characters.
rc::Gen<std::string> gen_metric() {
  return rc::gen::nonEmpty(rc::gen::container<std::string>(
    rc::gen::element('a', 'b', 'z', 'A', '0', '9', '_', '.', ':', '/', '-')));
}

rc::Gen<std::string> gen_tag_text() {
  return rc::gen::resize(20, rc::gen::nonEmpty(rc::gen::string<std::string>()));
}

/// A batch of valid events over a few series.
event_batch gen_batch() {
  auto series = *rc::gen::inRange<size_t>(1, 6);
  std::vector<std::string> keys;
  for (size_t i = 0; i < series; ++i) {
    auto metric = *gen_metric();
    if (metric.size() > 200)
      metric.resize(200);
    auto ntags = *rc::gen::inRange<size_t>(0, 4);
    std::map<std::string, std::string> tags;
    for (size_t t = 0; t < ntags; ++t) {
      auto k = *gen_tag_text();
      auto v = *gen_tag_text();
      tags[k.substr(0, 128)] = v.substr(0, 128);
    }
    std::vector<tag> tv(tags.begin(), tags.end());
    keys.push_back(make_series_key(metric, tv));
  }
  event_batch b;
  auto n = *rc::gen::inRange<size_t>(0, 40);
  for (size_t i = 0; i < n; ++i) {
    auto& k = keys[*rc::gen::inRange<size_t>(0, keys.size())];
    auto ts = *rc::gen::arbitrary<int64_t>();
    auto value = *rc::gen::arbitrary<double>();
    b.add(k, series_hash(k), ts, value);
  }
  return b;
}

bool bit_equal(double x, double y) {
  return std::memcmp(&x, &y, sizeof(double)) == 0;
}

void check_same(const event_batch& x, const event_batch& y) {
  RC_ASSERT(x.size() == y.size());
  for (size_t i = 0; i < x.size(); ++i) {
    RC_ASSERT(x.key(x.entries[i]) == y.key(y.entries[i]));
    RC_ASSERT(x.entries[i].hash == y.entries[i].hash);
    RC_ASSERT(x.entries[i].ts == y.entries[i].ts);
    RC_ASSERT(bit_equal(x.entries[i].value, y.entries[i].value));
  }
}

} // namespace

TEST_SUITE("cqrs.properties") {
  TEST_CASE("journal records: v1 and v2 round trip, any sequence of resets") {
    CHECK(rc::check("v1 round trip", [] {
      auto b = gen_batch();
      auto at = *rc::gen::arbitrary<int64_t>();
      auto key = *rc::gen::resize(40, rc::gen::string<std::string>());
      std::string bytes;
      encode_record(at, key, b, bytes);
      journal_record r;
      RC_ASSERT(decode_record(bytes, r) == decode_result::ok);
      RC_ASSERT(r.accepted_at == at);
      RC_ASSERT(r.idempotency_key == key);
      check_same(b, r.events);
    }));
    CHECK(rc::check("v2 stream through two dictionaries", [] {
      series_dictionary enc, dec;
      auto records = *rc::gen::inRange<size_t>(1, 6);
      for (size_t i = 0; i < records; ++i) {
        auto b = gen_batch();
        bool reset = i == 0 || *rc::gen::arbitrary<bool>();
        std::string bytes;
        encode_record(int64_t(i), "", b, enc, reset, bytes);
        journal_record r;
        RC_ASSERT(decode_record(bytes, r, dec) == decode_result::ok);
        check_same(b, r.events);
        RC_ASSERT(enc.size() == dec.size());
      }
    }));
  }

  TEST_CASE("ddsketch: merge is order-free, encoding round trips, quantiles within accuracy") {
    ddsketch_mapping m{0.01};
    auto values = [] {
      return *rc::gen::container<std::vector<double>>(rc::gen::map(
        rc::gen::pair(rc::gen::inRange(-6, 7), rc::gen::inRange(1, 1000)),
        [](std::pair<int, int> p) {
          return (p.second % 3 == 0 ? -1.0 : 1.0) * std::pow(10.0, p.first)
                 * (1.0 + p.second / 1000.0);
        }));
    };
    CHECK(rc::check("merge(a, b) == merge(b, a) == adding all", [&] {
      auto xs = values();
      auto ys = values();
      ddsketch a, b, all;
      for (auto v : xs) {
        a.add(v, m);
        all.add(v, m);
      }
      for (auto v : ys) {
        b.add(v, m);
        all.add(v, m);
      }
      auto ab = a;
      ab.merge(b);
      auto ba = b;
      ba.merge(a);
      RC_ASSERT(ab.count() == all.count());
      for (double q : {0.0, 0.25, 0.5, 0.9, 0.99, 1.0}) {
        if (all.count() == 0)
          break;
        RC_ASSERT(bit_equal(ab.quantile(q, m), all.quantile(q, m)));
        RC_ASSERT(bit_equal(ba.quantile(q, m), all.quantile(q, m)));
      }
      std::string bytes;
      ab.encode(bytes);
      ddsketch back;
      std::string_view in{bytes};
      RC_ASSERT(back.decode(in));
      RC_ASSERT(in.empty());
      RC_ASSERT(back.count() == ab.count());
      if (ab.count() > 0)
        RC_ASSERT(bit_equal(back.quantile(0.5, m), ab.quantile(0.5, m)));
    }));
    CHECK(rc::check("quantile within the relative accuracy of the exact rank", [&] {
      auto xs = values();
      RC_PRE(!xs.empty());
      ddsketch s;
      for (auto v : xs)
        s.add(v, m);
      std::sort(xs.begin(), xs.end());
      for (double q : {0.0, 0.5, 0.99, 1.0}) {
        auto exact = xs[static_cast<size_t>(q * double(xs.size() - 1))];
        auto got = s.quantile(q, m);
        RC_ASSERT(std::abs(got - exact) <= 0.01 * std::abs(exact) * (1 + 1e-9));
      }
    }));
  }

  TEST_CASE("partition map: every member computes the same balanced map") {
    CHECK(rc::check("initial map", [] {
      auto n = *rc::gen::inRange<size_t>(1, 9);
      std::set<std::string> unique;
      while (unique.size() < n)
        unique.insert(*rc::gen::nonEmpty(gen_metric()));
      std::vector<std::string> names(unique.begin(), unique.end());
      auto partitions = *rc::gen::inRange<uint32_t>(uint32_t(n), 257);
      auto shuffled = *rc::gen::arbitrary<uint64_t>();
      auto other = names;
      std::rotate(other.begin(), other.begin() + long(shuffled % n), other.end());
      auto a = partition_map::initial(names, partitions);
      auto b = partition_map::initial(other, partitions);
      RC_ASSERT(a == b);
      RC_ASSERT(a.partitions() == partitions);
      std::vector<size_t> per(n);
      for (uint32_t p = 0; p < partitions; ++p) {
        RC_ASSERT(a.owner_index(p) < n);
        ++per[a.owner_index(p)];
      }
      auto [lo, hi] = std::minmax_element(per.begin(), per.end());
      RC_ASSERT(*hi - *lo <= 1);
      for (uint32_t i = 0; i < n; ++i)
        RC_ASSERT(a.owned_by(i).size() == per[i]);
    }));
  }

  TEST_CASE("influx line protocol: escaped lines parse back to their values") {
    auto escape = [](const std::string& s, std::string_view specials) {
      std::string out;
      for (char c : s) {
        if (specials.find(c) != std::string_view::npos)
          out += '\\';
        out += c;
      }
      return out;
    };
    CHECK(rc::check("generated line", [&] {
      auto measurement = *gen_metric();
      auto field = *gen_metric();
      RC_PRE(measurement.size() + field.size() < 199);
      // Tag texts without backslashes or control characters (a trailing
      // backslash would escape the separator after it).
      auto text = rc::gen::nonEmpty(rc::gen::container<std::string>(
        rc::gen::element('a', 'Z', '7', ' ', ',', '=', '"', '-', '#')));
      std::map<std::string, std::string> tags;
      auto ntags = *rc::gen::inRange(0, 4);
      for (int i = 0; i < ntags; ++i)
        tags[*text] = *text;
      auto value = *rc::gen::inRange<int64_t>(-1'000'000, 1'000'000);
      auto ts = *rc::gen::inRange<int64_t>(1'764'000'000'000, 1'764'190'000'000);
      std::string line = escape(measurement, ", ");
      for (auto& [k, v] : tags)
        line += "," + escape(k, ",= ") + "=" + escape(v, ",= ");
      line += " " + escape(field, ",= ") + "=" + std::to_string(value) + "i "
              + std::to_string(ts);
      influx_parser p;
      event_batch b;
      auto r = p.parse_line(line, 1'764'190'000'000, influx_precision::ms, b);
      RC_ASSERT(r.problems.empty());
      RC_ASSERT(b.size() == 1u);
      std::vector<tag> tv(tags.begin(), tags.end());
      RC_ASSERT(b.key(b.entries[0]) == make_series_key(measurement + "." + field, tv));
      RC_ASSERT(b.entries[0].value == double(value));
      RC_ASSERT(b.entries[0].ts == ts);
    }));
  }

  TEST_CASE("event parser: a line yields the same whatever came before it") {
    // The key cache (cqrs/key_cache.hpp) answers lines of series seen
    // before; a parser that has seen every line yields exactly what a new
    // parser yields for each one: the same kind, error and event.
    // The first `valid` choices of a field are valid and come 3 times as
    // often, so that most lines are events and the invalid ones meet them.
    auto piece = [](size_t valid, std::initializer_list<const char*> xs) {
      std::vector<std::string> choices;
      for (auto* x : xs)
        for (size_t i = 0; i < (choices.size() < valid * 3 ? 3u : 1u); ++i)
          choices.emplace_back(x);
      return rc::gen::elementOf(choices);
    };
    auto gen_line = [&] {
      auto metric = *piece(3, {R"("metric":"cpu")", R"("metric":"mem.used")",
                            R"("metric":"c\u0070u")", R"("metric":"bad metric")",
                            R"("metric":7)", R"("metric":"")"});
      auto tags = *piece(9, {"", R"("tags":{"host":"a"})", R"("tags":{"host":"b"})",
                          R"("tags":{"host":"a","dc":"x"})", R"("tags":{"dc":"x","host":"a"})",
                          R"("tags":{"dc":"x"})", R"("tags": {"host" : "a"})",
                          R"("tags":{"h\u006fst":"a"})", R"("tags":{})",
                          R"("tags":{"host":"a","host":"b"})",
                          R"("tags":{"host":1})", R"("tags":{"":"a"})", R"("tags":[])",
                          R"("tags":{"host":"a\u0000"})",
                          R"("tags":{"host":"a"},"tags":{"dc":"x"})",
                          R"("tags":{"host":"a\x"})", R"("tags":{"host":"a")"});
      auto ts = *piece(2, {"", R"("ts":1764190000000)", R"("ts":1)", R"("ts":1.5)",
                        R"("ts":"x")", R"("ts":17641900000000000000000)"});
      auto value = *piece(3, {"", R"("value":2.5)", R"("value":"x")", R"("value":1e999)",
                           R"("value":-0)"});
      auto extra = *piece(2, {"", R"("x":{"y":[1,2]})", R"("op":"stats")",
                           R"("t\u0061gs":{"host":"z"})", R"("tags":null)"});
      std::vector<std::string> fields;
      for (const auto& f : {metric, tags, ts, value, extra})
        if (!f.empty())
          fields.push_back(f);
      auto order = *rc::gen::inRange<size_t>(0, 120);
      for (size_t i = 1; i < fields.size(); ++i)
        std::swap(fields[i], fields[(order + i * 7) % (i + 1)]);
      std::string line = "{";
      for (size_t i = 0; i < fields.size(); ++i)
        line += (i ? "," : "") + fields[i];
      return line + "}";
    };
    CHECK(rc::check("warm parser == new parser, line by line", [&] {
      constexpr millis now = 1'764'190'000'000;
      // A few lines, met many times in any order: a cache entry made by one
      // line is offered to every line that shares its metric and tags.
      std::vector<std::string> pool(*rc::gen::inRange<size_t>(1, 16));
      for (auto& line : pool)
        line = gen_line();
      event_parser warm;
      auto n = *rc::gen::inRange<size_t>(1, 100);
      for (size_t i = 0; i < n; ++i) {
        const auto& line = pool[*rc::gen::inRange<size_t>(0, pool.size())];
        event_parser cold;
        event_batch a, b;
        auto x = warm.parse_line(line, now, a);
        auto y = cold.parse_line(line, now, b);
        RC_ASSERT(x.kind == y.kind);
        RC_ASSERT(x.op == y.op);
        RC_ASSERT(x.error.code == y.error.code);
        RC_ASSERT(x.error.message == y.error.message);
        RC_ASSERT(a.size() == b.size());
        if (a.size() == 1) {
          RC_ASSERT(a.key(a.entries[0]) == b.key(b.entries[0]));
          RC_ASSERT(a.entries[0].hash == b.entries[0].hash);
          RC_ASSERT(a.entries[0].ts == b.entries[0].ts);
          RC_ASSERT(a.entries[0].value == b.entries[0].value);
        }
      }
    }));
  }
}
