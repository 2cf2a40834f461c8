#include "cqrs/partition_map.hpp"

#include <doctest/doctest.h>

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
}
