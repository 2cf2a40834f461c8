#include "sagas/saga.hpp"
#include "sagas/saga_log.hpp"

#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <functional>
#include <map>
#include <set>

using namespace cairn::sagas;

namespace {

/// The outside world the steps act on: each step's effect is applied at
/// most once per idempotency key, and undone at most once.
struct world {
  /// step -> how many times its action fails (or times out) before working.
  std::map<uint32_t, int> failures;
  std::map<uint32_t, int> undo_failures;
  std::set<uint32_t> times_out;  ///< the action never answers (timeout)
  std::set<uint32_t> always_fails;
  std::set<uint32_t> undo_always_fails;
  std::map<std::string, int> applied;  ///< key -> effect count (0 or 1)
  std::set<std::string> undone;
  int calls = 0;

  /// Runs one action; returns true on success, false on failure.
  bool run(const saga_action& a) {
    ++calls;
    auto do_key = a.idempotency_key.substr(0, a.idempotency_key.rfind('/'))
                  + "/do";
    if (a.kind == saga_action::compensate) {
      if (undo_always_fails.count(a.step) || undo_failures[a.step]-- > 0)
        return false;
      // Idempotent undo: nothing to undo is fine.
      if (applied[do_key] > 0 && !undone.count(do_key)) {
        undone.insert(do_key);
        applied[do_key] = 0;
      }
      return true;
    }
    if (always_fails.count(a.step) || failures[a.step]-- > 0)
      return false;
    if (applied[a.idempotency_key] == 0 && !undone.count(a.idempotency_key))
      applied[a.idempotency_key] = 1;  // the same key twice: applied once
    return true;
  }

  int effects() const {
    int n = 0;
    for (auto& [k, v] : applied)
      n += v;
    return n;
  }
};

saga_spec three_steps() {
  saga_spec spec;
  spec.type = "test";
  for (auto name : {"a", "b", "c"}) {
    step_spec s;
    s.name = name;
    s.retry = {3, 100, 1000, 2.0, true};
    s.compensation_retry = {4, 100, 1000, 2.0, false};
    s.timeout = 500;
    spec.steps.push_back(s);
  }
  spec.timeout = 60'000;
  return spec;
}

/// Drives `s` to the end (or `limit` actions). `now` advances by waits and
/// timeouts. `crash_after`: stop (as a crash would) after that many log
/// appends, leaving the saga where it is.
void drive(saga& s, world& w, millis& now, int limit = 1000) {
  for (int i = 0; i < limit && !s.finished(); ++i) {
    auto a = s.next(now);
    if (a.kind == saga_action::done)
      break;
    if (a.kind == saga_action::wait) {
      REQUIRE(a.until >= now);
      now = a.until;
      continue;
    }
    if (!s.begin(a, now))
      return;  // the log refused: a crash from the saga's point of view
    if (a.kind == saga_action::execute && w.times_out.count(a.step)) {
      now = a.until;
      if (!s.failed("timeout", now))
        return;
      continue;
    }
    bool ok = w.run(a);
    now += 10;
    if (!(ok ? s.succeeded("r" + std::to_string(a.step), now)
             : s.failed("boom", now)))
      return;
  }
}

} // namespace

