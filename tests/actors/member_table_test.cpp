#include "actors/member_table.hpp"

#include <doctest/doctest.h>

#include <thread>

using namespace cairn;
using cairn::actors::member_table;

namespace {

cqrs::member_address addr(const std::string& name, uint16_t port) {
  return {name, "127.0.0.1", port};
}

} // namespace

TEST_SUITE("actors.member_table") {
  TEST_CASE("members are appended, never renumbered") {
    member_table t{{addr("n1", 1), addr("n2", 2)}};
    CHECK(t.size() == 2);
    CHECK(t.index_of("n2") == 1u);
    auto before = t.members();
    auto v = t.version();
    CHECK(t.add(addr("a0", 9)));
    CHECK(t.version() != v);
    CHECK(t.size() == 3);
    CHECK(t.index_of("a0") == 2u);
    CHECK(t.at(2)->port == 9);
    CHECK_FALSE(t.at(3).has_value());
    CHECK(before->size() == 2);  // a snapshot does not change
    // A name that is a member already changes nothing.
    v = t.version();
    CHECK_FALSE(t.add(addr("n1", 7)));
    CHECK(t.version() == v);
    CHECK(t.at(0)->port == 1);
  }

  TEST_CASE("a reader's copy of the links is refreshed once per change") {
    member_table t{{addr("n1", 1), addr("n2", 2)}};
    std::vector<caf::actor> links;
    uint64_t seen = 0;
    CHECK(t.refresh(links, seen));
    CHECK(links.empty());  // no links set yet
    t.set_links(std::vector<caf::actor>(2));
    CHECK(t.refresh(links, seen));
    CHECK(links.size() == 2);
    CHECK_FALSE(t.refresh(links, seen));
    t.add(addr("n3", 3));
    CHECK(t.refresh(links, seen));
    CHECK(links.size() == 3);
    CHECK_FALSE(t.link_to("n3"));
    CHECK_FALSE(t.link_to("nope"));
  }

  TEST_CASE("tunnels come from the factory, one per member that joins") {
    member_table t{{addr("n1", 1)}};
    CHECK_FALSE(t.tunnel("n2").has_value());
    t.make_tunnel(addr("n2", 2));  // no factory: no tunnel
    CHECK_FALSE(t.tunnel("n2").has_value());
    int made = 0;
    t.set_tunnel_factory([&](const cqrs::member_address& m) {
      ++made;
      return static_cast<uint16_t>(m.port + 1000);
    });
    t.make_tunnel(addr("n2", 2));
    CHECK(made == 1);
    CHECK(t.tunnel("n2") == uint16_t{1002});
  }

  TEST_CASE("readers and a writer on other threads") {
    member_table t{{addr("n1", 1), addr("n2", 2)}};
    std::thread writer{[&] {
      for (int i = 0; i < 200; ++i)
        t.add(addr("j" + std::to_string(i), static_cast<uint16_t>(100 + i)));
    }};
    std::vector<caf::actor> links;
    uint64_t seen = 0;
    size_t last = 0;
    for (int i = 0; i < 2000; ++i) {
      t.refresh(links, seen);
      auto members = t.members();
      CHECK(members->size() >= last);  // only ever grows
      last = members->size();
    }
    writer.join();
    CHECK(t.size() == 202);
    CHECK(t.index_of("j199") == 201u);
  }
}
