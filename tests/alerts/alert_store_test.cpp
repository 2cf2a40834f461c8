#include "alerts/alert_store.hpp"

#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <map>

using namespace cairn::alerts;
using nlohmann::json;

namespace {

void exercise(alert_store& s) {
  rule_event a{0, rule_event_kind::created, "a", json{{"name", "a"}, {"v", 1}}, 1};
  rule_event b{0, rule_event_kind::created, "b", json{{"name", "b"}}, 2};
  rule_event a2{0, rule_event_kind::updated, "a", json{{"name", "a"}, {"v", 2}}, 3};
  rule_event bd{0, rule_event_kind::deleted, "b", nullptr, 4};
  for (auto* e : {&a, &b, &a2, &bd})
    REQUIRE(s.append(*e));
  CHECK(bd.seq == a.seq + 3);
  auto rules = s.load_rules();
  REQUIRE(rules.size() == 1);
  CHECK(rules["a"]["v"] == 2);
  CHECK(s.rule_events().size() == 4);

  instance_record r{"a", "host=h", {{"host", "h"}}, {}, false};
  r.state.state = alert_state::firing;
  r.state.fired_at = 77;
  r.state.episode = 3;
  REQUIRE(s.journal(r));
  auto got = s.load_instances();
  REQUIRE(got.size() == 1);
  CHECK(got[0].labels == r.labels);
  CHECK(got[0].state.state == alert_state::firing);
  CHECK(got[0].state.fired_at == 77);
  CHECK(got[0].state.episode == 3);
  r.erased = true;
  REQUIRE(s.journal(r));
  CHECK(s.load_instances().empty());

  notice n;
  n.rule = "a";
  n.status = "firing";
  n.key = "k1";
  n.receivers = {{"http://x/y", {{"h", "v"}}, "sec"}};
  REQUIRE(s.put_outbox("k1.0", to_json(n)));
  auto box = s.outbox();
  REQUIRE(box.size() == 1);
  CHECK(box[0].first == "k1.0");
  auto back = notice_from_json(box[0].second);
  REQUIRE(back);
  CHECK(back->receivers == n.receivers);
  s.erase_outbox("k1.0");
  CHECK(s.outbox().empty());
  REQUIRE(s.put_dead_letter("k1.0", json{{"key", "k1"}}));
  CHECK(s.dead_letters().size() == 1);

  for (int i = 0; i < 7; ++i)
    s.record(json{{"rule", i % 2 ? "a" : "b"}, {"i", i}});
  auto h = s.history(100);
  CHECK(h.size() == 5); // history_keep
  CHECK(h.front()["i"] == 2);
  CHECK(h.back()["i"] == 6);
  CHECK(s.history(2).front()["i"] == 5);
  CHECK(s.history(100, "a").size() == 2);
}

} // namespace

TEST_SUITE("alerts.store") {

TEST_CASE("memory store: events fold, journal, outbox, dead letters, history") {
  alert_store s{make_memory_kv(), 5};
  exercise(s);
}

TEST_CASE("LevelDB store survives reopening") {
  auto dir = std::filesystem::temp_directory_path()
             / ("cairn_alert_store_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  {
    alert_store s{open_leveldb_kv(dir.string()), 5};
    exercise(s);
  }
  {
    alert_store s{open_leveldb_kv(dir.string()), 5};
    CHECK(s.load_rules().size() == 1);
    CHECK(s.dead_letters().size() == 1);
    CHECK(s.history(100).size() == 5);
    rule_event e{0, rule_event_kind::created, "c", json{{"name", "c"}}, 9};
    REQUIRE(s.append(e));
    CHECK(e.seq == 5); // sequence continues after reopening
    s.record(json{{"i", 7}});
    CHECK(s.history(100).back()["seq"] == 8);
  }
  std::filesystem::remove_all(dir);
}

}

