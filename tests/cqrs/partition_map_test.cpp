#include "cqrs/partition_map.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <stdexcept>

using namespace cairn::cqrs;

TEST_SUITE("cqrs.partition_map") {
  TEST_CASE("version 1 is round robin over sorted names") {
    auto m = partition_map::initial({"n3", "n1", "n2"}, 8);
    CHECK(m.version() == 1);
    CHECK(m.nodes() == std::vector<std::string>{"n1", "n2", "n3"});
    CHECK(m.partitions() == 8);
    CHECK(m.owner(0) == "n1");
    CHECK(m.owner(1) == "n2");
    CHECK(m.owner(2) == "n3");
    CHECK(m.owner(3) == "n1");
    CHECK(m.owned_by(1) == std::vector<uint32_t>{1, 4, 7});
    CHECK(m.index_of("n3") == 2u);
    CHECK_FALSE(m.index_of("n4").has_value());
  }

  TEST_CASE("every node computes the same map whatever the listed order") {
    auto a = partition_map::initial({"b", "a", "c"}, 64);
    auto b = partition_map::initial({"c", "b", "a"}, 64);
    CHECK(a == b);
  }

  TEST_CASE("every node owns a fair share") {
    auto m = partition_map::initial({"x", "y", "z"}, 64);
    size_t total = 0;
    for (uint32_t i = 0; i < 3; ++i) {
      auto n = m.owned_by(i).size();
      CHECK(n >= 21);
      CHECK(n <= 22);
      total += n;
    }
    CHECK(total == 64);
  }

  TEST_CASE("bad input is rejected") {
    CHECK_THROWS_AS((void) partition_map::initial({}, 4), std::invalid_argument);
    CHECK_THROWS_AS((void) partition_map::initial({"a", "a"}, 4),
                    std::invalid_argument);
    CHECK_THROWS_AS((void) partition_map::initial({"a"}, 0),
                    std::invalid_argument);
    CHECK_THROWS_AS((partition_map{1, {"a"}, {0, 1}}), std::invalid_argument);
  }

  TEST_CASE("member addresses") {
    auto a = parse_member_address("n1@127.0.0.1:7400");
    REQUIRE(a.has_value());
    CHECK(a->name == "n1");
    CHECK(a->host == "127.0.0.1");
    CHECK(a->port == 7400);
    CHECK_FALSE(parse_member_address("n1@127.0.0.1").has_value());
    CHECK_FALSE(parse_member_address("@h:1").has_value());
    CHECK_FALSE(parse_member_address("n1@:1").has_value());
    CHECK_FALSE(parse_member_address("n1@h:0").has_value());
    CHECK_FALSE(parse_member_address("n1@h:70000").has_value());
    CHECK_FALSE(parse_member_address("n1@h:12x").has_value());
  }

  TEST_CASE("with_owner moves one partition and bumps the version") {
    auto m = partition_map::initial({"n1", "n2", "n3"}, 6);
    auto n = m.with_owner(4, 2);
    CHECK(n.version() == 2);
    CHECK(n.owner(4) == "n3");
    CHECK(m.owner(4) == "n2");  // the original is unchanged
    for (uint32_t p = 0; p < 6; ++p)
      if (p != 4)
        CHECK(n.owner(p) == m.owner(p));
    CHECK_THROWS_AS((void) m.with_owner(6, 0), std::invalid_argument);
    CHECK_THROWS_AS((void) m.with_owner(0, 3), std::invalid_argument);
  }

  TEST_CASE("a member leaves only once it owns nothing") {
    auto m = partition_map::initial({"n1", "n2", "n3"}, 3);
    CHECK_THROWS_AS((void) m.with_left(1), std::invalid_argument);
    auto moved = m.with_owner(1, 0);
    auto left = moved.with_left(1);
    CHECK(left.version() == 3);
    CHECK(left.has_left(1));
    CHECK_FALSE(left.has_left(0));
    CHECK(left.left() == std::vector<uint32_t>{1});
    CHECK(left.owned_by(1).empty());
    // A member that left cannot be given a partition again.
    CHECK_THROWS_AS((void) left.with_owner(2, 1), std::invalid_argument);
    CHECK(moved.compatible(left));
    CHECK_FALSE(m.compatible(partition_map::initial({"n1", "n2"}, 3)));
    CHECK_FALSE(m.compatible(partition_map::initial({"n1", "n2", "n3"}, 4)));
  }

  TEST_CASE("json round trip") {
    auto m = partition_map::initial({"n1", "n2", "n3"}, 5).with_owner(1, 0)
               .with_owner(4, 2).with_left(1);
    auto j = to_json(m);
    CHECK(j["version"] == 4);
    CHECK(j["partitions"] == 5);
    CHECK(j["owners"] == nlohmann::json::parse(R"(["n1","n1","n3","n1","n3"])"));
    CHECK(j["left"] == nlohmann::json::parse(R"(["n2"])"));
    auto back = partition_map_from_json(nlohmann::json::parse(j.dump()));
    REQUIRE(back.has_value());
    CHECK(*back == m);
    // "left" is optional (a map that never lost a member).
    auto v1 = to_json(partition_map::initial({"a", "b"}, 2));
    v1.erase("left");
    auto b1 = partition_map_from_json(v1);
    REQUIRE(b1.has_value());
    CHECK(b1->left().empty());
  }

  TEST_CASE("json decoding refuses broken maps") {
    auto good = to_json(partition_map::initial({"n1", "n2"}, 4));
    auto broken = [&](auto change) {
      auto j = good;
      change(j);
      std::string error;
      auto m = partition_map_from_json(j, &error);
      CHECK_FALSE(error.empty());
      return !m.has_value();
    };
    CHECK(broken([](auto& j) { j["version"] = 0; }));
    CHECK(broken([](auto& j) { j["version"] = "2"; }));
    CHECK(broken([](auto& j) { j.erase("owners"); }));
    CHECK(broken([](auto& j) { j["partitions"] = 5; }));
    CHECK(broken([](auto& j) { j["owners"][0] = "n9"; }));
    CHECK(broken([](auto& j) { j["nodes"] = nlohmann::json::array(); }));
    CHECK(broken([](auto& j) { j["nodes"] = {"n1", "n1"}; }));
    CHECK(broken([](auto& j) { j["addresses"] = {"h:1"}; }));
    CHECK(broken([](auto& j) { j["addresses"] = {{"n9", "h:1"}}; }));
    CHECK(broken([](auto& j) { j["addresses"] = {{"n1", "h"}}; }));
    CHECK(broken([](auto& j) { j["addresses"] = {{"n1", 7400}}; }));
    CHECK(broken([](auto& j) { j["addresses"] = {{"n1", "h:0"}}; }));
    CHECK(broken([](auto& j) { j["left"] = {"n1"}; }));  // n1 owns partitions
    CHECK(broken([](auto& j) { j["left"] = {"zz"}; }));
    CHECK(broken([](auto& j) { j = nlohmann::json::array(); }));
    std::string error;
    CHECK(partition_map_from_json(good, &error).has_value());
    // Members that joined are appended, so a map's names need not be
    // sorted (only version 1 sorts them).
    auto joined = good;
    joined["nodes"] = {"n2", "n1"};
    CHECK(partition_map_from_json(joined, &error).has_value());
  }

  TEST_CASE("with_member appends a member that owns nothing") {
    auto m = partition_map::initial({"n2", "n3"}, 4).with_owner(0, 1);
    auto j = m.with_member("a1", "10.0.0.9:7400",
                           {"10.0.0.2:7400", "10.0.0.3:7400"});
    CHECK(j.version() == m.version() + 1);
    CHECK(j.nodes() == std::vector<std::string>{"n2", "n3", "a1"});
    CHECK(j.index_of("a1") == 2u);
    CHECK(j.owners() == m.owners());
    CHECK(j.owned_by(2).empty());
    CHECK(j.address(0) == "10.0.0.2:7400");
    CHECK(j.address(2) == "10.0.0.9:7400");
    CHECK(m.address(0).empty());  // the original is unchanged
    // The indexes of the members before it never change: the old map is a
    // prefix of the new one, never the other way round.
    CHECK(m.compatible(j));
    CHECK_FALSE(j.compatible(m));
    CHECK_FALSE(partition_map::initial({"n2", "x"}, 4).compatible(j));
    CHECK_FALSE(partition_map::initial({"n2", "n3"}, 8).compatible(j));
    // The new member can own partitions from then on.
    auto moved = j.with_owner(3, 2);
    CHECK(moved.owner(3) == "a1");
    CHECK(moved.address(2) == "10.0.0.9:7400");
    CHECK_THROWS_AS((void) j.with_member("n3", "h:1"), std::invalid_argument);
    CHECK_THROWS_AS((void) j.with_member("", "h:1"), std::invalid_argument);
    // Addresses this map holds already win over `known`.
    auto twice = j.with_member("a2", "h:2", {"x:1", "x:2", "x:3"});
    CHECK(twice.address(0) == "10.0.0.2:7400");
    CHECK(twice.address(3) == "h:2");
  }

  TEST_CASE("addresses survive the json round trip") {
    auto m = partition_map::initial({"n1", "n2"}, 4)
               .with_member("n0", "127.0.0.1:7409", {"127.0.0.1:7401"});
    auto j = to_json(m);
    CHECK(j["nodes"] == nlohmann::json::parse(R"(["n1","n2","n0"])"));
    CHECK(j["addresses"] == nlohmann::json::parse(
                              R"({"n0":"127.0.0.1:7409","n1":"127.0.0.1:7401"})"));
    auto back = partition_map_from_json(nlohmann::json::parse(j.dump()));
    REQUIRE(back.has_value());
    CHECK(*back == m);
    CHECK(back->address(1).empty());
    // A map without addresses writes none (what every static cluster has).
    CHECK_FALSE(to_json(partition_map::initial({"n1", "n2"}, 4))
                  .contains("addresses"));
  }

  TEST_CASE("with_evicted gives a gone member's partitions away and marks them lost") {
    // n1 owns 0 and 3, n2 owns 1 and 4, n3 owns 2 and 5.
    auto m = partition_map::initial({"n1", "n2", "n3"}, 6);
    auto e = m.with_evicted(2, {{2, 0}, {5, 1}}, {4}, 1'000);
    CHECK(e.version() == m.version() + 1);
    CHECK(e.owner(2) == "n1");
    CHECK(e.owner(5) == "n2");
    CHECK(e.has_left(2));
    CHECK(e.evicted() == std::vector<uint32_t>{2});
    // Its own partitions and the ones it held hints for (4) are lost then;
    // the others are not.
    CHECK(e.lost_at(2) == 1'000);
    CHECK(e.lost_at(5) == 1'000);
    CHECK(e.lost_at(4) == 1'000);
    CHECK(e.lost_at(0) == 0);
    CHECK(e.lost_at(1) == 0);
    CHECK(m.lost_at(2) == 0);  // the original is unchanged
    // Later changes keep the marks; a later eviction keeps the later time.
    auto moved = e.with_owner(0, 1);
    CHECK(moved.lost_at(2) == 1'000);
    CHECK(moved.evicted() == e.evicted());
    auto again = moved.with_evicted(1, {{0, 0}, {1, 0}, {4, 0}, {5, 0}}, {},
                                    2'000);
    CHECK(again.lost_at(4) == 2'000);
    CHECK(again.lost_at(2) == 1'000);
    CHECK(again.evicted() == std::vector<uint32_t>{1, 2});
    CHECK(again.owned_by(0).size() == 6);
    // Coming back (a join) clears left and evicted, never the marks.
    auto back = e.with_back(2);
    CHECK_FALSE(back.has_left(2));
    CHECK(back.evicted().empty());
    CHECK(back.lost_at(5) == 1'000);
    // Refused: a plan that misses one of its partitions, a target that is
    // the member itself or left, a partition it does not own, a member
    // that left already, a lost partition out of range, no time.
    CHECK_THROWS_AS((void) m.with_evicted(2, {{2, 0}}, {}, 1), std::invalid_argument);
    CHECK_THROWS_AS((void) m.with_evicted(2, {{2, 2}, {5, 0}}, {}, 1),
                    std::invalid_argument);
    CHECK_THROWS_AS((void) e.with_evicted(1, {{1, 2}, {4, 0}, {5, 0}}, {}, 1),
                    std::invalid_argument);
    CHECK_THROWS_AS((void) m.with_evicted(2, {{1, 0}, {2, 0}, {5, 0}}, {}, 1),
                    std::invalid_argument);
    CHECK_THROWS_AS((void) e.with_evicted(2, {}, {}, 1), std::invalid_argument);
    CHECK_THROWS_AS((void) m.with_evicted(2, {{2, 0}, {5, 0}}, {6}, 1),
                    std::invalid_argument);
    CHECK_THROWS_AS((void) m.with_evicted(2, {{2, 0}, {5, 0}}, {}, 0),
                    std::invalid_argument);
  }

  TEST_CASE("evictions and lost marks survive the json round trip") {
    auto e = partition_map::initial({"n1", "n2", "n3"}, 6)
               .with_evicted(2, {{2, 0}, {5, 1}}, {4}, 1'765'000'000'000);
    auto j = to_json(e);
    CHECK(j["evicted"] == nlohmann::json::parse(R"(["n3"])"));
    CHECK(j["lost"] == nlohmann::json::parse(
                         R"({"2":1765000000000,"4":1765000000000,"5":1765000000000})"));
    auto back = partition_map_from_json(nlohmann::json::parse(j.dump()));
    REQUIRE(back.has_value());
    CHECK(*back == e);
    CHECK_FALSE(to_json(partition_map::initial({"n1"}, 2)).contains("lost"));
    CHECK_FALSE(to_json(partition_map::initial({"n1"}, 2)).contains("evicted"));
    std::string error;
    auto bad = [&](const char* field, nlohmann::json value) {
      auto x = j;
      x[field] = std::move(value);
      return !partition_map_from_json(x, &error).has_value();
    };
    CHECK(bad("evicted", "n3"));
    CHECK(bad("evicted", {"n9"}));
    CHECK(bad("evicted", {"n1"}));  // n1 has not left
    CHECK(error.find("has not left") != std::string::npos);
    CHECK(bad("lost", {1, 2}));
    CHECK(bad("lost", {{"6", 5}}));
    CHECK(bad("lost", {{"x", 5}}));
    CHECK(bad("lost", {{"1", 0}}));
    CHECK(bad("lost", {{"1", -3}}));
    CHECK(bad("lost", {{"1", "soon"}}));
  }
}