TEST_SUITE("sagas.saga") {
  TEST_CASE("success: every step once, results kept, finished succeeded") {
    memory_saga_log log;
    auto spec = three_steps();
    world w;
    millis now = 1000;
    auto s = saga::start(spec, "s1", R"({"p":1})", log, now);
    REQUIRE(s);
    drive(*s, w, now);
    CHECK(s->phase() == saga_phase::succeeded);
    CHECK(w.effects() == 3);
    CHECK(w.calls == 3);
    CHECK(s->results() == std::vector<std::string>{"r0", "r1", "r2"});
    auto records = log.load().at("s1");
    CHECK(records.front().kind == record_kind::started);
    CHECK(records.front().detail == R"({"p":1})");
    CHECK(records.back().kind == record_kind::finished);
    CHECK(records.back().detail == "succeeded");
    CHECK(s->next(now).kind == saga_action::done);
  }

  TEST_CASE("a failed attempt is retried after a backoff, then succeeds") {
    memory_saga_log log;
    auto spec = three_steps();
    world w;
    w.failures[1] = 2;
    millis now = 0;
    auto s = saga::start(spec, "s2", "", log, now);
    REQUIRE(s);
    drive(*s, w, now);
    CHECK(s->phase() == saga_phase::succeeded);
    CHECK(w.effects() == 3);
    CHECK(w.calls == 5);
  }

  TEST_CASE("failure at each step compensates what started, in reverse") {
    auto spec = three_steps();
    for (uint32_t failing = 0; failing < 3; ++failing) {
      CAPTURE(failing);
      memory_saga_log log;
      world w;
      w.always_fails.insert(failing);
      millis now = 0;
      auto s = saga::start(spec, "f", "", log, now);
      REQUIRE(s);
      drive(*s, w, now);
      CHECK(s->phase() == saga_phase::compensated);
      CHECK(w.effects() == 0);  // everything undone
      CHECK(s->error().find("failed 3 times") != std::string::npos);
      // Undo order: failing step first (it may have taken effect), down to 0.
      std::vector<uint32_t> undo_order;
      for (auto& r : log.load().at("f"))
        if (r.kind == record_kind::undo_done)
          undo_order.push_back(r.step);
      std::vector<uint32_t> want;
      for (int i = static_cast<int>(failing); i >= 0; --i)
        want.push_back(static_cast<uint32_t>(i));
      CHECK(undo_order == want);
    }
  }

  TEST_CASE("compensation failures are retried; past the budget: stuck") {
    auto spec = three_steps();
    {
      memory_saga_log log;
      world w;
      w.always_fails.insert(2);
      w.undo_failures[1] = 3;  // within the budget of 4
      millis now = 0;
      auto s = saga::start(spec, "c1", "", log, now);
      REQUIRE(s);
      drive(*s, w, now);
      CHECK(s->phase() == saga_phase::compensated);
      CHECK(w.effects() == 0);
    }
    {
      memory_saga_log log;
      world w;
      w.always_fails.insert(2);
      w.undo_always_fails.insert(0);
      millis now = 0;
      auto s = saga::start(spec, "c2", "", log, now);
      REQUIRE(s);
      drive(*s, w, now);
      CHECK(s->phase() == saga_phase::stuck);
      CHECK(log.load().at("c2").back().detail == "stuck");
      CHECK(w.effects() == 1);  // step 0 could not be undone
    }
  }

  TEST_CASE("a step that never answers times out per attempt") {
    auto spec = three_steps();
    memory_saga_log log;
    world w;
    w.times_out.insert(1);
    millis now = 0;
    auto s = saga::start(spec, "t", "", log, now);
    REQUIRE(s);
    drive(*s, w, now);
    CHECK(s->phase() == saga_phase::compensated);
    // three attempts of 500 ms each, plus backoffs below 1 s each
    CHECK(now >= 3 * 500);
    CHECK(now < 3 * 500 + 3 * 1000 + 1000);
  }

  TEST_CASE("the whole saga's timeout stops retries and compensates") {
    auto spec = three_steps();
    spec.timeout = 700;
    spec.steps[1].retry.max_attempts = 100;
    memory_saga_log log;
    world w;
    w.always_fails.insert(1);
    millis now = 0;
    auto s = saga::start(spec, "st", "", log, now);
    REQUIRE(s);
    drive(*s, w, now);
    CHECK(s->phase() == saga_phase::compensated);
    CHECK(s->error().find("timed out") != std::string::npos);
    CHECK(w.effects() == 0);
  }

  TEST_CASE("past a pivot step the saga only goes forward") {
    auto spec = three_steps();
    spec.steps[1].pivot = true;
    spec.timeout = 700;
    {
      // Step 1 (the pivot) fails 20 times, far past max_attempts (3) and the
      // saga's timeout: it keeps retrying and then finishes forward.
      memory_saga_log log;
      world w;
      w.failures[1] = 20;
      millis now = 0;
      auto s = saga::start(spec, "p1", "", log, now);
      REQUIRE(s);
      drive(*s, w, now);
      CHECK(s->phase() == saga_phase::succeeded);
      CHECK(w.effects() == 3);
      CHECK(w.calls == 23);
      CHECK(now > spec.timeout);
    }
    {
      // A step after the pivot is retried the same way.
      memory_saga_log log;
      world w;
      w.failures[2] = 7;
      millis now = 0;
      auto s = saga::start(spec, "p2", "", log, now);
      REQUIRE(s);
      drive(*s, w, now);
      CHECK(s->phase() == saga_phase::succeeded);
    }
    {
      // Before the pivot the usual rules hold: step 0 failing compensates.
      memory_saga_log log;
      world w;
      w.always_fails.insert(0);
      millis now = 0;
      auto s = saga::start(spec, "p3", "", log, now);
      REQUIRE(s);
      drive(*s, w, now);
      CHECK(s->phase() == saga_phase::compensated);
    }
    {
      // abort is refused once the pivot began, and a log that compensates
      // after it is refused by recover.
      memory_saga_log log;
      millis now = 0;
      auto s = saga::start(spec, "p4", "", log, now);
      REQUIRE(s);
      auto a = s->next(now);
      REQUIRE(s->begin(a, now));
      REQUIRE(s->succeeded("r0", now));
      CHECK_FALSE(s->past_pivot());
      a = s->next(now);
      CHECK(a.step == 1);
      REQUIRE(s->begin(a, now));
      CHECK(s->past_pivot());
      CHECK_FALSE(s->abort("operator", now));
      auto records = log.load().at("p4");
      records.push_back({record_kind::step_failed, 1, 1, 5, "x", {}});
      records.push_back({record_kind::compensating, 1, 1, 6, "x", {}});
      CHECK_FALSE(saga::recover(spec, "p4", records, log));
    }
  }

  TEST_CASE("backoff doubles up to the cap; full jitter stays in range") {
    retry_policy p{10, 100, 1000, 2.0, false};
    CHECK(p.backoff(1, 0) == 100);
    CHECK(p.backoff(2, 0) == 200);
    CHECK(p.backoff(4, 0) == 800);
    CHECK(p.backoff(5, 0) == 1000);
    CHECK(p.backoff(30, 0) == 1000);
    p.jitter = true;
    std::set<millis> seen;
    for (uint64_t seed = 0; seed < 200; ++seed) {
      auto b = p.backoff(3, seed);
      CHECK(b >= 0);
      CHECK(b <= 400);
      seen.insert(b);
      CHECK(p.backoff(3, seed) == b);  // deterministic per seed
    }
    CHECK(seen.size() > 50);
  }

  TEST_CASE("crash at every point: replaying the log continues or compensates") {
    // Run the saga once to learn how many appends a whole run makes; then,
    // for every k, crash after k appends, recover from the log and finish.
    // Each step takes effect once (same idempotency key on re-runs) and the
    // end state is consistent: all applied (succeeded) or none (compensated).
    auto spec = three_steps();
    for (int scenario = 0; scenario < 3; ++scenario) {
      CAPTURE(scenario);
      auto make_world = [&] {
        world w;
        if (scenario == 1)
          w.failures[1] = 1;
        if (scenario == 2)
          w.always_fails.insert(2);
        return w;
      };
      size_t total = 0;
      {
        memory_saga_log log;
        auto w = make_world();
        millis now = 0;
        auto s = saga::start(spec, "x", "", log, now);
        REQUIRE(s);
        drive(*s, w, now);
        total = log.appends;
      }
      for (size_t k = 1; k <= total; ++k) {
        CAPTURE(k);
        memory_saga_log log;
        log.fail_after = k;
        auto w = make_world();
        millis now = 0;
        auto s = saga::start(spec, "x", "", log, now);
        REQUIRE(s);
        drive(*s, w, now);
        // The process dies; a new one reads the log.
        log.fail_after = static_cast<size_t>(-1);
        auto records = log.load().at("x");
        REQUIRE(records.size() == k);
        auto r = saga::recover(spec, "x", records, log);
        REQUIRE(r);
        drive(*r, w, now);
        REQUIRE(r->finished());
        if (scenario == 2) {
          CHECK(r->phase() == saga_phase::compensated);
          CHECK(w.effects() == 0);
        } else {
          CHECK(r->phase() == saga_phase::succeeded);
          CHECK(w.effects() == 3);
          for (auto& [key, n] : w.applied)
            CHECK(n <= 1);
        }
      }
    }
  }

  TEST_CASE("recover rejects logs that break the machine's rules") {
    auto spec = three_steps();
    memory_saga_log log;
    CHECK_FALSE(saga::recover(spec, "r", {}, log));
    std::vector<saga_record> bad{
      {record_kind::started, 0, 0, 0, "", "test"},
      {record_kind::step_done, 0, 1, 1, "", ""}};  // done without a start
    CHECK_FALSE(saga::recover(spec, "r", bad, log));
    std::vector<saga_record> skip{
      {record_kind::started, 0, 0, 0, "", "test"},
      {record_kind::step_started, 1, 1, 1, "", ""}};  // step 1 before 0
    CHECK_FALSE(saga::recover(spec, "r", skip, log));
  }

  TEST_CASE("record codec round trip; garbage is refused") {
    saga_record r{record_kind::undo_failed, 7, 3, 1764190000123, "x\"y\n\xff", "join"};
    auto d = decode(encode(r));
    REQUIRE(d);
    CHECK(d->kind == r.kind);
    CHECK(d->step == 7);
    CHECK(d->attempt == 3);
    CHECK(d->at == r.at);
    CHECK(d->type == "join");
    for (auto k = 0; k <= static_cast<int>(record_kind::finished); ++k) {
      auto kind = static_cast<record_kind>(k);
      CHECK(record_kind_from_string(to_string(kind)) == kind);
    }
    CHECK_FALSE(decode("not json"));
    CHECK_FALSE(decode(R"({"v":2,"kind":"started"})"));
    CHECK_FALSE(decode(R"({"v":1,"kind":"nope","step":0,"attempt":0,"at":0,"detail":""})"));
    CHECK_FALSE(decode(R"({"v":1,"kind":"started","step":"a","attempt":0,"at":0,"detail":""})"));
  }
}

