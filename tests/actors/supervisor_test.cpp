// The supervisor (actors/supervisor.hpp) on a real actor system: a child
// that throws or is killed is made anew behind the same handle and told its
// introductions again; a factory that fails is retried; messages sent while
// there is no child reach the next one; stopping the supervisor stops the
// child. The saga coordinator under it reopens its LevelDB log.
#include "actors/messages.hpp"
#include "actors/node_settings.hpp"
#include "actors/sagas/saga_coordinator.hpp"
#include "actors/supervisor.hpp"
#include "node_fixture.hpp"

#include <caf/all.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <tuple>

using namespace cairn;
using namespace std::chrono_literals;

namespace {

using test::system_fixture;
using boom_atom = caf::atom_constant<caf::atom("boom")>;

/// How many children were made, and how many of the next starts fail.
struct probe {
  std::atomic<int> made{0};
  std::atomic<int> fail_next{0};
};

/// A child that says which one it is and whether it was introduced, and
/// throws on error_atom.
caf::behavior probe_child(caf::event_based_actor*, int generation) {
  auto told = std::make_shared<bool>(false);
  return {
    [told](actors::hello_atom, caf::actor&) { *told = true; },
    [=](caf::get_atom) { return std::make_tuple(generation, *told); },
    [](boom_atom) -> int { throw std::runtime_error("boom"); },
  };
}

actors::supervisor_options probe_options(probe& p,
                                         runtime::metrics_registry* m) {
  actors::supervisor_options opts;
  opts.name = "probe";
  opts.make = [&p](caf::actor_system& sys) {
    if (p.fail_next > 0) {
      --p.fail_next;
      throw std::runtime_error("not yet");
    }
    return sys.spawn(probe_child, ++p.made);
  };
  opts.first_backoff = 10ms;
  opts.max_backoff = 40ms;
  opts.metrics = m;
  return opts;
}

/// Asks `sup` until a child of generation `want` answers (a request that
/// raced the old child's death fails; the next one reaches the new child).
std::tuple<int, bool> ask_until(caf::scoped_actor& self, const caf::actor& sup,
                                int want) {
  std::tuple<int, bool> last{0, false};
  for (int attempt = 0; attempt < 200; ++attempt) {
    self->request(sup, 5s, caf::get_atom::value)
      .receive([&](int gen, bool told) { last = {gen, told}; },
               [](caf::error&) {});
    if (std::get<0>(last) == want)
      return last;
    std::this_thread::sleep_for(10ms);
  }
  return last;
}

caf::actor child_of(caf::scoped_actor& self, const caf::actor& sup) {
  caf::actor child;
  self->request(sup, 5s, caf::sys_atom::value, caf::get_atom::value)
    .receive([&](caf::actor& c) { child = std::move(c); },
             [](caf::error& err) { FAIL(to_string(err)); });
  return child;
}

/// Sends `target` an exit with `reason`; true once `watched` is down
/// (within 5 s).
bool exit_and_watch(caf::scoped_actor& self, const caf::actor& target,
                    caf::exit_reason reason, const caf::actor& watched) {
  self->monitor(watched);
  caf::anon_send_exit(target, reason);
  bool down = false;
  self->receive([&](caf::down_msg& dm) { down = dm.source == watched; },
                caf::after(5s) >> [] {});
  return down;
}

/// Kills `a` and waits until it is gone.
void kill_and_wait(caf::scoped_actor& self, const caf::actor& a) {
  REQUIRE(exit_and_watch(self, a, caf::exit_reason::kill, a));
}

/// A supervisor of probe children on a system of its own.
struct probe_env {
  system_fixture f{1};
  runtime::metrics_registry m;
  probe p;
  caf::scoped_actor self{*f.sys};
  caf::actor sup;

  probe_env() : sup(actors::spawn_supervisor(*f.sys, probe_options(p, &m))) {}
  ~probe_env() { caf::anon_send_exit(sup, caf::exit_reason::user_shutdown); }
};

int64_t restarts(runtime::metrics_registry& m, const char* name) {
  return m
    .counter("cairn_actor_restarts_total", "", {{"actor", name}})
    .load();
}

} // namespace

