#include "cqrs/series_ids.hpp"
#include "cqrs/series_key.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace cairn::cqrs;

TEST_SUITE("cqrs.series_ids") {

TEST_CASE("every inserted id is found by its hash and key, through growth") {
  std::vector<std::string> keys;
  series_ids ids;
  auto key_of = [&](uint32_t id) -> std::string_view { return keys[id]; };
  for (uint32_t i = 0; i < 20'000; ++i) {
    keys.push_back("m.host" + std::to_string(i));
    CHECK_FALSE(ids.find(series_hash(keys[i]), keys[i], key_of));
    ids.insert(series_hash(keys[i]), i);
  }
  CHECK(ids.size() == 20'000);
  CHECK(ids.memory_bytes() >= 2 * 20'000 * 12);
  for (uint32_t i = 0; i < 20'000; ++i) {
    auto id = ids.find(series_hash(keys[i]), keys[i], key_of);
    REQUIRE(id);
    CHECK(*id == i);
  }
  CHECK_FALSE(ids.find(series_hash("absent"), "absent", key_of));
}

TEST_CASE("equal hashes of different keys are told apart by the key") {
  // The index trusts no hash alone: two keys forced onto one hash (and so
  // one probe chain) each find their own id.
  std::vector<std::string> keys{"a", "b", "c"};
  auto key_of = [&](uint32_t id) -> std::string_view { return keys[id]; };
  series_ids ids;
  for (uint32_t i = 0; i < keys.size(); ++i)
    ids.insert(42, i);
  for (uint32_t i = 0; i < keys.size(); ++i)
    CHECK(ids.find(42, keys[i], key_of) == i);
  CHECK_FALSE(ids.find(42, "d", key_of));
  CHECK_FALSE(ids.find(43, "a", key_of));
}

TEST_CASE("clear empties the index; it is refilled by renumbered ids") {
  std::vector<std::string> keys{"x", "y"};
  auto key_of = [&](uint32_t id) -> std::string_view { return keys[id]; };
  series_ids ids;
  ids.insert(series_hash("x"), 0);
  ids.insert(series_hash("y"), 1);
  ids.clear();
  CHECK(ids.size() == 0);
  CHECK_FALSE(ids.find(series_hash("x"), "x", key_of));
  keys = {"y"};
  ids.insert(series_hash("y"), 0);
  CHECK(ids.find(series_hash("y"), "y", key_of) == 0u);
}

}
