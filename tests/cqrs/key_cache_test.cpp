#include "cqrs/key_cache.hpp"
#include "cqrs/series_key.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace cairn::cqrs;

TEST_SUITE("cqrs.key_cache") {

TEST_CASE("a pair finds the key inserted for it, and only that pair does") {
  key_cache c;
  auto key = make_series_key("cpu", {{"host", "a"}});
  c.insert("cpu", R"({"host":"a"})", key, series_hash(key));
  auto hit = c.find("cpu", R"({"host":"a"})");
  REQUIRE(hit);
  CHECK(hit->key == key);
  CHECK(hit->hash == series_hash(key));
  // Same bytes split differently between metric and source is another pair.
  CHECK_FALSE(c.find("cp", R"(u{"host":"a"})"));
  CHECK_FALSE(c.find("cpu", R"({"host": "a"})"));
  CHECK_FALSE(c.find("mem", R"({"host":"a"})"));
  CHECK_FALSE(c.find("cpu", ""));
  CHECK(c.size() == 1);
  // Inserting the pair again keeps one entry.
  c.insert("cpu", R"({"host":"a"})", key, series_hash(key));
  CHECK(c.size() == 1);
}

TEST_CASE("an empty source (no tags) is a pair like any other") {
  key_cache c;
  c.insert("up", "", "up", series_hash("up"));
  REQUIRE(c.find("up", ""));
  CHECK(c.find("up", "")->key == "up");
  CHECK_FALSE(c.find("u", "p"));
}

TEST_CASE("many pairs, colliding slots included, all stay findable") {
  key_cache c{5000};
  for (int i = 0; i < 5000; ++i) {
    auto src = "{\"i\":\"" + std::to_string(i) + "\"}";
    auto key = make_series_key("m", {{"i", std::to_string(i)}});
    c.insert("m", src, key, series_hash(key));
  }
  CHECK(c.size() == 5000);
  for (int i = 0; i < 5000; ++i) {
    auto src = "{\"i\":\"" + std::to_string(i) + "\"}";
    auto hit = c.find("m", src);
    REQUIRE(hit);
    CHECK(hit->key == make_series_key("m", {{"i", std::to_string(i)}}));
  }
}

TEST_CASE("a byte budget bounds it too, and long sources are not kept") {
  key_cache c{1000, 64};
  auto key = make_series_key("m", {{"k", std::string(20, 'v')}});
  c.insert("m", std::string(20, 's'), key, series_hash(key));
  CHECK(c.size() == 1);
  // 20 + key bytes twice exceed 64: the second insert starts over.
  c.insert("m", std::string(21, 's'), key, series_hash(key));
  CHECK(c.size() == 1);
  CHECK(c.find("m", std::string(21, 's')));
  CHECK_FALSE(c.find("m", std::string(20, 's')));
  key_cache big;
  big.insert("m", std::string(5000, 's'), key, series_hash(key));
  CHECK(big.size() == 0);
  CHECK(big.memory_bytes() < 4096);
}

TEST_CASE("at capacity the next insert starts over: memory stays bounded") {
  key_cache c{3};
  for (std::string m : {"a", "b", "c"})
    c.insert(m, "", m, series_hash(m));
  CHECK(c.size() == 3);
  c.insert("d", "", "d", series_hash("d"));
  CHECK(c.size() == 1);
  CHECK(c.find("d", ""));
  CHECK_FALSE(c.find("a", ""));
  c.clear();
  CHECK(c.size() == 0);
  CHECK_FALSE(c.find("d", ""));
}

}
