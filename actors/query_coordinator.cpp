#include "actors/query_coordinator.hpp"

#include "actors/reply.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <functional>
#include <memory>

namespace cairn::actors {

namespace {

using nlohmann::json;

struct coordinator_state {
  settings_ptr settings;
  std::vector<partition_actor> partitions;
  static inline const char* name = "cairn.query_coordinator";
};

using coordinator_pointer = caf::stateful_actor<coordinator_state>*;

/// Sends one partial request to every partition and merges the answers.
/// `done(merged, coverage)` runs once, after the last answer or timeout.
template <class Partial, class... Ts>
void scatter(coordinator_pointer self,
             std::function<void(Partial&&, cqrs::coverage&&)> done,
             Ts... xs) {
  struct gather {
    Partial merged;
    cqrs::coverage cov;
    size_t outstanding = 0;
  };
  auto& st = self->state;
  auto g = std::make_shared<gather>();
  g->outstanding = st.partitions.size();
  auto finish = [g, done] {
    if (--g->outstanding == 0) {
      std::sort(g->cov.missing_partitions.begin(),
                g->cov.missing_partitions.end());
      done(std::move(g->merged), std::move(g->cov));
    }
  };
  for (uint32_t p = 0; p < st.partitions.size(); ++p) {
    self->request(st.partitions[p], st.settings->query_timeout, xs...)
      .then(
        [g, finish](Partial& x) {
          g->merged.merge(std::move(x));
          finish();
        },
        [g, finish, p](caf::error&) {
          g->cov.missing_partitions.push_back(p);
          finish();
        });
  }
}

void answer_stats(coordinator_pointer self, caf::response_promise rp,
                  json id) {
  struct gather {
    std::vector<partition_stats> parts;
    std::vector<uint32_t> missing;
    size_t outstanding = 0;
  };
  auto& st = self->state;
  auto g = std::make_shared<gather>();
  g->outstanding = st.partitions.size();
  auto s = st.settings;
  auto finish = [g, rp, id, s]() mutable {
    if (--g->outstanding != 0)
      return;
    std::sort(g->parts.begin(), g->parts.end(),
              [](auto& x, auto& y) { return x.id < y.id; });
    json out;
    out["ok"] = true;
    out["node"] = s->node_name;
    out["version"] = s->version;
    out["status"] = to_string(s->status.load());
    out["uptime_ms"] = cqrs::wall_clock_now() - s->started_at;
    uint64_t series = 0, buckets = 0, events = 0, replayed = 0;
    int64_t recovery_ms = 0;
    auto& parts = out["partitions"] = json::array();
    for (auto& p : g->parts) {
      series += p.series;
      buckets += p.buckets;
      events += p.events;
      replayed += p.replayed_events;
      recovery_ms = std::max(recovery_ms, p.recovery_ms);
      parts.push_back({{"id", p.id},
                       {"series", p.series},
                       {"buckets", p.buckets},
                       {"events", p.events},
                       {"batches", p.batches},
                       {"journal_seq", p.journal_seq},
                       {"snapshot_seq", p.snapshot_seq},
                       {"replayed_events", p.replayed_events},
                       {"duplicates", p.duplicates}});
    }
    out["series"] = series;
    out["buckets"] = buckets;
    out["events_applied"] = events;
    out["recovery"] = {{"replayed_events", replayed},
                       {"time_ms", recovery_ms}};
    auto& counters = out["counters"] = json::object();
    for (auto& [name, value] : s->metrics->snapshot())
      counters[name] = value;
    out["events"] = {
      {"accepted", counters.value("cairn_events_accepted_total", int64_t{0})},
      {"rejected", counters.value("cairn_events_rejected_total", int64_t{0})}};
    if (!g->missing.empty()) {
      out["partial"] = true;
      out["missing_partitions"] = g->missing;
    }
    rp.deliver(finish_reply(out, id));
  };
  for (uint32_t p = 0; p < st.partitions.size(); ++p) {
    self->request(st.partitions[p], st.settings->query_timeout,
                  stats_atom::value)
      .then(
        [g, finish](partition_stats& x) mutable {
          g->parts.push_back(x);
          finish();
        },
        [g, finish, p](caf::error&) mutable {
          g->missing.push_back(p);
          finish();
        });
  }
}

caf::behavior coordinator_impl(coordinator_pointer self, settings_ptr s,
                               std::vector<partition_actor> partitions) {
  self->state.settings = s;
  self->state.partitions = std::move(partitions);
  return {
    [=](query_atom, const std::string& line) -> caf::result<std::string> {
      auto& st = self->state;
      auto req = json::parse(line, nullptr, false);
      if (req.is_discarded() || !req.is_object())
        return error_reply(nullptr, cqrs::error_code::bad_request,
                           "request is not a JSON object");
      auto id = req.contains("id") ? req["id"] : json{};
      auto op = req.value("op", std::string{});
      auto now = cqrs::wall_clock_now();
      auto rp = self->make_response_promise<std::string>();
      auto fail = [&](const cqrs::problem& p) {
        rp.deliver(error_reply(id, p.code, p.message));
      };
      if (op == "query") {
        auto parsed = cqrs::parse_query(req, now, st.settings->tiers);
        if (auto* p = std::get_if<cqrs::problem>(&parsed)) {
          fail(*p);
          return rp;
        }
        auto q = std::make_shared<const cqrs::query_spec>(
          std::get<cqrs::query_spec>(std::move(parsed)));
        scatter<cqrs::query_partial>(
          self,
          [rp, q, id, s](cqrs::query_partial&& x,
                         cqrs::coverage&& cov) mutable {
            json out;
            cqrs::render_query(*q, x, s->tiers, s->mapping, cov, out);
            rp.deliver(finish_reply(out, id));
          },
          query_atom::value, query_spec_ptr{q});
      } else if (op == "topk") {
        auto parsed = cqrs::parse_topk(req, now, st.settings->tiers);
        if (auto* p = std::get_if<cqrs::problem>(&parsed)) {
          fail(*p);
          return rp;
        }
        auto q = std::make_shared<const cqrs::topk_spec>(
          std::get<cqrs::topk_spec>(std::move(parsed)));
        scatter<cqrs::topk_partial>(
          self,
          [rp, q, id, s](cqrs::topk_partial&& x,
                         cqrs::coverage&& cov) mutable {
            json out;
            cqrs::render_topk(*q, x, s->mapping, cov, out);
            rp.deliver(finish_reply(out, id));
          },
          topk_atom::value, topk_spec_ptr{q});
      } else if (op == "series") {
        auto parsed = cqrs::parse_series(req);
        if (auto* p = std::get_if<cqrs::problem>(&parsed)) {
          fail(*p);
          return rp;
        }
        auto q = std::make_shared<const cqrs::series_spec>(
          std::get<cqrs::series_spec>(std::move(parsed)));
        scatter<cqrs::series_partial>(
          self,
          [rp, q, id](cqrs::series_partial&& x,
                      cqrs::coverage&& cov) mutable {
            json out;
            cqrs::render_series(*q, x, cov, out);
            rp.deliver(finish_reply(out, id));
          },
          series_atom::value, series_spec_ptr{q});
      } else if (op == "metrics") {
        scatter<cqrs::metrics_partial>(
          self,
          [rp, id](cqrs::metrics_partial&& x, cqrs::coverage&& cov) mutable {
            json out;
            cqrs::render_metrics(x, cov, out);
            rp.deliver(finish_reply(out, id));
          },
          metrics_atom::value);
      } else if (op == "stats") {
        answer_stats(self, rp, id);
      } else {
        fail({cqrs::error_code::unknown_op, "unknown op '" + op + "'"});
      }
      return rp;
    },
  };
}

} // namespace

caf::actor spawn_query_coordinator(caf::actor_system& sys,
                                   settings_ptr settings,
                                   std::vector<partition_actor> partitions) {
  return sys.spawn(coordinator_impl, std::move(settings),
                   std::move(partitions));
}

} // namespace cairn::actors
