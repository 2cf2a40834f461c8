#include "alerts/evaluator.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <map>
#include <random>
#include <set>

using namespace cairn::alerts;
using cairn::cqrs::closed_bucket;
using nlohmann::json;

namespace {

const cairn::cqrs::ddsketch_mapping mapping{0.01};

rule make_rule(json extra = json::object()) {
  json j{{"name", "r"},      {"metric", "lat"}, {"agg", "avg"},
         {"window", "3s"},   {"op", ">"},       {"threshold", 100},
         {"repeat_interval", "10s"},
         {"annotations", {{"summary", "avg {{value}} {{host}}"}}},
         {"receivers", json::array({json{{"url", "http://127.0.0.1:1/h"}}})}};
  for (auto& [k, v] : extra.items())
    j[k] = v;
  auto r = parse_rule(j, 1000);
  REQUIRE(std::holds_alternative<rule>(r));
  return std::get<rule>(r);
}

closed_bucket cb(std::string host, millis start, double value,
                 std::string metric = "lat", bool correction = false) {
  closed_bucket b;
  b.key = cairn::cqrs::make_series_key(metric, {{"host", host}});
  b.start = start;
  b.value.add(start, value, mapping);
  b.correction = correction;
  return b;
}

} // namespace

TEST_SUITE("alerts.evaluator") {

TEST_CASE("a rule fires once, notifies once, resolves with a resolved notice") {
  evaluator ev{1000, mapping};
  ev.upsert(make_rule());
  CHECK(ev.instance_count() == 1);
  ev.add({cb("a", 0, 50)});
  auto e = ev.evaluate(1200);
  CHECK(e.changes.empty());
  CHECK(e.evaluated == 1);
  ev.add({cb("a", 1000, 500)}); // avg over [0,2000) = 275
  e = ev.evaluate(2200);
  REQUIRE(e.changes.size() == 1);
  CHECK(e.changes[0].to == alert_state::firing);
  REQUIRE(e.notices.size() == 1);
  auto& n = e.notices[0];
  CHECK(n.status == "firing");
  CHECK(n.labels.at("alertname") == "r");
  CHECK(n.annotations.at("summary") == "avg 275 {{host}}"); // no such tag
  CHECK(n.value == doctest::Approx(275));
  CHECK(n.receivers.size() == 1);
  CHECK_FALSE(e.journal.empty());
  auto key = n.key;
  // Same window end again: nothing to do.
  e = ev.evaluate(2500);
  CHECK(e.evaluated == 0);
  // Next second, still high: no new notice (repeat is 10 s).
  ev.add({cb("a", 2000, 400)});
  e = ev.evaluate(3200);
  CHECK(e.changes.empty());
  CHECK(e.notices.empty());
  // Values drop out of the 3 s window and low values come in.
  for (millis s = 3; s < 7; ++s)
    ev.add({cb("a", s * 1000, 1)});
  e = ev.evaluate(7200);
  REQUIRE(e.changes.size() == 1);
  CHECK(e.changes[0].to == alert_state::resolved);
  REQUIRE(e.notices.size() == 1);
  CHECK(e.notices[0].status == "resolved");
  CHECK(e.notices[0].key != key);
  CHECK(e.notices[0].ends_at == 7200);
}

TEST_CASE("repeat_interval re-sends while firing, with a new key") {
  evaluator ev{1000, mapping};
  ev.upsert(make_rule());
  std::vector<std::string> keys;
  for (millis s = 0; s < 25; ++s) {
    ev.add({cb("a", s * 1000, 500)});
    for (auto& n : ev.evaluate((s + 1) * 1000 + 200).notices)
      keys.push_back(n.key);
  }
  REQUIRE(keys.size() == 3); // at 1.2 s, 11.2 s, 21.2 s
  CHECK(keys[0] != keys[1]);
  CHECK(keys[1] != keys[2]);
}

TEST_CASE("group_wait delays the first notice; a short episode sends none") {
  evaluator ev{1000, mapping};
  ev.upsert(make_rule({{"group_wait", "2s"}}));
  ev.add({cb("a", 0, 500)});
  auto e = ev.evaluate(1200);
  CHECK(e.changes.size() == 1);
  CHECK(e.notices.empty());
  ev.add({cb("a", 1000, 500)});
  CHECK(ev.evaluate(2200).notices.empty());
  ev.add({cb("a", 2000, 500)});
  CHECK(ev.evaluate(3200).notices.size() == 1);

  evaluator short_ev{1000, mapping};
  short_ev.upsert(make_rule({{"group_wait", "5s"}, {"window", "1s"}}));
  short_ev.add({cb("a", 0, 500)});
  CHECK(short_ev.evaluate(1200).changes.size() == 1);
  short_ev.add({cb("a", 1000, 1)});
  auto r = short_ev.evaluate(2200);
  REQUIRE(r.changes.size() == 1);
  CHECK(r.changes[0].to == alert_state::resolved);
  CHECK(r.notices.empty());
}

TEST_CASE("group_by: one instance per group; idle groups are dropped") {
  evaluator ev{1000, mapping};
  ev.upsert(make_rule({{"group_by", {"host"}}, {"window", "1s"}}));
  CHECK(ev.instance_count() == 0);
  ev.add({cb("a", 0, 500), cb("b", 0, 5), cb("c", 0, 600)});
  ev.add({cb("x", 0, 999, "other")});
  auto e = ev.evaluate(1200);
  CHECK(ev.instance_count() == 3);
  CHECK(e.changes.size() == 2);
  CHECK(e.notices.size() == 2);
  std::set<std::string> hosts;
  for (auto& n : e.notices)
    hosts.insert(n.labels.at("host"));
  CHECK(hosts == std::set<std::string>{"a", "c"});
  // No more data: firing groups resolve (no_data ok), then all are dropped.
  e = ev.evaluate(2200);
  CHECK(e.changes.size() == 2);
  CHECK(e.notices.size() == 2);
  CHECK(ev.instance_count() == 0);
  size_t erased = 0;
  for (auto& j : e.journal)
    erased += j.erased;
  CHECK(erased == 3);
}

TEST_CASE("where filters series; several series of a group merge exactly") {
  evaluator ev{1000, mapping};
  ev.upsert(make_rule({{"agg", "sum"}, {"window", "1s"}, {"where", {{"dc", "eu"}}}}));
  auto key = [](std::string host, std::string dc) {
    return cairn::cqrs::make_series_key("lat", {{"host", host}, {"dc", dc}});
  };
  closed_bucket a, b, c;
  a.key = key("a", "eu");
  b.key = key("b", "eu");
  c.key = key("c", "us");
  for (auto* x : {&a, &b, &c})
    x->value.add(0, 60, mapping);
  ev.add({a, b, c});
  auto e = ev.evaluate(1200);
  REQUIRE(e.changes.size() == 1);
  CHECK(e.changes[0].at.state.value == doctest::Approx(120));
}

TEST_CASE("many where rules on one metric: each sees exactly its series "
          "(rules indexed by their first where tag)") {
  evaluator ev{1000, mapping};
  // 50 rules where host=hK, 5 where host=hK and dc=eu (two tags, the
  // first by key order is dc), one without where; thresholds below every
  // sum, so each evaluation reports what its rule saw.
  for (int k = 0; k < 50; ++k)
    ev.upsert(make_rule({{"name", "h" + std::to_string(k)}, {"agg", "sum"},
                         {"window", "1s"}, {"threshold", 0},
                         {"where", {{"host", "h" + std::to_string(k)}}}}));
  for (int k = 0; k < 5; ++k)
    ev.upsert(make_rule({{"name", "eu" + std::to_string(k)}, {"agg", "sum"},
                         {"window", "1s"}, {"threshold", 0},
                         {"where", {{"host", "h" + std::to_string(k)},
                                    {"dc", "eu"}}}}));
  ev.upsert(make_rule({{"name", "all"}, {"agg", "sum"}, {"window", "1s"},
                       {"threshold", 0}}));
  std::vector<closed_bucket> in;
  for (int k = 0; k < 50; ++k) {
    closed_bucket b;
    b.key = cairn::cqrs::make_series_key(
      "lat", {{"host", "h" + std::to_string(k)}, {"dc", k % 2 ? "us" : "eu"}});
    b.value.add(0, k + 1, mapping);
    in.push_back(b);
  }
  ev.add(in);
  auto e = ev.evaluate(1200);
  std::map<std::string, double> seen;
  for (auto& c : e.changes)
    seen[c.at.rule] = c.at.state.value;
  CHECK(seen.size() == 50 + 3 + 1); // eu1, eu3 see nothing: h1 and h3 are us
  for (int k = 0; k < 50; ++k)
    CHECK(seen["h" + std::to_string(k)] == doctest::Approx(k + 1));
  CHECK(seen.at("eu0") == doctest::Approx(1));
  CHECK(seen.at("eu2") == doctest::Approx(3));
  CHECK(seen.at("eu4") == doctest::Approx(5));
  CHECK(seen.count("eu1") == 0);
  CHECK(seen.at("all") == doctest::Approx(50 * 51 / 2));
}

TEST_CASE("a correction replaces the earlier value of its series") {
  evaluator ev{1000, mapping};
  ev.upsert(make_rule({{"window", "1s"}}));
  ev.add({cb("a", 0, 500)});
  auto c = cb("a", 0, 10, "lat", true);
  ev.add({c});
  auto e = ev.evaluate(1200);
  CHECK(e.changes.empty());
  CHECK(e.evaluated == 1);
}

TEST_CASE("p99 over the window; no data alerting on a silent metric") {
  evaluator ev{1000, mapping};
  ev.upsert(make_rule({{"agg", "p99"}, {"threshold", 250}}));
  std::vector<closed_bucket> bs;
  for (int i = 0; i < 100; ++i) {
    auto b = cb("a", 0, i < 95 ? 10 : 400);
    b.key = cairn::cqrs::make_series_key("lat", {{"i", std::to_string(i)}});
    bs.push_back(b);
  }
  ev.add(bs);
  auto e = ev.evaluate(1200);
  REQUIRE(e.changes.size() == 1);
  CHECK(e.changes[0].at.state.value > 250);

  evaluator silent{1000, mapping};
  silent.upsert(make_rule({{"no_data", "alerting"}, {"name", "heartbeat"}}));
  e = silent.evaluate(1200); // warm-up: [-2 s, 1 s) reaches before start
  CHECK(e.changes.empty());
  e = silent.evaluate(3200);
  REQUIRE(e.changes.size() == 1);
  CHECK(e.changes[0].to == alert_state::firing);
  CHECK(e.notices.size() == 1);
}

TEST_CASE("restore continues an episode instead of re-firing") {
  evaluator ev{1000, mapping};
  ev.upsert(make_rule({{"window", "1s"}}));
  ev.add({cb("a", 0, 500)});
  auto e = ev.evaluate(1200);
  REQUIRE(e.notices.size() == 1);
  auto rec = e.journal.back();
  CHECK(rec.state.state == alert_state::firing);

  evaluator again{1000, mapping};
  again.upsert(make_rule({{"window", "1s"}}));
  again.restore(rec);
  again.add({cb("a", 1000, 500)});
  e = again.evaluate(2200);
  CHECK(e.changes.empty());
  CHECK(e.notices.empty());
  again.add({cb("a", 2000, 1)});
  e = again.evaluate(3200);
  REQUIRE(e.notices.size() == 1);
  CHECK(e.notices[0].status == "resolved");
}

TEST_CASE("update keeps state; remove drops the rule") {
  evaluator ev{1000, mapping};
  ev.upsert(make_rule({{"window", "1s"}}));
  ev.add({cb("a", 0, 500)});
  ev.evaluate(1200);
  ev.upsert(make_rule({{"window", "1s"}, {"threshold", 200}}));
  ev.add({cb("a", 1000, 300)});
  auto e = ev.evaluate(2200);
  CHECK(e.changes.empty()); // still firing under the new threshold
  CHECK(ev.remove("r"));
  CHECK_FALSE(ev.remove("r"));
  CHECK(ev.rule_count() == 0);
}

}