TEST_SUITE("sagas.saga_log") {
  TEST_CASE("LevelDB log: durable across reopen, in order, erase and prune") {
    auto dir = std::filesystem::temp_directory_path()
               / ("cairn-saga-log-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    auto spec = three_steps();
    {
      auto log = open_leveldb_saga_log(dir.string());
      world w;
      millis now = 0;
      for (auto id : {"a", "b", "c"}) {
        auto s = saga::start(spec, id, id, *log, now);
        REQUIRE(s);
        drive(*s, w, now);
        now += 1000;
      }
      // One left in flight: started and one step begun.
      auto s = saga::start(spec, "d", "", *log, now);
      REQUIRE(s);
      auto a = s->next(now);
      REQUIRE(s->begin(a, now));
    }
    auto log = open_leveldb_saga_log(dir.string());
    auto all = log->load();
    CHECK(log->corrupt() == 0);
    REQUIRE(all.size() == 4);
    CHECK(all.at("a").back().detail == "succeeded");
    CHECK(all.at("b").front().detail == "b");
    auto d = saga::recover(spec, "d", all.at("d"), *log);
    REQUIRE(d);
    world w;
    millis now = 10'000;
    drive(*d, w, now);
    CHECK(d->phase() == saga_phase::succeeded);
    CHECK(prune_finished(*log, 2) == 2);  // a and b are the oldest finished
    auto left = log->load();
    CHECK(left.count("a") == 0);
    CHECK(left.count("b") == 0);
    CHECK(left.count("c") == 1);
    CHECK(left.count("d") == 1);
    // Appends after a reopen continue the sequence (no overwrite).
    auto s = saga::start(spec, "c", "again", *log, now);
    CHECK(log->load().at("c").size() == all.at("c").size() + 1);
    std::filesystem::remove_all(dir);
  }
}
