#include "cqrs/series_key.hpp"
#include "cqrs/event_batch.hpp"

#include <doctest/doctest.h>

using namespace cairn::cqrs;

TEST_SUITE("cqrs.series_key") {

TEST_CASE("keys are canonical and decodable") {
  auto a = make_series_key("http.latency", {{"service", "api"}, {"region", "eu"}});
  auto b = make_series_key("http.latency", {{"region", "eu"}, {"service", "api"}});
  CHECK(a == b);
  CHECK(series_hash(a) == series_hash(b));
  CHECK(series_metric(a) == "http.latency");
  std::vector<tag> tags;
  REQUIRE(decode_series_tags(a, tags));
  CHECK(tags == std::vector<tag>{{"region", "eu"}, {"service", "api"}});
  auto bare = make_series_key("m", {});
  CHECK(bare == "m");
  REQUIRE(decode_series_tags(bare, tags));
  CHECK(tags.empty());
  CHECK(make_series_key("m", {{"a", ""}}) != make_series_key("m", {}));
}

TEST_CASE("malformed keys are rejected") {
  std::vector<tag> tags;
  CHECK(!decode_series_tags(std::string("m\0\x05" "ab", 5), tags));
  CHECK(!decode_series_tags(std::string("m\0\x01" "a", 4), tags));
  CHECK(!decode_series_tags(std::string("m\0", 2), tags));
}

TEST_CASE("split_by_partition keeps every event in its partition") {
  event_batch in;
  for (int i = 0; i < 100; ++i) {
    auto key = make_series_key("m", {{"i", std::to_string(i)}});
    in.add(key, series_hash(key), i, i * 1.5);
  }
  std::vector<event_batch> out;
  split_by_partition(in, 8, out);
  REQUIRE(out.size() == 8);
  size_t total = 0;
  for (uint32_t p = 0; p < 8; ++p) {
    for (auto& e : out[p].entries) {
      CHECK(partition_of(e.hash, 8) == p);
      CHECK(series_hash(out[p].key(e)) == e.hash);
      CHECK(e.value == e.ts * 1.5);
    }
    total += out[p].size();
  }
  CHECK(total == 100);
}

}
