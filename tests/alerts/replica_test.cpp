#include "alerts/replica.hpp"
#include "alerts/replica_codec.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

using namespace cairn::alerts;

namespace {

replica_item item(std::string key, uint64_t clock, std::string origin,
                  std::string value, bool deleted = false) {
  return {std::move(key), {clock, std::move(origin)}, deleted,
          deleted ? std::string{} : std::move(value), 7};
}

/// The state of a replica as comparable values.
std::map<std::string, std::tuple<uint64_t, std::string, bool, std::string>>
contents(const replica_set& s) {
  std::map<std::string, std::tuple<uint64_t, std::string, bool, std::string>> out;
  s.for_each_covered([&](const replica_item& x) {
    out[x.key] = {x.st.clock, x.st.origin, x.deleted, x.value};
  });
  return out;
}

/// Runs anti-entropy between two replicas until neither has anything to
/// send (what the managers do with stamps, pulls and items).
void sync(replica_set& a, replica_set& b) {
  std::vector<std::pair<std::string, stamp>> theirs;
  b.for_each_covered([&](const replica_item& x) { theirs.emplace_back(x.key, x.st); });
  std::vector<std::string> push, pull;
  a.diff(theirs, push, pull);
  for (auto& k : push)
    b.merge(*a.find(k));
  for (auto& k : pull)
    a.merge(*b.find(k));
}

} // namespace