TEST_SUITE("alerts.store") {

TEST_CASE("a batch lands in one write, ids continue after reopening") {
  auto dir = std::filesystem::temp_directory_path()
             / ("cairn_alert_batch_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::string first;
  {
    alert_store s{open_leveldb_kv(dir.string()), 3};
    alert_store::batch b;
    first = s.add_outbox(b, json{{"key", "a"}});
    auto second = s.add_outbox(b, json{{"key", "b"}});
    CHECK(second > first);
    instance_record r{"r", "", {}, {}, false};
    s.journal(b, r);
    for (int i = 0; i < 5; ++i)
      s.record(b, json{{"i", i}});
    CHECK(s.outbox().empty()); // nothing before commit
    REQUIRE(s.commit(b));
    CHECK(b.ops.empty());
    CHECK(s.outbox().size() == 2);
    CHECK(s.load_instances().size() == 1);
    CHECK(s.history(100).size() == 3);
    s.erase_outbox(b, first);
    REQUIRE(s.commit(b, false));
    CHECK(s.outbox().size() == 1);
  }
  {
    alert_store s{open_leveldb_kv(dir.string()), 3};
    alert_store::batch b;
    auto id = s.add_outbox(b, json{{"key", "c"}});
    REQUIRE(s.commit(b));
    CHECK(id > first);
    CHECK(s.outbox().size() == 2);
    CHECK(s.outbox().front().second["key"] == "b");
  }
  std::filesystem::remove_all(dir);
}

}

TEST_SUITE("alerts.store") {

TEST_CASE("compaction keeps the newest event of each rule; a reopened store "
          "recovers the same rules and instance states") {
  auto dir = std::filesystem::temp_directory_path()
             / ("cairn_alert_compact_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::map<std::string, rule_event> heads;
  std::map<std::string, json> rules;
  std::vector<instance_record> states;
  {
    alert_store s{open_leveldb_kv(dir.string()), 100};
    // 20 rules, each updated 10 times by two members, every third deleted,
    // and one written concurrently (equal clock, the later origin wins).
    for (int v = 1; v <= 10; ++v)
      for (int i = 0; i < 20; ++i) {
        auto name = "r" + std::to_string(i);
        bool del = v == 10 && i % 3 == 0;
        rule_event e{0,
                     del ? rule_event_kind::deleted
                         : v == 1 ? rule_event_kind::created
                                  : rule_event_kind::updated,
                     name,
                     del ? json(nullptr) : json{{"name", name}, {"v", v}},
                     v, stamp{static_cast<uint64_t>(v), v % 2 ? "n1" : "n2"}};
        REQUIRE(s.append(e));
      }
    rule_event a{0, rule_event_kind::updated, "r1", json{{"name", "r1"}, {"v", "n3"}},
                 11, stamp{10, "n3"}};
    REQUIRE(s.append(a));
    // An older write arriving late (anti-entropy) is in the log but not a head.
    rule_event late{0, rule_event_kind::updated, "r2", json{{"name", "r2"}, {"v", "old"}},
                    12, stamp{3, "n1"}};
    REQUIRE(s.append(late));
    for (int i = 0; i < 5; ++i) {
      instance_record r{"r" + std::to_string(i), "g", {{"g", "x"}}, {}, false};
      r.state.state = i % 2 ? alert_state::firing : alert_state::pending;
      r.state.active_since = 1000 + i;
      r.state.episode = static_cast<uint64_t>(i);
      r.clock = 4;
      r.origin = "n2";
      REQUIRE(s.journal(r));
    }
    heads = s.rule_heads();
    rules = s.load_rules();
    states = s.load_instances();
    CHECK(s.rule_event_count() == 202);
    CHECK(rules.size() == 13);  // 20 minus 7 deleted
    CHECK(rules["r1"]["v"] == "n3");
    CHECK(rules["r1"]["version"] == 10);
    CHECK(rules["r2"]["v"] == 10);
    CHECK(heads.size() == 20);  // tombstones included
    CHECK(heads["r0"].kind == rule_event_kind::deleted);
    CHECK(s.compact() == 202 - 20);
    CHECK(s.rule_event_count() == 20);
    CHECK(s.compact() == 0);
    CHECK(s.load_rules() == rules);
  }
  {
    alert_store s{open_leveldb_kv(dir.string()), 100};
    CHECK(s.rule_events().size() == 20);
    CHECK(s.rule_event_count() == 20);
    CHECK(s.load_rules() == rules);
    auto again = s.rule_heads();
    REQUIRE(again.size() == heads.size());
    for (auto& [name, e] : heads) {
      CHECK(again[name].st.clock == e.st.clock);
      CHECK(again[name].st.origin == e.st.origin);
      CHECK(again[name].kind == e.kind);
    }
    auto got = s.load_instances();
    REQUIRE(got.size() == states.size());
    for (size_t i = 0; i < got.size(); ++i) {
      CHECK(got[i].rule == states[i].rule);
      CHECK(got[i].state.state == states[i].state.state);
      CHECK(got[i].state.active_since == states[i].state.active_since);
      CHECK(got[i].clock == 4);
      CHECK(got[i].origin == "n2");
    }
    // New events continue after the compacted log.
    rule_event e{0, rule_event_kind::created, "new", json{{"name", "new"}}, 13,
                 stamp{1, "n1"}};
    REQUIRE(s.append(e));
    CHECK(s.load_rules().count("new") == 1);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("events written before stamps fold in log order") {
  alert_store s{make_memory_kv(), 10};
  rule_event a{0, rule_event_kind::created, "a", json{{"name", "a"}}, 1};
  rule_event b{0, rule_event_kind::updated, "a", json{{"name", "a"}, {"x", 1}}, 2};
  rule_event d{0, rule_event_kind::deleted, "a", nullptr, 3};
  rule_event c{0, rule_event_kind::created, "a", json{{"name", "a"}, {"x", 2}}, 4};
  for (auto* e : {&a, &b, &d, &c})
    REQUIRE(s.append(*e));
  auto heads = s.rule_heads();
  CHECK(heads["a"].st.clock == 4);
  CHECK(s.load_rules()["a"]["x"] == 2);
}

}