TEST_SUITE("alerts.evaluator") {

TEST_CASE("warm-up: no data in an incomplete window changes nothing") {
  evaluator ev{1000, mapping, 10000};
  ev.upsert(make_rule({{"window", "3s"}}));
  instance_record rec{"r", "", {}, {}, false};
  rec.state.state = alert_state::firing;
  rec.state.fired_at = 5000;
  rec.state.last_notified = 5000;
  ev.restore(rec);
  auto e = ev.evaluate(11200); // window [8s, 11s) starts before 10 s
  CHECK(e.changes.empty());
  e = ev.evaluate(13200); // [10s, 13s): complete, and empty
  REQUIRE(e.changes.size() == 1);
  CHECK(e.changes[0].to == alert_state::resolved);
}

TEST_CASE("window_sketch: adding and subtracting gives the merge's bins") {
  std::mt19937_64 rng{7};
  std::normal_distribution<double> val{0, 500};
  std::vector<cairn::cqrs::ddsketch> parts(40);
  for (auto& sk : parts)
    for (int i = 0; i < 25; ++i) {
      double v = val(rng);
      sk.add(std::fabs(v) < 1 ? 0.0 : v, mapping);  // zeros, negatives, positives
    }
  window_sketch w;
  for (auto& sk : parts)
    w.add(sk);
  for (size_t i = 0; i < 15; ++i)
    REQUIRE(w.subtract(parts[i]));
  cairn::cqrs::ddsketch merged;
  for (size_t i = 15; i < parts.size(); ++i)
    merged.merge(parts[i]);
  cairn::cqrs::ddsketch built;
  w.build(built);
  CHECK(built.count() == merged.count());
  CHECK(built.zero_count() == merged.zero_count());
  for (double q : {0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 1.0})
    CHECK(built.quantile(q, mapping) == merged.quantile(q, mapping));
  // A sketch that was never added cannot be taken away.
  cairn::cqrs::ddsketch stranger;
  stranger.add(1e12, mapping);
  CHECK_FALSE(w.subtract(stranger));
}

TEST_CASE("quantile rules kept incrementally answer exactly like a full merge") {
  // Two evaluators fed the same random buckets (several series per group,
  // late buckets, corrections, gaps, negative values, a future bucket),
  // one merging its whole window at every evaluation: every instance value
  // after every evaluation must be identical.
  for (const char* agg : {"p99", "p50", "p0", "p100"}) {
    evaluator inc{1000, mapping};
    evaluator full{1000, mapping};
    full.set_incremental(false);
    auto r = make_rule({{"agg", agg}, {"window", "10s"}, {"group_by", {"host"}},
                        {"threshold", 1e9}});
    inc.upsert(r);
    full.upsert(r);
    std::mt19937_64 rng{static_cast<uint64_t>(agg[1])};
    std::lognormal_distribution<double> lat{3, 1.5};
    std::uniform_int_distribution<int> pick{0, 99};
    millis now = 0;
    for (int sec = 1; sec <= 120; ++sec) {
      now = sec * 1000 + 250;
      std::vector<closed_bucket> bs;
      for (int s = 0; s < 6; ++s) {
        if (pick(rng) < 15)
          continue;  // a gap
        millis start = (sec - 1) * 1000;
        if (pick(rng) < 10)
          start -= 1000 * (1 + pick(rng) % 5);  // late
        if (pick(rng) < 2)
          start += 5000;  // a clock ahead
        closed_bucket b;
        b.key = cairn::cqrs::make_series_key(
          "lat", {{"host", "h" + std::to_string(s % 2)}, {"s", std::to_string(s)}});
        b.start = start;
        int n = 1 + pick(rng) % 20;
        for (int i = 0; i < n; ++i) {
          double v = lat(rng);
          b.value.add(start, pick(rng) < 5 ? -v : pick(rng) < 3 ? 0.0 : v, mapping);
        }
        b.correction = pick(rng) < 10;
        bs.push_back(b);
        if (b.correction)  // the same series and start again, changed
          bs.push_back(b), bs.back().value.add(start, lat(rng), mapping);
      }
      inc.add(bs);
      full.add(bs);
      inc.evaluate(now);
      full.evaluate(now);
      std::map<std::string, double> a, b;
      inc.for_each([&](const rule&, const auto& labels, const instance& x) {
        a[labels.empty() ? "" : labels[0].second] = x.value;
      });
      full.for_each([&](const rule&, const auto& labels, const instance& x) {
        b[labels.empty() ? "" : labels[0].second] = x.value;
      });
      REQUIRE(a.size() == b.size());
      for (auto& [k, v] : a) {
        INFO(agg << " second " << sec << " group " << k);
        CHECK(((std::isnan(v) && std::isnan(b[k])) || v == b[k]));
      }
    }
  }
}

}
