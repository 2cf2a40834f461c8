#include "runtime/node_config.hpp"

#include "runtime/time.hpp"

#include <caf/config_option.hpp>
#include <caf/config_value.hpp>
#include <caf/settings.hpp>

#include <stdexcept>
#include <string_view>

namespace cairn::runtime {

namespace {

constexpr std::string_view group_prefix = "cairn";

bool in_cairn_group(caf::string_view category) {
  std::string_view c{category.data(), category.size()};
  return c == group_prefix
         || (c.size() > group_prefix.size() && c.starts_with(group_prefix)
             && c[group_prefix.size()] == '.');
}

// Rewrites `--cairn.x=true` / `--cairn.x=false` for boolean flags into the
// form CAF 0.17 understands (`--cairn.x` / nothing plus a stored false).
caf::actor_system_config::string_list
normalize_flags(const caf::config_option_set& opts,
                caf::actor_system_config::string_list args,
                std::vector<const caf::config_option*>& cleared) {
  caf::actor_system_config::string_list out;
  out.reserve(args.size());
  for (auto& arg : args) {
    auto eq = arg.find('=');
    if (arg.rfind("--cairn.", 0) == 0 && eq != std::string::npos) {
      auto name = arg.substr(2, eq - 2);
      auto value = arg.substr(eq + 1);
      // Split at the last dot: category "cairn.storage", name "skip-corrupt".
      auto dot = name.rfind('.');
      auto opt = opts.qualified_name_lookup(
        caf::string_view{name.data(), dot},
        caf::string_view{name.data() + dot + 1, name.size() - dot - 1});
      if (opt != nullptr && opt->is_flag()) {
        if (value == "true") {
          out.emplace_back("--" + name);
          continue;
        }
        if (value == "false") {
          cleared.push_back(opt);
          continue;
        }
      }
    }
    out.emplace_back(std::move(arg));
  }
  return out;
}

} // namespace

node_config::node_config() {
  opt_group(custom_options_, "cairn")
    .add(node_name, "node-name", "name of this node in the cluster")
    .add(partitions, "partitions", "number of partitions (fixed per cluster)")
    .add(tier_texts, "tiers", "aggregation tiers as resolution:retention");
  // CAF 0.17 resolves a CLI flag by splitting at the *last* dot, so the
  // category must carry the sub-group for --cairn.tcp.port to work.
  opt_group(custom_options_, "cairn.tcp")
    .add(bind_host, "host", "address the client, HTTP and cluster ports bind")
    .add(tcp_port, "port", "NDJSON client port")
    .add(tcp_max_line, "max-line", "maximum bytes of one request line")
    .add(tcp_max_connections, "max-connections", "maximum client connections")
    .add(tcp_window, "window", "chunks in flight per client connection")
    .add(io_threads, "io-threads", "I/O threads of the TCP gateway");
  opt_group(custom_options_, "cairn.http")
    .add(http_port, "port", "HTTP / WebSocket / dashboard port")
    .add(web_root, "web-root", "directory of the dashboard's files");
  opt_group(custom_options_, "cairn.cluster")
    .add(cluster_port, "port", "cluster (CAF BASP) port")
    .add(cluster_node_name, "node-name",
         "this node's name in cairn.cluster.nodes (default cairn.node-name)")
    .add(cluster_nodes, "nodes",
         "every member as name@host:port (empty = single node)")
    .add(cluster_partitions, "partitions",
         "partitions of the cluster (0 = cairn.partitions)")
    .add(cluster_host, "host",
         "address the cluster port binds (non-loopback needs TLS)")
    .add(heartbeat_interval_text, "heartbeat-interval",
         "CAF heartbeat interval between nodes")
    .add(connection_timeout_text, "connection-timeout",
         "a peer silent this long is unreachable")
    .add(cluster_request_timeout_text, "request-timeout",
         "timeout of a remote partial query")
    .add(cluster_ingest_timeout_text, "ingest-timeout",
         "timeout of a remote ingest before it is hinted")
    .add(cluster_credits, "credits", "in-flight remote batches per peer")
    .add(reconnect_min_text, "reconnect-min", "first reconnect backoff")
    .add(reconnect_max_text, "reconnect-max", "reconnect backoff cap")
    .add(breaker_failures, "breaker-failures",
         "consecutive failures that open a peer's breaker")
    .add(breaker_reset_text, "breaker-reset", "first open -> half-open delay")
    .add(breaker_reset_max_text, "breaker-reset-max",
         "cap of the doubling open -> half-open delay")
    .add(hints_max_bytes, "hints-max-bytes",
         "bound of the hinted-handoff queue (bytes, all peers)")
    // Flat keys: a nested [cairn.cluster.tls] INI section would replace the
    // whole [cairn.cluster] section in CAF 0.17.
    .add(tls_certificate, "tls-certificate",
         "node certificate (PEM); with key and CA: mutual TLS")
    .add(tls_key, "tls-key", "node private key (PEM)")
    .add(tls_ca_file, "tls-ca-file", "CA certificate that signs every node");
  opt_group(custom_options_, "cairn.ingest")
    .add(parsers, "parsers", "parser workers")
    .add(max_future_text, "max-future",
         "how far ahead of now an event ts may be (duration)")
    .add(seal_after_text, "seal-after",
         "lateness horizon: buckets whose window ended this long ago are "
         "sealed into compressed blocks (duration)");
  opt_group(custom_options_, "cairn.limits")
    .add(max_series, "max-series",
         "series per node; events creating more are rejected (0 = no limit)");
  opt_group(custom_options_, "cairn.sketch")
    .add(sketch_accuracy, "accuracy", "DDSketch relative accuracy");
  opt_group(custom_options_, "cairn.partition")
    .add(partition_credits, "credits", "in-flight batches per partition");
  opt_group(custom_options_, "cairn.storage")
    .add(storage_enabled, "enabled",
         "persist events (false: in memory only, e.g. for benchmarks)")
    .add(storage_path, "path", "LevelDB directory")
    .add(storage_sync, "sync", "durability: always | interval | never")
    .add(storage_sync_interval_text, "sync-interval",
         "group-commit interval when sync = interval")
    .add(raw_retention_text, "raw-retention",
         "keep journal entries covered by a snapshot this long (0 = drop)")
    .add(skip_corrupt, "skip-corrupt",
         "skip corrupt journal records on recovery instead of failing");
  opt_group(custom_options_, "cairn.snapshot")
    .add(snapshot_every_events, "every-events",
         "snapshot a partition after this many events")
    .add(snapshot_interval_text, "interval", "snapshot a partition this often")
    .add(snapshot_keep, "keep", "snapshots kept per partition");
  opt_group(custom_options_, "cairn.idempotency")
    .add(idempotency_keys, "keys", "idempotency keys remembered per partition")
    .add(idempotency_window_text, "window", "how long a key is remembered");
  opt_group(custom_options_, "cairn.log")
    .add(log_level, "level", "trace | debug | info | warn | error | off")
    .add(log_file, "file", "log file (empty = stderr)");
  // A finite throughput bound: one busy actor must not hog a worker thread.
  set("scheduler.max-throughput", size_t{1000});
}

// -- help ---------------------------------------------------------------------

std::string node_config::help_text() const {
  std::string out = "Usage: cairn-node [--config-file=FILE] [--OPTION=VALUE ...]\n\n"
                    "Options (INI: [cairn], [cairn.tcp], ... sections; "
                    "command line overrides the file):\n";
  for (auto& opt : custom_options_) {
    if (!in_cairn_group(opt.category()))
      continue;
    auto full = opt.full_name();
    std::string line = "  --" + std::string{full.begin(), full.end()} + "=<"
                       + std::string{opt.type_name().begin(),
                                     opt.type_name().end()}
                       + ">";
    if (line.size() < 44)
      line.resize(44, ' ');
    line += "  ";
    line.append(opt.description().begin(), opt.description().end());
    if (auto value = opt.get())
      line += " (default: " + caf::to_string(*value) + ")";
    out += line;
    out += '\n';
  }
  out += "\nCAF options (scheduler.*, middleman.*, ...): see --long-help.\n";
  return out;
}

// -- parsing ------------------------------------------------------------------

caf::error node_config::parse(int argc, char** argv, const char* ini_file) {
  string_list args;
  if (argc > 1)
    args.assign(argv + 1, argv + argc);
  return parse(std::move(args), ini_file);
}

caf::error node_config::parse(int argc, char** argv, std::istream& ini) {
  string_list args;
  if (argc > 1)
    args.assign(argv + 1, argv + argc);
  return parse(std::move(args), ini);
}

namespace {

/// Runs CAF's parser through `caf_parse`, then copies cairn.* values into
/// the fields and applies the `--flag=false` forms normalize_flags removed.
template <class CafParse>
caf::error parse_with(node_config& cfg, caf::config_option_set& options,
                      caf::settings& content, node_config::string_list args,
                      CafParse caf_parse) {
  std::vector<const caf::config_option*> cleared;
  args = normalize_flags(options, std::move(args), cleared);
  if (auto err = caf_parse(std::move(args)))
    return err;
  cfg.sync_options();
  for (auto opt : cleared) {
    caf::config_value no{false};
    opt->store(no);
    caf::put(content, opt->full_name(), false);
  }
  return caf::none;
}

} // namespace

caf::error node_config::parse(string_list args, const char* ini_file) {
  return parse_with(*this, custom_options_, content, std::move(args),
                    [&](string_list xs) {
                      return caf::actor_system_config::parse(std::move(xs),
                                                             ini_file);
                    });
}

caf::error node_config::parse(string_list args, std::istream& ini) {
  return parse_with(*this, custom_options_, content, std::move(args),
                    [&](string_list xs) {
                      return caf::actor_system_config::parse(std::move(xs),
                                                             ini);
                    });
}

void node_config::sync_options() {
  for (auto& opt : custom_options_) {
    if (!in_cairn_group(opt.category()))
      continue;
    auto full = opt.full_name();
    auto value = caf::get_if(&content, full);
    if (value == nullptr)
      continue;
    if (auto err = opt.check(*value))
      throw std::invalid_argument("bad value for option "
                                  + std::string{full.begin(), full.end()}
                                  + ": " + caf::to_string(*value));
    opt.store(*value);
  }
}

// -- validation -----------------------------------------------------------------

void node_config::validate() const {
  auto fail = [](const std::string& option, const std::string& why) {
    throw std::invalid_argument("invalid option " + option + ": " + why);
  };
  auto positive = [&](const char* option, size_t value) {
    if (value == 0)
      fail(option, "must be > 0");
  };
  auto duration = [&](const char* option, const std::string& text) {
    if (!parse_duration(text))
      fail(option, "not a duration: '" + text
                     + "' (use ms or a number with ms, s, m, h, d, w)");
  };
  if (node_name.empty())
    fail("cairn.node-name", "must not be empty");
  if (bind_host.empty())
    fail("cairn.tcp.host", "must not be empty");
  if (tcp_port == 0)
    fail("cairn.tcp.port", "must be 1..65535");
  if (http_port == 0)
    fail("cairn.http.port", "must be 1..65535");
  if (cluster_port == 0)
    fail("cairn.cluster.port", "must be 1..65535");
  if (tcp_port == http_port || tcp_port == cluster_port
      || http_port == cluster_port)
    fail("cairn.tcp.port", "tcp, http and cluster ports must differ");
  positive("cairn.tcp.max-line", tcp_max_line);
  positive("cairn.tcp.max-connections", tcp_max_connections);
  positive("cairn.tcp.window", tcp_window);
  positive("cairn.tcp.io-threads", io_threads);
  positive("cairn.partitions", partitions);
  positive("cairn.ingest.parsers", parsers);
  positive("cairn.partition.credits", partition_credits);
  positive("cairn.snapshot.every-events", snapshot_every_events);
  positive("cairn.snapshot.keep", snapshot_keep);
  positive("cairn.idempotency.keys", idempotency_keys);
  if (tier_texts.empty())
    fail("cairn.tiers", "needs at least one tier");
  if (!(sketch_accuracy > 0.0 && sketch_accuracy < 1.0))
    fail("cairn.sketch.accuracy", "must be in (0, 1)");
  if (storage_path.empty())
    fail("cairn.storage.path", "must not be empty");
  if (storage_sync != "always" && storage_sync != "interval"
      && storage_sync != "never")
    fail("cairn.storage.sync", "must be always, interval or never, not '"
                                 + storage_sync + "'");
  duration("cairn.ingest.max-future", max_future_text);
  duration("cairn.ingest.seal-after", seal_after_text);
  duration("cairn.storage.sync-interval", storage_sync_interval_text);
  duration("cairn.snapshot.interval", snapshot_interval_text);
  duration("cairn.storage.raw-retention", raw_retention_text);
  duration("cairn.idempotency.window", idempotency_window_text);
  duration("cairn.cluster.heartbeat-interval", heartbeat_interval_text);
  duration("cairn.cluster.connection-timeout", connection_timeout_text);
  duration("cairn.cluster.request-timeout", cluster_request_timeout_text);
  duration("cairn.cluster.ingest-timeout", cluster_ingest_timeout_text);
  duration("cairn.cluster.reconnect-min", reconnect_min_text);
  duration("cairn.cluster.reconnect-max", reconnect_max_text);
  duration("cairn.cluster.breaker-reset", breaker_reset_text);
  duration("cairn.cluster.breaker-reset-max", breaker_reset_max_text);
  positive("cairn.cluster.credits", cluster_credits);
  positive("cairn.cluster.breaker-failures", breaker_failures);
  positive("cairn.cluster.hints-max-bytes", hints_max_bytes);
  bool loopback = cluster_host == "127.0.0.1" || cluster_host == "localhost"
                  || cluster_host == "::1";
  if (!loopback && !tls_enabled())
    fail("cairn.cluster.host",
         "a non-loopback cluster port requires TLS (cairn.cluster.tls-*)");
  if (tls_enabled() && (tls_key.empty() || tls_ca_file.empty()))
    fail("cairn.cluster.tls-certificate",
         "certificate, key and ca-file must all be set for mutual TLS");
  if (!cluster_nodes.empty()) {
    bool self = false;
    for (auto& n : cluster_nodes) {
      auto at = n.find('@');
      auto colon = n.rfind(':');
      if (at == std::string::npos || at == 0 || colon == std::string::npos
          || colon <= at + 1)
        fail("cairn.cluster.nodes", "'" + n + "' is not name@host:port");
      self = self || n.substr(0, at) == member_name();
    }
    if (!self)
      fail("cairn.cluster.nodes", "does not list this node ('" + member_name()
                                    + "')");
  }
  static constexpr const char* levels[]
    = {"trace", "debug", "info", "warn", "warning", "error", "critical", "off"};
  bool known = false;
  for (auto l : levels)
    known = known || log_level == l;
  if (!known)
    fail("cairn.log.level", "unknown level '" + log_level + "'");
}

} // namespace cairn::runtime
