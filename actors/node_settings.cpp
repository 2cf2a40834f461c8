#include "actors/node_settings.hpp"

#include "runtime/process_metrics.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

namespace cairn::actors {

const char* to_string(node_status s) noexcept {
  switch (s) {
    case node_status::recovering:
      return "recovering";
    case node_status::ready:
      return "ready";
    case node_status::stopping:
      return "stopping";
  }
  return "unknown";
}

namespace {

cqrs::millis duration_option(const std::string& name, const std::string& text) {
  auto d = cqrs::parse_duration(text);
  if (!d)
    throw std::invalid_argument("option " + name + ": invalid duration '"
                                + text + "' (use e.g. 500ms, 10s, 15m, 2d)");
  return *d;
}

/// Writes `text` to `path` durably: a temporary file next to it, fsync,
/// rename over `path`, fsync of the directory. Empty string or the error.
std::string write_durably(const std::string& path, const std::string& text) {
  auto tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return "open " + tmp + ": " + std::strerror(errno);
  size_t done = 0;
  while (done < text.size()) {
    auto n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      auto err = std::string{"write "} + tmp + ": " + std::strerror(errno);
      ::close(fd);
      return err;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    auto err = std::string{"fsync "} + tmp + ": " + std::strerror(errno);
    ::close(fd);
    return err;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return "rename " + tmp + ": " + std::strerror(errno);
  auto slash = path.rfind('/');
  auto dir = slash == std::string::npos ? std::string{"."}
                                        : path.substr(0, slash);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

} // namespace

// -- map_holder ---------------------------------------------------------------

map_holder::map_holder(cqrs::partition_map initial, uint32_t self,
                       std::string path)
  : self_(self),
    partitions_(initial.partitions()),
    path_(std::move(path)),
    owners_(new std::atomic<uint32_t>[initial.partitions()]),
    retain_(new std::atomic<bool>[initial.partitions()]) {
  for (uint32_t p = 0; p < partitions_; ++p)
    retain_[p].store(false);
  std::lock_guard guard{mtx_};
  publish_locked(std::make_shared<const cqrs::partition_map>(
    std::move(initial)));
}

void map_holder::publish_locked(std::shared_ptr<const cqrs::partition_map> m) {
  for (uint32_t p = 0; p < partitions_; ++p)
    owners_[p].store(m->owner_index(p), std::memory_order_release);
  self_left_.store(m->has_left(self_), std::memory_order_release);
  version_.store(m->version(), std::memory_order_release);
  current_ = std::move(m);
}

std::shared_ptr<const cqrs::partition_map> map_holder::current() const {
  std::lock_guard guard{mtx_};
  return current_;
}

map_holder::adopt_result map_holder::adopt(const cqrs::partition_map& m) {
  std::lock_guard serial{adopt_mtx_};
  adopt_result out;
  auto cur = current();
  if (!cur->compatible(m)) {
    out.code = "incompatible";
    out.error = "the map's members or partition count differ from this "
                "node's";
    out.version = cur->version();
    return out;
  }
  if (m.version() <= cur->version()) {
    out.ok = true;
    out.version = cur->version();
    return out;
  }
  if (!path_.empty()) {
    if (auto err = write_durably(path_, to_json(m).dump() + "\n");
        !err.empty()) {
      out.code = "storage";
      out.error = "partition map not persisted: " + err;
      out.version = cur->version();
      return out;
    }
  }
  auto next = std::make_shared<const cqrs::partition_map>(m);
  {
    std::lock_guard guard{mtx_};
    publish_locked(next);
  }
  for (auto& f : on_change_)
    f(*next);
  out.ok = true;
  out.changed = true;
  out.version = m.version();
  return out;
}

std::optional<cqrs::partition_map> map_holder::load(const std::string& path) {
  std::ifstream in{path};
  if (!in)
    return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  auto j = nlohmann::json::parse(text.str(), nullptr, false);
  std::string error = "not JSON";
  std::optional<cqrs::partition_map> m;
  if (!j.is_discarded())
    m = cqrs::partition_map_from_json(j, &error);
  if (!m)
    throw std::invalid_argument(path + " does not decode (" + error
                                + "); remove it only if every other member "
                                  "has the current map");
  return m;
}

namespace {

/// The members, the partition map and the hint view of `c`
/// (docs/cluster.md): the map is version 1 of cairn.cluster.nodes, or a
/// higher one persisted by an earlier run, or `joined` (the map a seed
/// answered a join with, persisted here first). A member's address is the
/// one cairn.cluster.nodes lists, else the one the map holds.
void init_cluster(cluster_settings& c, const runtime::node_config& cfg,
                  uint32_t partitions, const cqrs::partition_map* joined) {
  std::map<std::string, cqrs::member_address> listed;
  std::vector<std::string> names;
  for (auto& text : cfg.cluster_nodes) {
    auto m = cqrs::parse_member_address(text);
    if (!m)
      throw std::invalid_argument("option cairn.cluster.nodes: '" + text
                                  + "' is not name@host:port");
    names.push_back(m->name);
    listed[m->name] = std::move(*m);
  }
  std::optional<cqrs::partition_map> map;
  if (!names.empty()) {
    try {
      map = cqrs::partition_map::initial(names, partitions);
    } catch (const std::exception& e) {
      throw std::invalid_argument(std::string{"option cairn.cluster.nodes: "}
                                  + e.what());
    }
  }
  std::string path;
  if (cfg.storage_enabled)
    path = cfg.storage_path + "/cluster-map.json";
  std::optional<cqrs::partition_map> stored;
  if (joined) {
    stored = *joined;
    std::error_code ec;
    if (!path.empty())
      std::filesystem::create_directories(cfg.storage_path, ec);
    if (!path.empty())
      if (auto err = write_durably(path, to_json(*joined).dump() + "\n");
          !err.empty())
        throw std::runtime_error("the partition map of the join is not "
                                 "persisted: " + err);
  } else if (!path.empty() && (map || !cfg.cluster_seeds.empty())) {
    stored = map_holder::load(path);
  }
  if (stored) {
    // A map adopted by an earlier run (docs/cluster.md, "Partition map")
    // replaces version 1 if it has the listed members and the partitions.
    auto names_of = [](const cqrs::partition_map& m) {
      std::string out;
      for (auto& n : m.nodes())
        out += (out.empty() ? "" : ",") + n;
      return out;
    };
    bool fits = stored->partitions() == partitions;
    for (auto& n : names)
      fits = fits && stored->index_of(n).has_value();
    if (!fits)
      throw std::invalid_argument(
        path + " holds a partition map of members [" + names_of(*stored)
        + "] over " + std::to_string(stored->partitions())
        + " partitions; cairn.cluster.nodes and cairn.partitions describe "
          "another cluster");
    if (!map || stored->version() > map->version())
      map = std::move(stored);
  }
  if (!map) {
    if (!cfg.cluster_seeds.empty())
      throw std::invalid_argument("option cairn.cluster.seeds: no partition "
                                  "map to start from (the join did not run)");
    return;
  }
  std::vector<cqrs::member_address> members;
  for (uint32_t i = 0; i < map->nodes().size(); ++i) {
    auto& name = map->nodes()[i];
    if (auto l = listed.find(name); l != listed.end()) {
      members.push_back(l->second);
      continue;
    }
    auto m = cqrs::parse_member_address(name + "@" + map->address(i));
    if (!m)
      throw std::invalid_argument("member " + name + " of the partition map "
                                  "has no address (list it in "
                                  "cairn.cluster.nodes)");
    members.push_back(std::move(*m));
  }
  auto self = map->index_of(c.self_name);
  if (!self)
    throw std::invalid_argument(
      cfg.cluster_nodes.empty()
        ? "the partition map does not list this node '" + c.self_name + "'"
        : "option cairn.cluster.nodes does not list this node '"
            + c.self_name + "'");
  c.self_index = *self;
  c.enabled = members.size() > 1;
  if (!c.enabled)
    return;
  c.members = std::make_shared<member_table>(std::move(members));
  c.map = std::make_shared<map_holder>(std::move(*map), c.self_index, path);
  c.pending = std::make_shared<hint_view>(c.map->current()->nodes(),
                                          c.self_index);
  c.pending->set_left(c.map->current()->left());
  c.pending->set_evicted(c.map->current()->evicted());
  c.map->on_change([view = c.pending](const cqrs::partition_map& m) {
    view->set_members(m.nodes());
    view->set_left(m.left());
    view->set_evicted(m.evicted());
  });
}

} // namespace

std::shared_ptr<node_settings> make_node_settings(
  const runtime::node_config& cfg, const cqrs::partition_map* joined) {
  cfg.validate();
  auto s = std::make_shared<node_settings>();
  s->node_name = cfg.node_name;
  s->access = runtime::auth::make_access_control(cfg);
  if (cfg.partitions == 0 || cfg.partitions > 4096)
    throw std::invalid_argument("option cairn.partitions must be in 1..4096");
  s->partitions = static_cast<uint32_t>(cfg.partitions);
  auto parsers = cfg.parsers();  // 0: auto
  s->parsers_auto = parsers == 0;
  s->parsers_max = s->parsers_auto
                     ? std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 256)
                     : parsers;
  // An auto pool starts at its maximum (a load that starts with the node
  // finds every parser) and shrinks once the node is idle.
  s->parsers = s->parsers_auto ? s->parsers_max : parsers;
  s->partition_credits = std::max<size_t>(1, cfg.partition_credits);
  try {
    s->tiers = cqrs::tier_set::parse(cfg.tier_texts);
  } catch (const std::exception& e) {
    throw std::invalid_argument(std::string{"option cairn.tiers: "} + e.what());
  }
  if (!(cfg.sketch_accuracy > 0 && cfg.sketch_accuracy < 1))
    throw std::invalid_argument(
      "option cairn.sketch.accuracy must be in (0, 1), e.g. 0.01");
  s->mapping = cqrs::ddsketch_mapping{cfg.sketch_accuracy};
  s->limits.max_age = s->tiers.max_retention();
  s->limits.max_future = duration_option("cairn.ingest.max-future",
                                         cfg.max_future_text);
  s->seal_after = duration_option("cairn.ingest.seal-after",
                                  cfg.seal_after_text);
  s->live_grace = std::min(duration_option("cairn.live.grace",
                                           cfg.live_grace_text),
                           s->seal_after);
  s->live_max_subscriptions = cfg.live_max_subscriptions;
  s->max_series = cfg.max_series;
  s->series_registry = std::make_shared<cqrs::series_registry>(cfg.max_series);
  s->snapshot_every_events = cfg.snapshot_every_events;
  s->snapshot_interval = std::chrono::milliseconds{
    duration_option("cairn.snapshot.interval", cfg.snapshot_interval_text)};
  s->snapshot_keep = std::max<size_t>(1, cfg.snapshot_keep);
  s->raw_retention = duration_option("cairn.storage.raw-retention",
                                     cfg.raw_retention_text);
  s->skip_corrupt = cfg.skip_corrupt;
  s->idempotency_keys = cfg.idempotency_keys;
  s->idempotency_window = duration_option("cairn.idempotency.window",
                                          cfg.idempotency_window_text);
  // -- alerting ---------------------------------------------------------------
  auto& a = s->alerts;
  a.enabled = cfg.alerts_enabled;
  if (cfg.storage_enabled)
    a.path = cfg.storage_path + "/alerts";
  a.max_connections = cfg.alerts_max_connections;
  a.connect_timeout = std::chrono::milliseconds{duration_option(
    "cairn.alerts.connect-timeout", cfg.alerts_connect_timeout_text)};
  a.request_timeout = std::chrono::milliseconds{duration_option(
    "cairn.alerts.request-timeout", cfg.alerts_request_timeout_text)};
  a.idle_timeout = std::chrono::milliseconds{duration_option(
    "cairn.alerts.idle-timeout", cfg.alerts_idle_timeout_text)};
  a.tls_ca_file = cfg.alerts_tls_ca_file;
  a.retry_initial = std::max<cqrs::millis>(
    1, duration_option("cairn.alerts.retry-initial", cfg.alerts_retry_initial_text));
  a.retry_cap = std::max(a.retry_initial,
                         duration_option("cairn.alerts.retry-cap",
                                         cfg.alerts_retry_cap_text));
  a.max_attempts = static_cast<uint32_t>(cfg.alerts_max_attempts);
  a.history = cfg.alerts_history;
  // -- membership sagas -------------------------------------------------------
  if (cfg.storage_enabled)
    s->sagas.path = cfg.storage_path + "/sagas";
  s->sagas.concurrency = std::max<size_t>(1, cfg.rebalance_concurrency);
  s->sagas.bytes_per_second = cfg.rebalance_bytes_per_second;
  s->sagas.chunk_bytes = std::clamp<size_t>(cfg.handoff_chunk_bytes, 4096,
                                            32u << 20);
  // -- cluster ----------------------------------------------------------------
  if (cfg.cluster_partitions > 0)
    s->partitions = static_cast<uint32_t>(cfg.cluster_partitions);
  auto& c = s->cluster;
  auto ms = [](const char* name, const std::string& text) {
    return std::chrono::milliseconds{duration_option(name, text)};
  };
  c.heartbeat_interval = ms("cairn.cluster.heartbeat-interval",
                            cfg.heartbeat_interval_text);
  c.connection_timeout = ms("cairn.cluster.connection-timeout",
                            cfg.connection_timeout_text);
  c.request_timeout = ms("cairn.cluster.request-timeout",
                         cfg.cluster_request_timeout_text);
  c.ingest_timeout = ms("cairn.cluster.ingest-timeout",
                        cfg.cluster_ingest_timeout_text);
  c.reconnect_min = ms("cairn.cluster.reconnect-min", cfg.reconnect_min_text);
  c.reconnect_max = ms("cairn.cluster.reconnect-max", cfg.reconnect_max_text);
  c.breaker.failure_threshold = static_cast<uint32_t>(cfg.breaker_failures);
  c.breaker.base_reset = ms("cairn.cluster.breaker-reset",
                            cfg.breaker_reset_text);
  c.breaker.max_reset = ms("cairn.cluster.breaker-reset-max",
                           cfg.breaker_reset_max_text);
  c.credits = cfg.cluster_credits;
  c.hints_max_bytes = cfg.hints_max_bytes;
  c.tls = cfg.tls_enabled();
  c.self_name = cfg.member_name();
  init_cluster(c, cfg, s->partitions, joined);
  s->metrics = std::make_shared<runtime::metrics_registry>();
  runtime::register_process_metrics(*s->metrics, s->version);
  s->costs = std::make_shared<runtime::ingest_costs>(*s->metrics);
  s->started_at = cqrs::wall_clock_now();
  s->series_index = std::make_shared<cqrs::series_index>(s->partitions);
  s->stores = std::make_shared<store_access>(s->partitions);
  return s;
}

} // namespace cairn::actors