TEST_SUITE("actors.supervisor") {
  TEST_CASE("a child that throws is made anew behind the same handle and "
            "introduced again") {
    probe_env e;
    auto& self = e.self;
    auto& p = e.p;
    const auto& sup = e.sup;
    self->send(sup, actors::hello_atom::value, caf::actor_cast<caf::actor>(self));
    CHECK(ask_until(self, sup, 1) == std::make_tuple(1, true));
    auto first = child_of(self, sup);
    self->send(sup, boom_atom::value);
    CHECK(ask_until(self, sup, 2) == std::make_tuple(2, true));
    auto second = child_of(self, sup);
    CHECK(second != first);
    CHECK(p.made == 2);
    CHECK(restarts(e.m, "probe") == 1);
  }

  TEST_CASE("a factory that fails is retried; messages sent meanwhile reach "
            "the next child") {
    probe_env e;
    auto& self = e.self;
    auto& p = e.p;
    const auto& sup = e.sup;
    auto first = child_of(self, sup);
    p.fail_next = 2;
    kill_and_wait(self, first);
    // The supervisor may not have seen the death yet; either way the
    // answer comes from the third attempt at a second child.
    CHECK(ask_until(self, sup, 2) == std::make_tuple(2, false));
    CHECK(p.fail_next == 0);
    CHECK(p.made == 2);
    CHECK(restarts(e.m, "probe") == 1);
  }

  TEST_CASE("stopping the supervisor stops its child; a child stopped on "
            "purpose is not made anew") {
    system_fixture f{1};
    runtime::metrics_registry m;
    probe p;
    caf::scoped_actor self{*f.sys};
    auto sup = actors::spawn_supervisor(*f.sys, probe_options(p, &m));
    auto child = child_of(self, sup);
    CHECK(exit_and_watch(self, sup, caf::exit_reason::user_shutdown, child));

    auto sup2 = actors::spawn_supervisor(*f.sys, probe_options(p, &m));
    auto child2 = child_of(self, sup2);
    CHECK(exit_and_watch(self, child2, caf::exit_reason::user_shutdown, sup2));
    CHECK(p.made == 2);
    CHECK(restarts(m, "probe") == 0);
  }

  TEST_CASE("a killed saga coordinator comes back on its LevelDB log") {
    system_fixture f{1};
    auto s = actors::make_node_settings(f.cfg);
    auto dir = std::filesystem::temp_directory_path()
               / ("cairn-sup-" + std::to_string(std::random_device{}()));
    s->sagas.path = dir.string();
    actors::supervisor_options opts;
    opts.name = "saga coordinator";
    opts.make = [s](caf::actor_system& sys) {
      return actors::spawn_saga_coordinator(sys, s, {});
    };
    opts.first_backoff = 10ms;
    opts.metrics = s->metrics.get();
    auto sup = actors::spawn_supervisor(*f.sys, opts);
    caf::scoped_actor self{*f.sys};
    auto ask = [&] {
      std::string out;
      self->request(sup, 5s, actors::request_atom::value,
                    std::string{R"({"op":"saga.list","id":7})"})
        .receive([&](std::string& reply) { out = std::move(reply); },
                 [&](caf::error& err) { out = to_string(err); });
      return out;
    };
    // Without a cluster the coordinator answers, but refuses the op.
    auto before = ask();
    CHECK(before.find("\"code\":\"unavailable\"") != std::string::npos);
    auto first = child_of(self, sup);
    kill_and_wait(self, first);
    caf::actor second;
    for (int i = 0; i < 200 && (!second || second == first); ++i) {
      std::this_thread::sleep_for(10ms);
      second = child_of(self, sup);
    }
    REQUIRE(second);
    CHECK(second != first);
    CHECK(ask() == before);
    CHECK(restarts(*s->metrics, "saga coordinator") == 1);
    caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
    self->monitor(second);
    self->receive([](caf::down_msg&) {}, caf::after(5s) >> [] {});
    std::filesystem::remove_all(dir);
  }
}
