// cairn-node: one Cairn node. Parses config, builds the actor system and the
// node's actors, starts the gateways, waits for SIGINT/SIGTERM.
#include "actors/http_access.hpp"
#include "actors/inline_reads.hpp"
#include "actors/messages.hpp"
#include "actors/node.hpp"
#include "actors/node_actor.hpp"
#include "actors/reply.hpp"
#include "actors/seed_join.hpp"
#include "actors/query_coordinator.hpp"
#include "promql/http_api.hpp"
#include "actors/write_routes.hpp"
#include "runtime/cluster_gate.hpp"
#include "runtime/detail/listener.hpp"
#include "runtime/fd_limit.hpp"
#include "runtime/http_server.hpp"
#include "runtime/journal.hpp"
#include "runtime/log.hpp"
#include "runtime/node_config.hpp"
#include "runtime/tcp_server.hpp"
#include "runtime/time.hpp"
#include "runtime/web_root.hpp"

#include <caf/actor_system.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/send.hpp>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <vector>
#include <stdexcept>

#include <malloc.h>

using namespace cairn;

namespace {

/// The Prometheus API's inline reads (docs/prometheus-api.md, "Latency"):
/// the promql engine's direct_source over actors::inline_reads, converting
/// the final-form points into the values a `query` reply would carry.
std::shared_ptr<const promql::direct_source>
prometheus_source(const actors::settings_ptr& settings) {
  auto reads = std::make_shared<actors::inline_reads>(settings);
  auto src = std::make_shared<promql::direct_source>();
  src->series = [reads](const std::string& metric, const promql::label_set& where,
                        size_t limit, std::vector<promql::source_series>& out) {
    std::vector<actors::inline_series> listed;
    if (!reads->series(metric, where, limit, listed))
      return false;
    out.clear();
    out.reserve(listed.size());
    for (auto& s : listed)
      out.push_back({std::move(s.key), std::move(s.tags)});
    return true;
  };
  src->read = [reads](const promql::source_read& r,
                      std::vector<std::vector<promql::cairn_point>>& out,
                      promql::problem& error) {
    actors::inline_read q{r.metric, r.keys, r.from, r.to, r.step, r.align, r.aggs};
    std::vector<actors::inline_points> points;
    cqrs::problem err;
    switch (reads->read(q, points, err)) {
      case actors::inline_status::busy:
        return promql::source_status::busy;
      case actors::inline_status::error:
        error = promql::problem_of(std::string{cqrs::to_string(err.code)}, err.message);
        return promql::source_status::error;
      case actors::inline_status::done:
        break;
    }
    // A point's values as the query reply renders them: count is the
    // point's count, the other aggs their final values (NaN: null).
    auto n = r.aggs.size();
    out.assign(points.size(), {});
    for (size_t i = 0; i < points.size(); ++i) {
      auto& pts = points[i];
      out[i].reserve(pts.finals.size());
      for (size_t j = 0; j < pts.finals.size(); ++j) {
        auto& fp = pts.finals[j];
        if (fp.count == 0)
          continue;
        promql::cairn_point c;
        c.t = fp.t;
        for (size_t k = 0; k < n; ++k) {
          auto& name = r.aggs[k];
          auto v = pts.values[j * n + k];
          if (name == "count")
            c.count = static_cast<double>(fp.count);
          else if (name == "sum")
            c.sum = v;
          else if (name == "min")
            c.min = v;
          else if (name == "max")
            c.max = v;
          else if (name == "last")
            c.last = v;
          else if (!name.empty() && name[0] == 'p')
            c.q = v;
        }
        out[i].push_back(c);
      }
    }
    return promql::source_status::done;
  };
  return src;
}

/// Blocks SIGINT/SIGTERM in every thread (call before any thread starts) so
/// that main can wait for them with sigwait.
/// The connection figures of a TCP gateway (NDJSON or line protocol) as
/// the stats reply shows them (docs/protocol.md, "stats").
nlohmann::json gateway_json(const runtime::tcp_server_stats& st) {
  return {{"open", st.connections_open},
          {"accepted", st.connections_accepted},
          {"refused", st.connections_refused},
          {"timed_out", st.connections_timed_out},
          {"lines_too_large", st.lines_too_large},
          {"bytes_read", st.bytes_read},
          {"tls_failed", st.tls_failed}};
}

sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

/// A start-up failure that is not a configuration error: one line, exit 1.
struct startup_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Fails like the TCP and HTTP listeners do if `host`:`port` cannot be
/// bound. The cluster port is bound by CAF later; checking it here first
/// gives the same one-line error before anything else has started.
void check_bindable(const std::string& host, uint16_t port,
                    const char* option) {
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::acceptor probe{ioc};
  boost::system::error_code ec;
  auto ep = runtime::detail::resolve_endpoint(ioc, host, port, option);
  probe.open(ep.protocol(), ec);
  if (!ec)
    probe.set_option(boost::asio::socket_base::reuse_address(true), ec);
  if (!ec)
    probe.bind(ep, ec);
  if (ec)
    throw startup_error("cannot listen on " + ep.address().to_string() + ":"
                        + std::to_string(port) + " (" + option
                        + "): " + ec.message());
}

/// Runs `f` when it goes out of scope unless dismissed: the teardown of a
/// start that failed half-way (an actor left running would make the
/// actor_system destructor wait for ever).
struct scope_exit {
  std::function<void()> f;
  ~scope_exit() {
    if (f)
      f();
  }
};

int run(runtime::node_config& cfg, const sigset_t& signals) {
  runtime::setup_logging(cfg.node_name, cfg.log_level, cfg.log_file);
  std::shared_ptr<actors::node_settings> settings;
  // A new node joins a running cluster through its seeds: the map it
  // answers with is the one this node starts from (docs/cluster.md).
  std::optional<cqrs::partition_map> joined;
  if (actors::wants_seed_join(cfg))
    joined = actors::join_through_seeds(cfg);
  try {
    settings = actors::make_node_settings(cfg, joined ? &*joined : nullptr);
  } catch (const std::invalid_argument& e) {
    throw runtime::config_error(e.what()); // tiers, cluster nodes, ...
  }

  // Descriptors: client connections plus a reserve must fit RLIMIT_NOFILE
  // (runtime/fd_limit.hpp, docs/configuration.md).
  runtime::fd_reserve reserve;
  if (cfg.storage_enabled)
    reserve.journal = static_cast<size_t>(runtime::journal_options{}.max_open_files) + 16;
  if (settings->cluster.enabled) {
    if (cfg.storage_enabled)
      reserve.hints = reserve.journal;
    reserve.cluster = 4 * settings->cluster.members->size() + 8;
  }
  // WebSockets of /v1/live are counted apart from HTTP requests.
  reserve.http = cfg.http_max_connections + cfg.http_max_websockets;
  // The influx port has a connection limit of its own, the same value.
  if (cfg.influx_port != 0)
    reserve.influx = cfg.tcp_max_connections;
  auto fds = runtime::fit_fd_limit(cfg.tcp_max_connections, reserve);
  if (fds.raised)
    spdlog::info("raised the open-file limit from {} to {} (cairn.tcp.max-connections "
                 "{} + {} reserved)",
                 fds.soft_before, fds.soft, cfg.tcp_max_connections,
                 reserve.total());
  if (fds.clamped)
    spdlog::warn("open-file limit {} (hard {}) is too low for "
                 "cairn.tcp.max-connections={} + {} reserved: accepting at "
                 "most {} client connections (raise ulimit -n)",
                 fds.soft, fds.hard, cfg.tcp_max_connections, reserve.total(),
                 fds.max_connections);

  // Every port is bound before anything else starts, so that a port in use
  // fails in one line, before the journal is opened or an actor spawned.
  actors::node* node_ptr = nullptr;
  std::atomic<runtime::tcp_server*> gateway{nullptr};
  std::atomic<runtime::tcp_server*> influx_gateway{nullptr};
  runtime::tcp_server_options topts;
  topts.host = cfg.bind_host;
  topts.port = cfg.tcp_port;
  topts.max_line = cfg.tcp_max_line;
  topts.max_connections = fds.max_connections;
  topts.window = cfg.tcp_window;
  topts.io_threads = cfg.io_threads();
  topts.idle_timeout = runtime::node_config::duration_of(cfg.tcp_idle_timeout_text);
  topts.line_timeout = runtime::node_config::duration_of(cfg.tcp_line_timeout_text);
  topts.option = "cairn.tcp.port";
  // TLS of the NDJSON port, shared by the influx port (docs/operations.md).
  topts.tls = {cfg.tcp_tls_certificate, cfg.tcp_tls_key, cfg.tcp_tls_client_ca,
               "cairn.tcp.tls-"};
  runtime::tcp_server tcp{topts, [&node_ptr](runtime::chunk c) {
                            node_ptr->dispatch(std::move(c));
                          }};
  tcp.bind();

  // Influx line protocol over TCP (cairn.influx.port, off by default): the
  // same gateway, chunks of format influx, nothing written back.
  std::optional<runtime::tcp_server> influx;
  if (cfg.influx_port != 0) {
    auto iopts = topts;
    iopts.port = cfg.influx_port;
    iopts.option = "cairn.influx.port";
    iopts.format = runtime::chunk_format::influx;
    iopts.replies = false;
    influx.emplace(iopts, [&node_ptr](runtime::chunk c) {
      node_ptr->dispatch(std::move(c));
    });
    influx->bind();
  }

  // POST /api and the Prometheus API (/api/v1/) hand one protocol request
  // line at a time through the same pipeline as a TCP connection of its own.
  runtime::http_server_options hopts;
  hopts.host = cfg.bind_host;
  hopts.port = cfg.http_port;
  // The dashboard's files: next to the config file, the current directory
  // or the binary (runtime/web_root.hpp); a missing one is only a warning
  // (logged below).
  auto web = runtime::find_web_root(cfg.web_root, cfg.config_file);
  hopts.web_root = web.path;
  hopts.tls = {cfg.http_tls_certificate, cfg.http_tls_key,
               cfg.http_tls_client_ca, "cairn.http.tls-"};
  // /readyz: 503 while recovering, stopping, or without a partition map.
  hopts.readiness = [settings]() -> std::string {
    auto status = settings->status.load();
    if (status != actors::node_status::ready)
      return std::string{"not ready: "} + to_string(status);
    if (settings->cluster.enabled && !settings->cluster.map)
      return "not ready: cluster map unknown";
    return {};
  };
  hopts.max_connections = cfg.http_max_connections;
  hopts.idle_timeout = runtime::node_config::duration_of(cfg.http_idle_timeout_text);
  hopts.read_timeout = runtime::node_config::duration_of(cfg.http_read_timeout_text);
  hopts.option = "cairn.http.port";
  hopts.max_websockets = cfg.http_max_websockets;
  hopts.io_threads = cfg.http_io_threads();
  hopts.ws_max_message = cfg.http_ws_max_message;
  hopts.ws_ping_interval = runtime::node_config::duration_of(cfg.http_ws_ping_interval_text);
  std::atomic<uint64_t> http_ids{1ull << 62};
  // `who`: the request's principal (docs/protocol.md, "Authentication"),
  // whose request the HTTP guard counted already.
  auto run_line = [&node_ptr, &http_ids](std::string line,
                                         std::function<void(std::string)> on_reply,
                                         std::shared_ptr<const runtime::auth::principal> who) {
    auto ctx = std::make_shared<runtime::connection_context>(
      http_ids.fetch_add(1), "http",
      [on_reply = std::move(on_reply)](uint64_t, std::string text) {
        while (!text.empty() && text.back() == '\n')
          text.pop_back();
        on_reply(std::move(text));
      });
    ctx->set_principal(std::move(who));
    ctx->charged_upstream = true;
    runtime::chunk c;
    c.conn = std::move(ctx);
    c.data = std::move(line);
    c.data += '\n';
    c.barrier = true;
    node_ptr->dispatch(std::move(c));
  };
  runtime::http_server http{hopts, *settings->metrics,
                            [](std::string, runtime::http_server::reply_fn) {}};
  http.api_with_principal([run_line](std::string body,
                                     std::shared_ptr<const runtime::auth::principal> who,
                                     runtime::http_server::reply_fn reply) {
    // One request line: newlines inside the body become spaces.
    for (auto& ch : body)
      if (ch == '\n' || ch == '\r')
        ch = ' ';
    // Error replies carry their HTTP status (docs/protocol.md, "HTTP
    // statuses"), the body stays the protocol's reply.
    run_line(std::move(body), [reply](std::string text) {
      if (text.empty())
        return reply(200, "{\"ok\":true}");
      auto status = actors::http_status_of_reply(text);
      reply(status, std::move(text));
    }, std::move(who));
  });
  // Tokens, scopes and request rates of every HTTP path (actors/http_access).
  http.guard(actors::make_http_guard(settings));
  // POST /write (line protocol) and POST /api/v1/write (Prometheus
  // remote_write): docs/integrations.md.
  actors::add_write_routes(http, [&node_ptr](runtime::chunk c) {
    node_ptr->dispatch(std::move(c));
  });
  // The Prometheus HTTP API (docs/prometheus-api.md): PromQL planned onto
  // series/query requests by the promql library.
  promql::api_options popts;
  popts.engine.tiers.clear();
  for (size_t i = 0; i < settings->tiers.size(); ++i)
    popts.engine.tiers.push_back(
      {settings->tiers[i].resolution, settings->tiers[i].retention});
  popts.engine.key_cache = std::make_shared<promql::group_key_cache>();
  popts.engine.source = prometheus_source(settings);
  popts.now = [] { return runtime::wall_clock_now(); };
  popts.cairn_version = settings->version;
  // Its requests go straight to the query coordinator as objects
  // (actors/query_coordinator.hpp, direct_read), not through the parsers.
  auto prom = std::make_shared<promql::prometheus_api>(
    std::move(popts), [&node_ptr](nlohmann::json req, promql::cairn_reply done) {
      auto* n = node_ptr;
      actors::direct_read(n ? n->coordinator() : caf::actor{}, std::move(req),
                          std::move(done));
    });
  http.route("/api/v1/", true,
             [prom](runtime::http_request req, runtime::http_server::response_fn reply) {
               promql::api_request r;
               r.method = std::move(req.method);
               r.path = std::move(req.path);
               r.query = std::move(req.query);
               r.body = std::move(req.body);
               r.content_type = std::string(req.header("content-type"));
               prom->handle(r, [reply = std::move(reply)](promql::api_response a) {
                 runtime::http_response out;
                 out.status = a.status;
                 out.body = std::move(a.body);
                 reply(std::move(out));
               });
             });
  // Live subscriptions over WebSocket (docs/protocol.md, "Live
  // subscriptions"): every message goes to the node's live hub.
  http.websocket("/v1/live", [&node_ptr](const std::shared_ptr<runtime::stream_sink>& sink,
                                         std::string message) {
    auto* n = node_ptr;
    if (n && actors::ws_admit(*n->settings(), sink, message))
      caf::anon_send(n->live_hub(), actors::request_atom::value, sink,
                     std::move(message));
  });
  http.bind();
  check_bindable(cfg.cluster_host, cfg.cluster_port, "cairn.cluster.port");

  // stats replies show the gateway's and the cluster gate's connection
  // figures once they run.
  std::atomic<runtime::cluster_gate*> gate_view{nullptr};
  std::atomic<runtime::http_server*> http_view{nullptr};
  settings->gateway_stats = [&gateway, &gate_view, &http_view, &influx_gateway,
                             metrics = settings->metrics](nlohmann::json& out) {
    if (auto* lp = influx_gateway.load()) {
      out["influx"] = gateway_json(lp->stats());
    }
    if (auto* web = http_view.load()) {
      auto live = nlohmann::json::object();
      for (auto& [name, value] : metrics->snapshot()) {
        static constexpr std::string_view prefix = "cairn_live_";
        if (name.rfind(prefix, 0) == 0)
          live[name.substr(prefix.size())] = static_cast<int64_t>(value);
      }
      live["websockets"] = web->websockets_open();
      out["live"] = std::move(live);
      out["http"] = {{"tls_failed", web->tls_failed()}};
    }
    if (auto* gate = gate_view.load()) {
      auto st = gate->stats();
      out["cluster_gate"] = {{"accepted", st.accepted},
                             {"relayed", st.relayed},
                             {"open", st.open},
                             {"tls_failed", st.tls_failed},
                             {"handshake_timeouts", st.handshake_timeouts},
                             {"frames_rejected", st.frames_rejected},
                             {"refused", st.refused}};
    }
    if (auto* tcp = gateway.load()) {
      out["connections"] = gateway_json(tcp->stats());
    }
  };
  actors::publish_access_stats(*settings);
  // The `read` stage of the ingest cost budget: the gateways' I/O threads,
  // read from their CPU clocks when asked (runtime/ingest_costs.hpp).
  settings->metrics->on_collect([&gateway, &influx_gateway, costs = settings->costs] {
    int64_t ns = 0;
    uint64_t lines = 0;
    for (auto* g : {gateway.load(), influx_gateway.load()})
      if (g) {
        auto st = g->stats();
        ns += st.io_cpu_ns;
        lines += st.lines_read;
      }
    costs->set(runtime::ingest_stage::read, ns, lines);
  });
  if (cfg.storage_enabled) {
    runtime::journal_options jopts;
    jopts.sync = *runtime::parse_sync_mode(cfg.storage_sync);
    jopts.costs = settings->costs.get();
    jopts.sync_latency = &settings->metrics->histogram(
      "cairn_journal_sync_latency_seconds",
      "Duration of the journal's synced (fsynced) group commits");
    // Journal records live only until a snapshot covers them: compressing
    // them costs ingest CPU and saves little disk.
    jopts.compression = false;
    jopts.sync_interval = std::chrono::milliseconds{
      *runtime::parse_duration(cfg.storage_sync_interval_text)};
    settings->journal = runtime::journal::open(cfg.storage_path, jopts);
    spdlog::info("journal at {} (sync={})", cfg.storage_path, cfg.storage_sync);
  } else {
    spdlog::warn("persistence disabled (cairn.storage.enabled=false): "
                 "acknowledged events live in memory only");
  }
  // Cluster (docs/cluster.md): CAF heartbeats detect frozen peers; the
  // hinted-handoff queue has a LevelDB of its own next to the journal.
  if (settings->cluster.enabled) {
    auto& c = settings->cluster;
    cfg.set("middleman.heartbeat-interval",
            caf::timespan{c.heartbeat_interval});
    cfg.set("middleman.connection-timeout",
            caf::timespan{c.connection_timeout});
    if (cfg.storage_enabled) {
      runtime::journal_options hopts;
      hopts.sync = settings->journal->options().sync;
      hopts.sync_interval = settings->journal->options().sync_interval;
      hopts.write_buffer_size = 4u << 20;
      c.hints = runtime::journal::open(cfg.storage_path + "/hints", hopts);
    }
    auto map = c.map->current();
    spdlog::info("cluster member {} of [{}], partition map v{}: owns {}{}",
                 c.self_name, fmt::join(map->nodes(), ","), map->version(),
                 fmt::join(map->owned_by(c.self_index), ","),
                 map->has_left(c.self_index) ? " (left the cluster)" : "");
  }
  // TLS: one outbound tunnel per peer, so that CAF itself speaks plain BASP
  // on loopback only and OpenSSL never runs on its multiplexer thread
  // (docs/cluster.md, "Cluster gate").
  auto handshake_timeout = std::chrono::milliseconds{
    *runtime::parse_duration(cfg.handshake_timeout_text)};
  // A member that joins later gets its tunnel when this node adopts the
  // map that lists it (actors/node.cpp, add_members).
  std::mutex tunnels_mtx;
  std::vector<std::unique_ptr<runtime::cluster_gate>> tunnels;
  if (cfg.tls_enabled() && settings->cluster.enabled) {
    auto make_tunnel = [&cfg, &tunnels, &tunnels_mtx,
                        handshake_timeout](const cqrs::member_address& m) {
      runtime::cluster_gate_options t;
      t.name = "cluster tunnel to " + m.name;
      t.upstream_host = m.host;
      t.upstream_port = m.port;
      t.max_frame = static_cast<uint32_t>(cfg.cluster_max_frame);
      t.handshake_timeout = handshake_timeout;
      t.tls_certificate = cfg.tls_certificate;
      t.tls_key = cfg.tls_key;
      t.tls_ca_file = cfg.tls_ca_file;
      t.tls_upstream = true;
      auto gate = std::make_unique<runtime::cluster_gate>(t);
      gate->start();
      auto port = gate->port();
      std::lock_guard guard{tunnels_mtx};
      tunnels.push_back(std::move(gate));
      return port;
    };
    auto& table = *settings->cluster.members;
    for (auto& m : *table.members())
      if (m.name != settings->cluster.self_name)
        table.set_tunnel(m.name, make_tunnel(m));
    table.set_tunnel_factory(make_tunnel);
  }
  if (cfg.tls_enabled()) {
    cfg.openssl_certificate = cfg.tls_certificate;
    cfg.openssl_key = cfg.tls_key;
    cfg.openssl_cafile = cfg.tls_ca_file;
    cfg.load<caf::openssl::manager>();
  }
  // Declared before the actor system: it stops after CAF has closed its
  // side of every relayed connection.
  std::optional<runtime::cluster_gate> gate;
  caf::actor_system sys{cfg};
  actors::node node{sys, settings};
  node_ptr = &node;

  // The node actor is what peers and cairn-console reach on the cluster
  // port. CAF publishes it only on an internal loopback port; the cluster
  // gate owns the cluster port, does the TLS and checks every BASP frame
  // (docs/cluster.md, "Cluster gate").
  auto node_actor = actors::spawn_node_actor(sys, node);
  scope_exit teardown{[&] {
    http_view.store(nullptr);
    http.stop();
    influx_gateway.store(nullptr);
    if (influx)
      influx->stop(std::chrono::seconds{3});
    tcp.stop(std::chrono::seconds{3});
    gateway.store(nullptr);
    gate_view.store(nullptr);
    node.shutdown();
    caf::anon_send_exit(node_actor, caf::exit_reason::user_shutdown);
  }};
  auto published = sys.middleman().publish(node_actor, 0, "127.0.0.1", true);
  if (!published)
    throw startup_error("cannot publish the node actor on loopback: "
                        + sys.render(published.error()));
  runtime::cluster_gate_options gopts;
  gopts.host = cfg.cluster_host;
  gopts.port = cfg.cluster_port;
  gopts.upstream_port = *published;
  gopts.max_frame = static_cast<uint32_t>(cfg.cluster_max_frame);
  gopts.handshake_timeout = handshake_timeout;
  if (cfg.tls_enabled()) {
    gopts.tls_certificate = cfg.tls_certificate;
    gopts.tls_key = cfg.tls_key;
    gopts.tls_ca_file = cfg.tls_ca_file;
  }
  gate.emplace(std::move(gopts));
  try {
    gate->start();
  } catch (const std::exception& e) {
    throw startup_error(e.what());  // names the port and option already
  }
  gate_view.store(&*gate);

  tcp.start();
  gateway.store(&tcp);
  if (influx) {
    influx->start();
    influx_gateway.store(&*influx);
    spdlog::info("influx line protocol on {}:{}", cfg.bind_host,
                 influx->port());
  }

  http.start();
  http_view.store(&http);

  // Said once the ports are bound (a port in use stays a one-line error).
  if (web.path.empty() && !cfg.web_root.empty())
    spdlog::warn("dashboard files not found: cairn.http.web-root = '{}' has no "
                 "index.html in {}; the dashboard will answer 404 (set "
                 "cairn.http.web-root, docs/operations.md \"Dashboard\")",
                 cfg.web_root, fmt::join(web.tried, ", "));
  else if (!web.path.empty())
    spdlog::info("dashboard files in {}", web.path);
  // "ready" only once recovery is complete (the ports answer before that:
  // `unavailable` and /readyz 503 while recovering).
  auto ready_line = fmt::format(
    "node {} ready: tcp {}:{}{}, http {}:{}{}, {} partitions, tiers {}",
    cfg.node_name, cfg.bind_host, tcp.port(), topts.tls.enabled() ? " (TLS)" : "",
    cfg.bind_host, http.port(), hopts.tls.enabled() ? " (TLS)" : "",
    settings->partitions, fmt::join(cfg.tier_texts, ","));
  if (settings->status.load() != actors::node_status::ready)
    spdlog::info("node {} listening: tcp {}:{}, http {}:{}; recovering",
                 cfg.node_name, cfg.bind_host, tcp.port(), cfg.bind_host,
                 http.port());
  node.when_ready([ready_line] { spdlog::info("{}", ready_line); });

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received {}, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
  settings->status = actors::node_status::stopping;
  teardown.f();
  teardown.f = nullptr;
  sys.middleman().unpublish(node_actor, *published);
  spdlog::info("node {} stopped", cfg.node_name);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  // glibc raises its mmap threshold to the size of every large block freed
  // (up to 32 MiB), so after the first snapshot the next ones (a partition's
  // whole store, several MB, encoded, copied into a LevelDB batch and its
  // memtable) come from the thread arenas, and the small long-lived blocks
  // allocated into the space they leave pin it: a node filled with an hour
  // of 10,000 series settled anywhere between 132 and 210 MB instead of
  // ~100 (docs/benchmarks.md, "Memory with storage on"). A fixed threshold
  // maps every block of 256 KiB or more on its own and unmaps it when freed.
  // The environment's MALLOC_MMAP_THRESHOLD_ wins, as glibc documents.
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr)
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  auto signals = block_stop_signals();
  runtime::node_config cfg;
  actors::register_message_types(cfg);
  cfg.load<caf::io::middleman>();
  for (int i = 1; i < argc; ++i) {
    std::string_view arg{argv[i]};
    if (arg == "-h" || arg == "--help" || arg == "-?") {
      std::cout << cfg.help_text();
      return 0;
    }
  }
  // Configuration errors: one line naming the option, exit 2.
  if (auto err = cfg.parse(argc, argv)) {
    std::cerr << "error: "
              << (cfg.error_message().empty() ? cfg.render(err)
                                              : cfg.error_message())
              << '\n';
    return 2;
  }
  if (cfg.cli_helptext_printed)
    return 0;
  try {
    cfg.validate();
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 2;
  }
  // Any other start-up failure (a port in use, a journal that cannot be
  // opened): one line, exit 1. With a log file the line is logged too.
  auto fail = [&cfg](const std::exception& e, int code) {
    std::cerr << "error: " << e.what() << std::endl;
    if (!cfg.log_file.empty())
      spdlog::critical("{}", e.what());
    spdlog::shutdown();
    return code;
  };
  try {
    return run(cfg, signals);
  } catch (const runtime::config_error& e) {
    return fail(e, 2);
  } catch (const std::exception& e) {
    return fail(e, 1);
  }
}