TEST_SUITE("alerts.replica") {

TEST_CASE("stamps order by clock, then by origin") {
  CHECK(newer({2, "a"}, {1, "z"}));
  CHECK_FALSE(newer({1, "z"}, {2, "a"}));
  CHECK(newer({3, "n2"}, {3, "n1"}));
  CHECK_FALSE(newer({3, "n1"}, {3, "n2"}));
  CHECK_FALSE(newer({3, "n1"}, {3, "n1"}));  // equal: not newer either way
}

TEST_CASE("a local write takes the next clock of its key") {
  replica_set s;
  auto& a = s.write("r/x", "{}", false, "n1", 1);
  CHECK(a.st.clock == 1);
  CHECK(s.write("r/x", "{\"v\":2}", false, "n2", 2).st.clock == 2);
  CHECK(s.write("r/y", "{}", false, "n2", 3).st.clock == 1);
  auto& d = s.write("r/x", "ignored", true, "n3", 4);
  CHECK(d.st.clock == 3);
  CHECK(d.deleted);
  CHECK(d.value.empty());
}

TEST_CASE("merge keeps the newest write, whatever the arrival order") {
  std::vector<replica_item> writes = {
    item("r/a", 1, "n1", "a1"), item("r/a", 2, "n2", "a2"),
    item("r/a", 2, "n3", "a2'"),  // concurrent with n2's: n3 sorts last, wins
    item("r/b", 1, "n1", "b1"),   item("r/b", 2, "n1", "", true),
    item("i/a\0g", 4, "n2", "s4"), item("i/a\0g", 3, "n1", "s3")};
  writes[5].key = std::string("i/a\0g", 5);
  writes[6].key = std::string("i/a\0g", 5);
  std::mt19937 rng{42};
  std::map<std::string, std::tuple<uint64_t, std::string, bool, std::string>> first;
  uint64_t digest = 0;
  for (int round = 0; round < 50; ++round) {
    std::shuffle(writes.begin(), writes.end(), rng);
    replica_set s;
    for (auto& w : writes)
      s.merge(w);
    for (auto& w : writes)  // idempotent
      CHECK_FALSE(s.merge(w));
    auto c = contents(s);
    if (round == 0) {
      first = c;
      digest = s.digest();
    }
    CHECK(c == first);
    CHECK(s.digest() == digest);
  }
  CHECK(std::get<3>(first["r/a"]) == "a2'");
  CHECK(std::get<1>(first["r/a"]) == "n3");
  CHECK(std::get<2>(first["r/b"]));  // the tombstone stays
  CHECK(std::get<3>(first[std::string("i/a\0g", 5)]) == "s4");
}

TEST_CASE("concurrent creates of one name resolve the same on every member") {
  // n1 and n3 both create "cpu" knowing nothing of each other: clock 1 each.
  replica_set n1, n3;
  n1.write("r/cpu", "from-n1", false, "n1", 1);
  n3.write("r/cpu", "from-n3", false, "n3", 1);
  sync(n1, n3);
  CHECK(n1.find("r/cpu")->value == "from-n3");
  CHECK(n3.find("r/cpu")->value == "from-n3");
  CHECK(n1.digest() == n3.digest());
  // An update written after seeing the winner beats it (clock 2).
  n1.write("r/cpu", "n1-update", false, "n1", 2);
  sync(n3, n1);
  CHECK(n3.find("r/cpu")->value == "n1-update");
}

TEST_CASE("a member that was away catches up, a deletion is not undone") {
  replica_set up, away;
  up.write("r/a", "a", false, "n1", 1);
  up.write("r/b", "b", false, "n1", 1);
  sync(up, away);
  CHECK(contents(up) == contents(away));
  // While `away` is down: b deleted, c created, a updated.
  up.write("r/b", "", true, "n1", 2);
  up.write("r/c", "c", false, "n2", 2);
  up.write("r/a", "a2", false, "n2", 2);
  CHECK(up.digest() != away.digest());
  sync(away, up);  // the returning member starts the exchange
  CHECK(contents(up) == contents(away));
  CHECK(up.digest() == away.digest());
  CHECK(away.find("r/b")->deleted);
  // Its stale copy of b (clock 1) does not come back.
  CHECK_FALSE(up.merge(item("r/b", 1, "n1", "b")));
  CHECK(up.find("r/b")->deleted);
}

TEST_CASE("instance tombstones: not in the digest, refuse stale copies, expire") {
  replica_set s;
  std::string key = instance_item_key("r", "host=a");
  s.write(key, "firing", false, "n1", 10);
  auto live = s.digest();
  s.write(key, "", true, "n1", 20);
  CHECK(s.digest() == 0);
  CHECK(live != 0);
  CHECK_FALSE(s.merge(item(key, 1, "n2", "stale")));
  CHECK(s.find(key)->deleted);
  CHECK(s.expire(15) == 0);
  CHECK(s.expire(21) == 1);
  CHECK(s.find(key) == nullptr);
  // Rule tombstones never expire.
  s.write("r/x", "", true, "n1", 1);
  CHECK(s.expire(1000) == 0);
  // drop_instances_of removes every instance of one rule, only of it.
  s.write(instance_item_key("x", "a"), "1", false, "n1", 1);
  s.write(instance_item_key("x", "b"), "1", false, "n1", 1);
  s.write(instance_item_key("xy", "a"), "1", false, "n1", 1);
  s.drop_instances_of("x");
  CHECK(s.find(instance_item_key("x", "a")) == nullptr);
  CHECK(s.find(instance_item_key("x", "b")) == nullptr);
  CHECK(s.find(instance_item_key("xy", "a")) != nullptr);
  CHECK(instance_rule_of(instance_item_key("xy", "a")) == "xy");
}

TEST_CASE("random writes on three members converge after pairwise syncs") {
  std::mt19937 rng{7};
  replica_set m[3];
  const char* names[3] = {"n1", "n2", "n3"};
  for (int i = 0; i < 300; ++i) {
    int who = static_cast<int>(rng() % 3);
    auto key = "r/rule" + std::to_string(rng() % 20);
    bool del = rng() % 5 == 0;
    m[who].write(key, "v" + std::to_string(i), del, names[who], i);
    if (rng() % 4 == 0) {
      int a = static_cast<int>(rng() % 3), b = static_cast<int>(rng() % 3);
      if (a != b)
        sync(m[a], m[b]);
    }
  }
  sync(m[0], m[1]);
  sync(m[1], m[2]);
  sync(m[0], m[1]);
  CHECK(contents(m[0]) == contents(m[1]));
  CHECK(contents(m[1]) == contents(m[2]));
  CHECK(m[0].digest() == m[2].digest());
}

TEST_CASE("rule ownership: one owner, only a dead owner's rules move") {
  std::vector<std::string> all = {"n1", "n2", "n3"};
  std::map<std::string, int> per;
  std::vector<std::string> owners;
  for (int i = 0; i < 3000; ++i) {
    auto name = "rule-" + std::to_string(i);
    auto o = rule_owner(name, all);
    // The same answer whatever order the members are listed in.
    CHECK(o == rule_owner(name, {"n3", "n1", "n2"}));
    owners.push_back(o);
    ++per[o];
  }
  for (auto& n : all)  // spread: each member gets about a third
    CHECK(per[n] > 800);
  std::vector<std::string> without_n2 = {"n1", "n3"};
  for (int i = 0; i < 3000; ++i) {
    auto name = "rule-" + std::to_string(i);
    auto o = rule_owner(name, without_n2);
    if (owners[static_cast<size_t>(i)] != "n2")
      CHECK(o == owners[static_cast<size_t>(i)]);  // did not move
    else
      CHECK(o != "n2");
  }
  CHECK(rule_owner("x", {}).empty());
  CHECK(rule_owner("x", {"solo"}) == "solo");
}

TEST_CASE("rule ownership prefers members whose window is complete") {
  // n2 restarted 3 s ago: its 10 s window of the rule is incomplete.
  std::vector<member_age> live = {{"n1", 60000}, {"n2", 3000}, {"n3", 60000}};
  std::vector<member_age> warm = {{"n1", 60000}, {"n3", 60000}};
  int moved_back = 0;
  for (int i = 0; i < 300; ++i) {
    auto name = "rule-" + std::to_string(i);
    auto full = rule_owner(name, {"n1", "n2", "n3"});
    // While n2 is cold, its rules stay with the others.
    CHECK(rule_owner(name, 10000, live, 2000) == rule_owner(name, {"n1", "n3"}));
    CHECK(rule_owner(name, 10000, live, 2000)
          == rule_owner(name, 10000, warm, 2000));
    // A rule with a short window: n2 is warm for it, it owns its share.
    CHECK(rule_owner(name, 1000, live, 2000) == full);
    // Once its window is complete it takes its rules back.
    live[1].up_for = 12000;
    CHECK(rule_owner(name, 10000, live, 2000) == full);
    moved_back += full == "n2" ? 1 : 0;
    live[1].up_for = 3000;
  }
  CHECK(moved_back > 50);
  // A cluster that started together (nobody warm) evaluates at once.
  std::vector<member_age> cold = {{"n1", 100}, {"n2", 100}, {"n3", 100}};
  CHECK(rule_owner("x", 10000, cold, 2000) == rule_owner("x", {"n1", "n2", "n3"}));
  CHECK(rule_owner("x", 10000, {}, 2000).empty());
}

TEST_CASE("codec: items, stamps, keys and buckets round-trip; garbage fails") {
  replica_set s;
  s.write("r/a", R"({"name":"a"})", false, "n1", 5);
  s.write(instance_item_key("a", "k=v"), R"({"state":"firing"})", false, "n2", 6);
  s.write("r/gone", "", true, "n3", 7);
  std::vector<const replica_item*> ptrs;
  s.for_each_covered([&](const replica_item& x) { ptrs.push_back(&x); });
  std::vector<replica_item> back;
  REQUIRE(decode_items(encode_items(ptrs), back));
  replica_set t;
  for (auto& x : back)
    t.merge(x);
  CHECK(contents(t) == contents(s));
  CHECK(t.digest() == s.digest());

  std::vector<std::pair<std::string, stamp>> stamps;
  REQUIRE(decode_stamps(encode_stamps(s), stamps));
  CHECK(stamps.size() == 3);
  std::vector<std::string> push, pull;
  t.diff(stamps, push, pull);
  CHECK(push.empty());
  CHECK(pull.empty());

  std::vector<std::string> keys;
  REQUIRE(decode_keys(encode_keys({"r/a", instance_item_key("a", "x")}), keys));
  CHECK(keys[1] == instance_item_key("a", "x"));

  cairn::cqrs::closed_bucket b1, b2;
  b1.key = "cpu\x01host\x02h1";
  b1.start = 123000;
  b1.value.add(123400, 5.0, cairn::cqrs::ddsketch_mapping{});
  b2.key = "lat";
  b2.start = -5;
  b2.correction = true;
  std::string body;
  encode_buckets({&b1, &b2}, body);
  std::vector<cairn::cqrs::closed_bucket> got;
  REQUIRE(decode_buckets(body, got));
  REQUIRE(got.size() == 2);
  CHECK(got[0].key == b1.key);
  CHECK(got[0].start == 123000);
  CHECK(got[0].value.count == b1.value.count);
  CHECK(got[0].value.sum == b1.value.sum);
  CHECK(got[1].correction);
  CHECK(got[1].start == -5);
  for (size_t cut = 0; cut < body.size(); ++cut) {
    std::vector<cairn::cqrs::closed_bucket> part;
    CHECK_FALSE(decode_buckets(std::string_view{body}.substr(0, cut), part));
  }
  std::vector<replica_item> bad;
  CHECK_FALSE(decode_items("{\"k\":1}", bad));
  CHECK_FALSE(decode_items("[{\"k\":1}]", bad));
  CHECK_FALSE(decode_stamps("[[1,2]]", stamps));
}

}
