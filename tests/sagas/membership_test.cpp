#include "sagas/membership.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>

using namespace cairn::sagas;

namespace {

/// Applies `plan` to `owners` and returns the partition counts per member.
std::map<std::string, size_t> after(std::vector<std::string> owners,
                                    const std::vector<partition_move>& plan) {
  for (auto& m : plan)
    owners.at(m.partition) = m.to;
  std::map<std::string, size_t> out;
  for (auto& o : owners)
    ++out[o];
  return out;
}

std::vector<std::string> round_robin(std::vector<std::string> nodes,
                                     uint32_t partitions) {
  std::vector<std::string> out;
  for (uint32_t p = 0; p < partitions; ++p)
    out.push_back(nodes[p % nodes.size()]);
  return out;
}

} // namespace

TEST_SUITE("sagas.membership") {
  TEST_CASE("every membership type has its steps, pivots where no undo is safe") {
    auto* move = membership_spec("move");
    REQUIRE(move);
    REQUIRE(move->steps.size() == 5);
    CHECK(move->steps[move_steps::copy].name == "copy");
    CHECK_FALSE(move->steps[move_steps::copy].pivot);
    CHECK(move->steps[move_steps::freeze].name == "freeze");
    CHECK(move->steps[move_steps::ship].name == "ship");
    CHECK(move->steps[move_steps::commit].name == "commit");
    CHECK(move->steps[move_steps::commit].pivot);
    CHECK_FALSE(move->steps[move_steps::ship].pivot);
    CHECK(move->steps[move_steps::drop].name == "drop");
    auto* dec = membership_spec("decommission");
    REQUIRE(dec);
    CHECK(dec->steps.size() == 4);
    CHECK(dec->steps[plan_steps::decommission_leave].pivot);
    REQUIRE(membership_spec("rebalance"));
    REQUIRE(membership_spec("join"));
    // evict: nothing before its pivot changes anything.
    auto* evict = membership_spec("evict");
    REQUIRE(evict);
    CHECK(evict->steps.size() == 2);
    CHECK(evict->steps[plan_steps::evict_survey].name == "survey");
    CHECK_FALSE(evict->steps[plan_steps::evict_survey].pivot);
    CHECK(evict->steps[plan_steps::evict_evict].pivot);
    CHECK(membership_spec("evacuate") == nullptr);
    // The join step may fail for good (its node never takes the map) and
    // is compensated; the plan is the point of no return.
    auto* join = membership_spec("join");
    CHECK_FALSE(join->steps[plan_steps::join_join].pivot);
    CHECK(join->steps[plan_steps::join_plan].pivot);
    // It waits about a minute for the node, whatever the jitter.
    auto& retry = join->steps[plan_steps::join_join].retry;
    millis waited = 0;
    for (uint32_t a = 1; a < retry.max_attempts; ++a)
      waited += retry.backoff(a, 42);
    CHECK(waited >= 50'000);
    CHECK(waited <= 90'000);
    CHECK(membership_spec("shuffle") == nullptr);
  }

  TEST_CASE("drain plan: every partition of the leaving member, spread evenly") {
    auto owners = round_robin({"n1", "n2", "n3", "n4"}, 16);
    auto plan = plan_drain(owners, {"n1", "n2", "n3", "n4"}, "n4");
    REQUIRE(plan.size() == 4);
    for (auto& m : plan) {
      CHECK(owners[m.partition] == "n4");
      CHECK(m.to != "n4");
    }
    auto counts = after(owners, plan);
    CHECK(counts.count("n4") == 0);
    // 16 over 3: 6, 5, 5 (the smaller names first on ties)
    CHECK(counts["n1"] == 6);
    CHECK(counts["n2"] == 5);
    CHECK(counts["n3"] == 5);
    // Deterministic: the same input, the same plan.
    CHECK(plan_drain(owners, {"n1", "n2", "n3", "n4"}, "n4") == plan);
    // Nobody left to take them.
    CHECK(plan_drain(round_robin({"n1"}, 4), {"n1"}, "n1").empty());
  }

  TEST_CASE("balance plan: a new member gets its share with the fewest moves") {
    auto owners = round_robin({"n1", "n2", "n3"}, 16);
    auto plan = plan_balance(owners, {"n1", "n2", "n3", "n4"});
    CHECK(plan.size() == 4);  // 16/4: n4 needs 4, nobody else changes
    auto counts = after(owners, plan);
    for (auto& [name, n] : counts)
      CHECK(n == 4);
    for (auto& m : plan)
      CHECK(m.to == "n4");
    // Already balanced: nothing to do.
    CHECK(plan_balance(round_robin({"n1", "n2"}, 16), {"n1", "n2"}).empty());
    // Partitions of a member that may not own any move first.
    auto stray = round_robin({"n1", "n2", "gone"}, 6);
    auto p2 = plan_balance(stray, {"n1", "n2"});
    auto c2 = after(stray, p2);
    CHECK(c2.count("gone") == 0);
    CHECK(c2["n1"] == 3);
    CHECK(c2["n2"] == 3);
    // Uneven counts end within one of each other.
    auto skew = std::vector<std::string>(10, "n1");
    auto c3 = after(skew, plan_balance(skew, {"n1", "n2", "n3"}));
    CHECK(c3["n1"] == 4);
    CHECK(c3["n2"] == 3);
    CHECK(c3["n3"] == 3);
  }

  TEST_CASE("plan codec round trip; garbage is refused") {
    std::vector<partition_move> plan{{3, "n4"}, {7, "n\"x"}};
    auto back = decode_plan(encode_plan(plan));
    REQUIRE(back);
    CHECK(*back == plan);
    CHECK(decode_plan("[]")->empty());
    CHECK_FALSE(decode_plan("{}"));
    CHECK_FALSE(decode_plan("[{\"partition\":-1,\"to\":\"n\"}]"));
    CHECK_FALSE(decode_plan("[{\"partition\":1}]"));
    CHECK_FALSE(decode_plan("nope"));
  }

  TEST_CASE("merging copies keeps the longer history per saga") {
    saga_record started{record_kind::started, 0, 0, 1, "{}", "move"};
    saga_record begun{record_kind::step_started, 0, 1, 2, "", ""};
    std::map<std::string, std::vector<saga_record>> mine{
      {"a", {started}}, {"b", {started, begun}}};
    std::map<std::string, std::vector<saga_record>> theirs{
      {"a", {started, begun}}, {"b", {started}}, {"c", {started}}};
    auto changed = merge_copies(mine, theirs);
    std::sort(changed.begin(), changed.end());
    CHECK(changed == std::vector<std::string>{"a", "c"});
    CHECK(mine["a"].size() == 2);
    CHECK(mine["b"].size() == 2);  // ours was longer: kept
    CHECK(mine["c"].size() == 1);
    CHECK(merge_copies(mine, theirs).empty());  // idempotent
    // A finished history beats a longer unfinished one.
    saga_record fin{record_kind::finished, 0, 0, 3, "succeeded", ""};
    std::map<std::string, std::vector<saga_record>> done{{"b", {started, fin}}};
    mine["b"] = {started, begun, begun};
    CHECK(merge_copies(mine, done) == std::vector<std::string>{"b"});
    CHECK(mine["b"].back().kind == record_kind::finished);
    std::map<std::string, std::vector<saga_record>> longer{
      {"b", {started, begun, begun}}};
    CHECK(merge_copies(done, longer).empty());  // finished stays
  }

  TEST_CASE("the byte pacer spaces chunks at the configured rate") {
    byte_pacer unlimited;
    CHECK(unlimited.reserve(1 << 30, 5) == 5);
    byte_pacer p{1'000'000};  // 1 MB/s
    CHECK(p.reserve(500'000, 1000) == 1000);  // the first goes at once
    CHECK(p.reserve(500'000, 1000) == 1500);  // then 0.5 s per 0.5 MB
    CHECK(p.reserve(100'000, 1200) == 2000);
    // After an idle spell no burst accumulates beyond "now".
    CHECK(p.reserve(1000, 10'000) == 10'000);
    CHECK(p.reserve(1000, 10'000) == 10'001);
  }
}
