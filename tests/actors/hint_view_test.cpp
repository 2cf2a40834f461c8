#include "actors/hint_view.hpp"

#include <doctest/doctest.h>

#include <algorithm>

using cairn::actors::hint_view;

namespace {

std::vector<uint32_t> holders(const hint_view::snapshot_type& s, uint32_t p) {
  if (s.holders.empty())
    return {};
  auto h = s.holders.at(p);
  std::sort(h.begin(), h.end());
  return h;
}

} // namespace

TEST_SUITE("actors.hint_view") {
  TEST_CASE("members never heard from may hold hints for every partition") {
    hint_view v{{"n1", "n2", "n3"}, 0};
    auto s = v.snapshot(4);
    REQUIRE_FALSE(s.empty());
    for (uint32_t p = 0; p < 4; ++p)
      CHECK(holders(s, p) == std::vector<uint32_t>{1, 2});
    v.set_remote(1, {});
    v.set_remote(2, {});
    CHECK(v.snapshot(4).empty());
  }

  TEST_CASE("a member that joined is unknown until it announces") {
    hint_view v{{"n1", "n2"}, 0};
    v.set_remote(1, {});
    CHECK(v.snapshot(2).empty());
    v.set_members({"n1", "n2", "a0"});
    CHECK(v.name(2) == "a0");
    auto s = v.snapshot(2);
    REQUIRE_FALSE(s.empty());
    CHECK(holders(s, 0) == std::vector<uint32_t>{2});
    CHECK(holders(s, 1) == std::vector<uint32_t>{2});
    v.set_remote(2, {1});
    CHECK(holders(v.snapshot(2), 0).empty());
    CHECK(holders(v.snapshot(2), 1) == std::vector<uint32_t>{2});
    // A shorter list (an older map) changes nothing.
    v.set_members({"n1", "n2"});
    CHECK(v.name(2) == "a0");
    CHECK(v.name(7).empty());
  }

  TEST_CASE("local hints: growth is reported, shrinking is not") {
    hint_view v{{"n1", "n2", "n3"}, 0};
    v.set_remote(1, {});
    v.set_remote(2, {});
    auto [none, v0] = v.local_union();
    CHECK(none.empty());
    CHECK(v.set_local(1, {1, 4, 1}));     // new partitions
    CHECK_FALSE(v.set_local(1, {4, 1}));  // same set
    CHECK_FALSE(v.set_local(1, {4}));     // shrinks
    auto [parts, v1] = v.local_union();
    CHECK(parts == std::vector<uint32_t>{4});
    CHECK(v1 != v0);
    auto s = v.snapshot(8);
    CHECK(holders(s, 4) == std::vector<uint32_t>{0});
    CHECK(holders(s, 1).empty());
    CHECK(v.set_local(2, {2}));  // another link adds a partition
    CHECK_FALSE(v.set_local(1, {}));
    CHECK(v.local_union().first == std::vector<uint32_t>{2});
  }

  TEST_CASE("remote announcements name the holder; self is ignored") {
    hint_view v{{"n1", "n2", "n3"}, 1};
    v.set_remote(0, {3});
    v.set_remote(2, {3, 5});
    v.set_remote(1, {0, 1, 2});  // this node: its own links report for it
    auto s = v.snapshot(6);
    CHECK(holders(s, 3) == std::vector<uint32_t>{0, 2});
    CHECK(holders(s, 5) == std::vector<uint32_t>{2});
    CHECK(holders(s, 0).empty());
    CHECK(v.name(2) == "n3");
    v.set_remote(0, {});
    v.set_remote(2, {});
    CHECK(v.snapshot(6).empty());
  }
}
