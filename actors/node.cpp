#include "actors/node.hpp"

#include "actors/alerts/alert_manager.hpp"
#include "actors/ingestor.hpp"
#include "actors/live/live_hub.hpp"
#include "actors/parser.hpp"
#include "actors/peer_link.hpp"
#include "actors/query_coordinator.hpp"
#include "actors/sagas/saga_coordinator.hpp"
#include "actors/supervisor.hpp"
#include "runtime/journal.hpp"

#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>

namespace cairn::actors {

node::node(caf::actor_system& sys, std::shared_ptr<node_settings> settings)
  : sys_(sys), settings_(settings) {
  partitions_.reserve(settings->partitions);
  for (uint32_t p = 0; p < settings->partitions; ++p)
    partitions_.push_back(spawn_partition(sys, p, settings_));
  // Cluster: one peer link per other member (docs/cluster.md). Pending
  // hints of a previous run are read here, before any actor runs.
  std::vector<caf::actor> links;
  if (settings->cluster.enabled) {
    auto& c = settings->cluster;
    links.resize(c.members->size());
    for (uint32_t i = 0; i < links.size(); ++i)
      if (i != c.self_index)
        links[i] = spawn_peer_link(sys, settings_, i, load_hints(settings_, i));
    c.members->set_links(links);
    c.map->on_change([this](const cqrs::partition_map& m) { add_members(m); });
  }
  ingestor_ = spawn_ingestor(sys, settings_, partitions_, links);
  coordinator_ = spawn_query_coordinator(sys, settings_, partitions_, links);
  live_hub_ = spawn_live_hub(sys, settings_, partitions_, coordinator_, links);
  if (settings->alerts.enabled)
    alert_manager_ = spawn_alert_manager(sys, settings_, partitions_, links);
  // The saga coordinator is the one actor whose death would silently stop
  // a node's part in membership changes: it runs under a supervisor that
  // makes it anew on its log (docs/architecture.md, "Supervision").
  if (settings->cluster.enabled) {
    supervisor_options opts;
    opts.name = "saga coordinator";
    opts.make = [settings = settings_](caf::actor_system& s) {
      return spawn_saga_coordinator(s, settings,
                                    *settings->cluster.members->links());
    };
    opts.metrics = settings->metrics.get();
    sagas_ = spawn_supervisor(sys, std::move(opts));
  }
  parsers_ = spawn_parser_pool(sys, settings_, ingestor_, coordinator_,
                               live_hub_, alert_manager_, sagas_);
  if (!settings->journal) {
    settings->status = node_status::ready;
    ready_ = true;
    return;
  }
  // Recovery reads LevelDB (blocking), so it runs on threads of its own,
  // never on CAF's scheduler; partitions get their state by message.
  settings->status = node_status::recovering;
  recovery_ = std::thread{[this, settings] {
    auto start = std::chrono::steady_clock::now();
    std::atomic<uint32_t> next{0};
    std::atomic<uint64_t> replayed{0};
    auto worker = [&] {
      for (auto p = next++; p < partitions_.size(); p = next++) {
        try {
          auto r = recover_partition(p, settings_);
          replayed += replayed_events(*r);
          caf::anon_send(partitions_[p], recovered_atom::value, std::move(r));
        } catch (const std::exception& e) {
          spdlog::critical("{}; refusing to start (set "
                           "cairn.storage.skip-corrupt=true to skip corrupt "
                           "records)",
                           e.what());
          spdlog::shutdown();
          std::_Exit(3);
        }
      }
    };
    std::thread helper{worker};
    worker();
    helper.join();
    // Fault seam for tests (tests/integration/test_http_semantics.py): a
    // recovery that takes this much longer, so that the recovering state can
    // be observed from outside. Never set in production.
    if (const char* delay = std::getenv("CAIRN_TEST_RECOVERY_DELAY_MS"))
      std::this_thread::sleep_for(std::chrono::milliseconds{std::atol(delay)});
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - start)
                .count();
    settings->recovery_ms = ms;
    spdlog::info("recovery complete: {} partitions, {} events replayed in {} ms",
                 partitions_.size(), replayed.load(), ms);
    if (settings->status == node_status::recovering)
      settings->status = node_status::ready;
    std::function<void()> f;
    {
      std::lock_guard<std::mutex> guard{ready_mtx_};
      ready_ = true;
      f = std::move(on_ready_);
    }
    if (f)
      f();
  }};
}

node::~node() {
  shutdown();
}

std::vector<caf::actor> node::links() const {
  if (!settings_->cluster.members)
    return {};
  return *settings_->cluster.members->links();
}

void node::add_members(const cqrs::partition_map& m) {
  auto& table = *settings_->cluster.members;
  for (auto i = static_cast<uint32_t>(table.size()); i < m.nodes().size();
       ++i) {
    auto& name = m.nodes()[i];
    auto addr = cqrs::parse_member_address(name + "@" + m.address(i));
    if (!addr) {
      // Only a hand-made map (map adopt) can do this; its member stays
      // unreachable from here and answers here stay partial.
      spdlog::error("partition map v{} adds member {} without an address; "
                    "no link to it", m.version(), name);
      return;
    }
    try {
      table.make_tunnel(*addr);
    } catch (const std::exception& e) {
      spdlog::error("member {} joined, but no tunnel to it: {}", name,
                    e.what());
    }
    if (!table.add(*addr))
      continue;
    auto link = spawn_peer_link(sys_, settings_, i, {});
    table.set_link(i, link);
    if (auto home = table.home())
      caf::anon_send(link, hello_atom::value, home);
    spdlog::info("member {} at {}:{} joined (map v{})", name, addr->host,
                 addr->port, m.version());
  }
}

void node::when_ready(std::function<void()> f) {
  {
    std::lock_guard<std::mutex> guard{ready_mtx_};
    if (!ready_) {
      on_ready_ = std::move(f);
      return;
    }
  }
  f();
}

void node::dispatch(runtime::chunk c) {
  caf::anon_send(parsers_, std::move(c));
}

void node::shutdown() {
  if (stopped_)
    return;
  stopped_ = true;
  if (recovery_.joinable())
    recovery_.join();
  if (settings_->journal) {
    // Final snapshots, so that a clean restart replays nothing.
    caf::scoped_actor self{sys_};
    for (auto& p : partitions_)
      self->request(p, std::chrono::seconds{10}, snapshot_atom::value)
        .receive([](uint64_t) {},
                 [](caf::error& err) {
                   spdlog::warn("final snapshot failed: {}", to_string(err));
                 });
    settings_->journal->close();
  }
  auto stop = [](const auto& h) {
    if (h)
      caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
  };
  stop(parsers_);
  stop(sagas_);
  stop(alert_manager_);
  stop(live_hub_);
  stop(coordinator_);
  stop(ingestor_);
  for (auto& l : links())
    stop(l);
  if (settings_->cluster.hints)
    settings_->cluster.hints->close();
  for (auto& p : partitions_)
    stop(p);
}

} // namespace cairn::actors
