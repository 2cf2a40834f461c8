#include "actors/node_settings.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

using cairn::actors::hint_view;
using cairn::actors::map_holder;
using cairn::cqrs::partition_map;

namespace {

/// A fresh directory under the system's temp dir, removed at the end.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path()
                        / "cairn-map-holder-XXXXXX")
                         .string();
    path = ::mkdtemp(tmpl.data());
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
  std::string file() const { return (path / "cluster-map.json").string(); }
};

} // namespace

TEST_SUITE("actors.map_holder") {
  TEST_CASE("adopt swaps only a higher version, after persisting it") {
    temp_dir dir;
    auto v1 = partition_map::initial({"n1", "n2", "n3"}, 6);
    map_holder h{v1, 0, dir.file()};
    CHECK(h.version() == 1);
    CHECK(h.local(0));
    CHECK(h.local(3));
    CHECK_FALSE(h.local(1));
    CHECK_FALSE(map_holder::load(dir.file()).has_value());  // nothing yet

    auto v2 = v1.with_owner(0, 2);
    auto r = h.adopt(v2);
    CHECK(r.ok);
    CHECK(r.changed);
    CHECK(r.version == 2);
    CHECK_FALSE(h.local(0));
    CHECK(h.owner_index(0) == 2);
    CHECK(*h.current() == v2);
    auto stored = map_holder::load(dir.file());
    REQUIRE(stored.has_value());
    CHECK(*stored == v2);

    // Older or equal: ok, unchanged, the file keeps v2.
    auto again = h.adopt(v1);
    CHECK(again.ok);
    CHECK_FALSE(again.changed);
    CHECK(again.version == 2);
    CHECK(h.owner_index(0) == 2);
    CHECK(*map_holder::load(dir.file()) == v2);

    // Another cluster: refused.
    auto other = partition_map::initial({"n1", "n2", "x"}, 6);
    auto bad = h.adopt(partition_map{5, other.nodes(), other.owners()});
    CHECK_FALSE(bad.ok);
    CHECK(bad.code == "incompatible");
    CHECK(h.version() == 2);
    auto fewer = h.adopt(partition_map{5, v1.nodes(), {0, 1, 2}});
    CHECK(fewer.code == "incompatible");
  }

  TEST_CASE("a map with a member appended replaces the current one") {
    temp_dir dir;
    auto v1 = partition_map::initial({"n1", "n2"}, 4);
    map_holder h{v1, 0, dir.file()};
    std::vector<std::string> order;
    h.on_change([&](const partition_map&) { order.push_back("first"); });
    h.on_change([&](const partition_map& m) {
      order.push_back("second:" + std::to_string(m.nodes().size()));
    });
    auto v2 = v1.with_member("n0", "127.0.0.1:7409");
    auto r = h.adopt(v2);
    CHECK(r.ok);
    CHECK(r.changed);
    CHECK(order == std::vector<std::string>{"first", "second:3"});
    CHECK(map_holder::load(dir.file())->address(2) == "127.0.0.1:7409");
    // The new member owns what a later map gives it.
    CHECK(h.adopt(v2.with_owner(1, 2)).changed);
    CHECK(h.owner_index(1) == 2);
    // A map without it is not one this cluster can go back to.
    auto back = partition_map{9, v1.nodes(), v1.owners()};
    CHECK(h.adopt(back).code == "incompatible");
  }

  TEST_CASE("a member that left knows it") {
    auto v1 = partition_map::initial({"n1", "n2"}, 2);
    map_holder h{v1, 1, ""};  // persistence off: memory only
    CHECK_FALSE(h.self_left());
    auto v3 = v1.with_owner(1, 0).with_left(1);
    std::vector<uint32_t> seen_left;
    h.on_change([&](const partition_map& m) { seen_left = m.left(); });
    CHECK(h.adopt(v3).changed);
    CHECK(h.self_left());
    CHECK(seen_left == std::vector<uint32_t>{1});
    CHECK_FALSE(h.local(0));
    CHECK_FALSE(h.local(1));
  }

  TEST_CASE("a corrupt persisted map is an error, not version 1") {
    temp_dir dir;
    {
      std::ofstream out{dir.file()};
      out << "{\"version\":2,\"partitions\":2";
    }
    CHECK_THROWS_AS((void) map_holder::load(dir.file()),
                    std::invalid_argument);
  }

  TEST_CASE("readers see every partition owned by one of the maps") {
    auto v1 = partition_map::initial({"a", "b"}, 64);
    map_holder h{v1, 0, ""};
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> bad{0};
    std::thread reader([&] {
      while (!stop.load())
        for (uint32_t p = 0; p < 64; ++p)
          if (h.owner_index(p) > 1)
            bad.fetch_add(1);
    });
    auto m = v1;
    for (int i = 0; i < 200; ++i) {
      m = m.with_owner(static_cast<uint32_t>(i % 64), i % 2 == 0 ? 1 : 0);
      CHECK(h.adopt(m).changed);
    }
    stop.store(true);
    reader.join();
    CHECK(bad.load() == 0);
    CHECK(h.version() == 201);
    CHECK(*h.current() == m);
  }

  TEST_CASE("the hint view does not wait for members that left") {
    hint_view v{{"n1", "n2", "n3"}, 0};
    v.set_remote(2, {});
    CHECK_FALSE(v.snapshot(4).empty());  // n2 never announced
    v.set_left({1});
    CHECK(v.snapshot(4).empty());
    // What a member that left did announce still counts.
    v.set_remote(1, {3});
    auto s = v.snapshot(4);
    REQUIRE_FALSE(s.empty());
    CHECK(s.holders[3] == std::vector<uint32_t>{1});
    CHECK(s.holders[0].empty());
  }

  TEST_CASE("the hint view forgets what an evicted member announced") {
    hint_view v{{"n1", "n2", "n3"}, 0};
    v.set_remote(1, {});
    v.set_remote(2, {3});
    v.set_local(2, {1});  // this node's own hints for n3
    auto s = v.snapshot(4);
    REQUIRE_FALSE(s.empty());
    CHECK(s.holders[3] == std::vector<uint32_t>{2});
    CHECK(s.holders[1] == std::vector<uint32_t>{0});
    v.set_left({2});
    v.set_evicted({2});
    s = v.snapshot(4);
    REQUIRE_FALSE(s.empty());
    CHECK(s.holders[3].empty());  // went with n3: a lost mark says so now
    // This node's hints for it are still here, until they are re-routed.
    CHECK(s.holders[1] == std::vector<uint32_t>{0});
    v.set_local(2, {});
    CHECK(v.snapshot(4).empty());
    // Back (a join): neither left nor evicted, so what it announces counts
    // again.
    v.set_left({});
    v.set_evicted({});
    v.set_remote(2, {2});
    s = v.snapshot(4);
    REQUIRE_FALSE(s.empty());
    CHECK(s.holders[2] == std::vector<uint32_t>{2});
  }
}
