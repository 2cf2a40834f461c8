#include "runtime/node_config.hpp"

#include "runtime/time.hpp"

#include <caf/config_option.hpp>
#include <caf/config_value.hpp>
#include <caf/detail/ini_consumer.hpp>
#include <caf/detail/parser/read_ini.hpp>
#include <caf/parser_state.hpp>
#include <caf/pec.hpp>
#include <caf/settings.hpp>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <thread>
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
    .add(io_threads_text, "io-threads",
         "I/O threads of the TCP gateway: auto (one per 4 cores) or 1..64")
    .add(tcp_idle_timeout_text, "idle-timeout",
         "close a connection idle this long (duration, 0 = never)")
    .add(tcp_line_timeout_text, "line-timeout",
         "a started line must be complete within this (duration, 0 = never)")
    // Flat keys, as for the cluster's TLS (see below).
    .add(tcp_tls_certificate, "tls-certificate",
         "TLS on the NDJSON (and influx) port: server certificate chain (PEM; "
         "empty = plain TCP)")
    .add(tcp_tls_key, "tls-key", "private key of tls-certificate (PEM)")
    .add(tcp_tls_client_ca, "tls-client-ca",
         "CA (PEM) whose client certificates are required (empty = none asked)");
  opt_group(custom_options_, "cairn.http")
    .add(http_port, "port", "HTTP / WebSocket / dashboard port")
    .add(web_root, "web-root", "directory of the dashboard's files")
    .add(http_max_connections, "max-connections",
         "maximum HTTP connections (more get 503)")
    .add(http_idle_timeout_text, "idle-timeout",
         "close a keep-alive connection idle this long (0 = never)")
    .add(http_read_timeout_text, "read-timeout",
         "a request's header and body must arrive within this (0 = never)")
    .add(http_io_threads_text, "io-threads",
         "I/O threads of the HTTP / WebSocket server: auto (one per 4 cores) "
         "or 1..64")
    .add(http_max_websockets, "max-websockets",
         "maximum WebSocket connections (/v1/live; more get 503)")
    .add(http_ws_max_message, "ws-max-message",
         "largest WebSocket message a client may send (bytes)")
    .add(http_ws_ping_interval_text, "ws-ping-interval",
         "ping idle WebSockets this often; silent for two intervals: closed "
         "(0 = never)")
    .add(http_tls_certificate, "tls-certificate",
         "HTTPS / wss:// on the HTTP port: server certificate chain (PEM; "
         "empty = plain HTTP)")
    .add(http_tls_key, "tls-key", "private key of tls-certificate (PEM)")
    .add(http_tls_client_ca, "tls-client-ca",
         "CA (PEM) whose client certificates are required (empty = none asked)");
  opt_group(custom_options_, "cairn.live")
    .add(live_grace_text, "grace",
         "a bucket counts as closed for live subscribers this long after its "
         "window ends (duration, at most cairn.ingest.seal-after)")
    .add(live_max_subscriptions, "max-subscriptions",
         "live subscriptions per client (more get too_many_subscriptions)");
  opt_group(custom_options_, "cairn.alerts")
    .add(alerts_enabled, "enabled",
         "evaluate alert rules and send webhooks (docs/alerting.md)")
    .add(alerts_max_connections, "max-connections",
         "webhook sockets per destination host")
    .add(alerts_connect_timeout_text, "connect-timeout",
         "webhook connect timeout (duration)")
    .add(alerts_request_timeout_text, "request-timeout",
         "webhook request timeout: write and whole response (duration)")
    .add(alerts_idle_timeout_text, "idle-timeout",
         "close a pooled webhook connection idle this long (duration)")
    .add(alerts_tls_ca_file, "tls-ca-file",
         "PEM CA bundle trusted for https:// receivers besides the system's")
    .add(alerts_retry_initial_text, "retry-initial",
         "first retry backoff ceiling (duration; doubles, full jitter)")
    .add(alerts_retry_cap_text, "retry-cap", "largest retry backoff (duration)")
    .add(alerts_max_attempts, "max-attempts",
         "delivery attempts before a notification becomes a dead letter")
    .add(alerts_history, "history", "alert history entries kept");
  opt_group(custom_options_, "cairn.influx")
    .add(influx_port, "port",
         "Influx line-protocol TCP port (0 = off; docs/integrations.md)");
  opt_group(custom_options_, "cairn.cluster")
    .add(cluster_port, "port", "cluster (CAF BASP) port")
    .add(cluster_node_name, "node-name",
         "this node's name in cairn.cluster.nodes (default cairn.node-name)")
    .add(cluster_nodes, "nodes",
         "every member as name@host:port (empty = single node)")
    .add(cluster_seeds, "seeds",
         "host:port of running members to join through (used when "
         "cairn.cluster.nodes is empty)")
    .add(cluster_advertise, "advertise",
         "host:port the other members reach this node at (default "
         "cairn.cluster.host:port)")
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
    .add(rebalance_concurrency, "rebalance-concurrency",
         "partition handoffs a membership saga runs at once")
    .add(rebalance_bytes_per_second, "rebalance-bytes-per-second",
         "pace of shipped partition snapshots (bytes/s, 0 = unlimited)")
    .add(handoff_chunk_bytes, "handoff-chunk-bytes",
         "bytes per partition snapshot chunk message")
    .add(reconnect_min_text, "reconnect-min", "first reconnect backoff")
    .add(reconnect_max_text, "reconnect-max", "reconnect backoff cap")
    .add(breaker_failures, "breaker-failures",
         "consecutive failures that open a peer's breaker")
    .add(breaker_reset_text, "breaker-reset", "first open -> half-open delay")
    .add(breaker_reset_max_text, "breaker-reset-max",
         "cap of the doubling open -> half-open delay")
    .add(hints_max_bytes, "hints-max-bytes",
         "bound of the hinted-handoff queue (bytes, all peers)")
    .add(cluster_max_frame, "max-frame",
         "largest BASP payload (bytes) a cluster-port client may announce")
    .add(handshake_timeout_text, "handshake-timeout",
         "cluster-port connections must finish TLS and the BASP handshake "
         "within this")
    // Flat keys: a nested [cairn.cluster.tls] INI section would replace the
    // whole [cairn.cluster] section in CAF 0.17.
    .add(tls_certificate, "tls-certificate",
         "node certificate (PEM); with key and CA: mutual TLS")
    .add(tls_key, "tls-key", "node private key (PEM)")
    .add(tls_ca_file, "tls-ca-file", "CA certificate that signs every node");
  opt_group(custom_options_, "cairn.ingest")
    .add(parsers_text, "parsers",
         "parser actors: auto (1 up to the number of cores, by load) or a "
         "fixed count 1..256")
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
  opt_group(custom_options_, "cairn.auth")
    .add(auth_required, "required",
         "every client must present a JWT (always when cairn.tcp.host is "
         "not loopback)")
    .add(auth_algorithm, "algorithm", "JWT algorithm: HS256 | RS256 | ES256")
    .add(auth_secret_file, "secret-file",
         "file holding the HS256 shared secret (at least 32 bytes)")
    .add(auth_public_key_file, "public-key-file",
         "PEM public key for RS256 / ES256 tokens")
    .add(auth_leeway_text, "leeway", "clock skew allowed for exp / nbf")
    .add(auth_issuer, "issuer", "required iss claim (empty = not checked)")
    .add(auth_audience, "audience", "required aud claim (empty = not checked)");
  opt_group(custom_options_, "cairn.rate")
    .add(rate_events_per_sec, "events-per-sec",
         "events per second per principal (0 = unlimited)")
    .add(rate_requests_per_sec, "requests-per-sec",
         "requests per second per principal (0 = unlimited)")
    .add(rate_ingest_events_per_sec, "ingest-events-per-sec",
         "events/s for principals with scope ingest (0 = events-per-sec)")
    .add(rate_ingest_requests_per_sec, "ingest-requests-per-sec",
         "requests/s for scope ingest (0 = requests-per-sec)")
    .add(rate_query_events_per_sec, "query-events-per-sec",
         "events/s for scope query (0 = events-per-sec)")
    .add(rate_query_requests_per_sec, "query-requests-per-sec",
         "requests/s for scope query (0 = requests-per-sec)")
    .add(rate_admin_events_per_sec, "admin-events-per-sec",
         "events/s for scope admin (0 = events-per-sec)")
    .add(rate_admin_requests_per_sec, "admin-requests-per-sec",
         "requests/s for scope admin (0 = requests-per-sec)")
    .add(rate_burst_text, "burst", "a bucket holds this much of its rate")
    .add(rate_max_delay_text, "max-delay",
         "NDJSON: how long a flooding connection is not read before its "
         "lines are refused with rate_limited")
    .add(rate_max_principals, "max-principals",
         "principals tracked (idle ones are forgotten past it)");
  opt_group(custom_options_, "cairn.log")
    .add(log_level, "level", "trace | debug | info | warn | error | off")
    .add(log_file, "file", "log file (empty = stderr)");
  // A finite throughput bound: one busy actor must not hog a worker thread.
  set("scheduler.max-throughput", size_t{1000});
  // An idle worker polls its queue with a 50 us sleep up to 500 times
  // before it waits on its condition variable (CAF's defaults): under a
  // steady trickle of requests the workers never get there and wake 20,000
  // times a second each. 20 polls, then the wait (woken by the next job
  // sent to the worker, and every 1 ms to steal): the node's CPU at 100k
  // acknowledged events/s went from ~50 % to ~36 % of a core, throughput
  // and ack latency unchanged (docs/benchmarks.md, "Idle polling").
  set("work-stealing.moderate-poll-attempts", size_t{20});
  set("work-stealing.relaxed-sleep-duration", caf::timespan{std::chrono::milliseconds{1}});
}

namespace {

/// A "count or auto" option: 0 for "auto", else the count in [lo, hi].
size_t count_or_auto(const std::string& text, const char* option, size_t lo,
                     size_t hi) {
  if (text == "auto")
    return 0;
  size_t n = 0;
  auto first = text.data();
  auto last = first + text.size();
  auto [end, ec] = std::from_chars(first, last, n);
  if (ec != std::errc{} || end != last || n < lo || n > hi)
    throw config_error("invalid option " + std::string{option}
                       + ": must be auto or " + std::to_string(lo) + ".."
                       + std::to_string(hi) + ", not '" + text + "'");
  return n;
}

size_t per_four_cores() {
  return std::max<size_t>(1, std::thread::hardware_concurrency() / 4);
}

} // namespace

size_t node_config::parsers() const {
  return count_or_auto(parsers_text, "cairn.ingest.parsers", 1, 256);
}

size_t node_config::io_threads() const {
  auto n = count_or_auto(io_threads_text, "cairn.tcp.io-threads", 1, 64);
  return n == 0 ? per_four_cores() : n;
}

size_t node_config::http_io_threads() const {
  auto n = count_or_auto(http_io_threads_text, "cairn.http.io-threads", 1, 64);
  return n == 0 ? per_four_cores() : n;
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

/// The path of the INI file CAF will read: the last --config-file=X of
/// `args`, else `fallback` (may be null). Empty if none.
std::string config_file_of(const node_config::string_list& args,
                           const char* fallback) {
  std::string path = fallback != nullptr ? fallback : "";
  for (auto& arg : args)
    if (arg.rfind("--config-file=", 0) == 0)
      path = arg.substr(14);
  return path;
}

/// Runs the strict checks, then CAF's parser through `caf_parse`, then
/// copies cairn.* values into the fields and applies the `--flag=false`
/// forms normalize_flags removed. A failure leaves its one-line text in
/// `message`.
template <class Check, class CafParse>
caf::error parse_with(node_config& cfg, caf::config_option_set& options,
                      caf::settings& content, node_config::string_list args,
                      std::string& message, Check check, CafParse caf_parse) {
  message.clear();
  try {
    cfg.check_args(args);
    check();
    std::vector<const caf::config_option*> cleared;
    args = normalize_flags(options, std::move(args), cleared);
    if (auto err = caf_parse(std::move(args))) {
      message = "cannot parse the configuration: " + cfg.render(err);
      return err;
    }
    cfg.sync_options();
    for (auto opt : cleared) {
      caf::config_value no{false};
      opt->store(no);
      caf::put(content, opt->full_name(), false);
    }
  } catch (const std::exception& e) {
    message = e.what();
    return caf::make_error(caf::pec::illegal_argument);
  }
  return caf::none;
}

} // namespace

caf::error node_config::parse(string_list args, const char* ini_file) {
  auto path = config_file_of(args, ini_file);
  config_file = path;
  return parse_with(
    *this, custom_options_, content, args, error_message_,
    [&] {
      if (path.empty())
        return;
      std::ifstream in{path};
      if (!in)
        throw config_error("cannot read config file '" + path
                           + "' (--config-file)");
      std::string text{std::istreambuf_iterator<char>{in}, {}};
      check_ini(text, path);
    },
    [&](string_list xs) {
      return caf::actor_system_config::parse(std::move(xs), ini_file);
    });
}

caf::error node_config::parse(string_list args, std::istream& ini) {
  std::string text{std::istreambuf_iterator<char>{ini}, {}};
  std::istringstream copy{text};
  return parse_with(
    *this, custom_options_, content, args, error_message_,
    [&] { check_ini(text, "the INI input"); },
    [&](string_list xs) {
      return caf::actor_system_config::parse(std::move(xs), copy);
    });
}

// -- strict checks --------------------------------------------------------------

namespace {

/// Sections CAF itself reads. CAF 0.17 registers every option of them
/// (logger, openssl and opencl included, loaded or not), so their keys are
/// checked like ours.
bool is_caf_section(std::string_view name) {
  static constexpr std::string_view known[]
    = {"global",    "scheduler", "work-stealing", "middleman", "openssl",
       "logger",    "stream",    "opencl"};
  for (auto k : known)
    if (name == k)
      return true;
  return false;
}

/// What a value of `opt` must look like, for messages.
std::string expected_text(const caf::config_option& opt) {
  std::string_view type{opt.type_name().data(), opt.type_name().size()};
  if (type == "uint16")
    return "an integer 0..65535";
  if (type == "uint32")
    return "an integer 0..4294967295";
  if (type.rfind("uint", 0) == 0)
    return "a non-negative integer";
  if (type.rfind("int", 0) == 0)
    return "an integer";
  if (type == "boolean")
    return "true or false";
  if (type == "string")
    return "a string in double quotes";
  if (type == "list of string")
    return "a list of strings, e.g. [\"a\", \"b\"]";
  if (type.rfind("real", 0) == 0 || type == "double" || type == "float")
    return "a number";
  return std::string{type};
}

/// The option named `full` ("cairn.tcp.port"), or null.
const caf::config_option* lookup(const caf::config_option_set& opts,
                                 std::string_view full) {
  auto dot = full.rfind('.');
  if (dot == std::string_view::npos)
    return opts.qualified_name_lookup("global", caf::string_view{full.data(), full.size()});
  return opts.qualified_name_lookup(
    caf::string_view{full.data(), dot},
    caf::string_view{full.data() + dot + 1, full.size() - dot - 1});
}

/// True if some option's category is `group` or below it.
bool is_group(const caf::config_option_set& opts, std::string_view group) {
  for (auto& opt : opts) {
    std::string_view c{opt.category().data(), opt.category().size()};
    if (c == group
        || (c.size() > group.size() && c.starts_with(group)
            && c[group.size()] == '.'))
      return true;
  }
  return false;
}

/// The text of line `n` (1-based) of `text`, trimmed.
std::string line_of(const std::string& text, size_t n) {
  std::istringstream in{text};
  std::string line;
  for (size_t i = 0; i < n && std::getline(in, line); ++i) {
  }
  auto b = line.find_first_not_of(" \t");
  auto e = line.find_last_not_of(" \t\r");
  return b == std::string::npos ? std::string{} : line.substr(b, e - b + 1);
}

void check_tree(const caf::config_option_set& opts, const std::string& path,
                const caf::config_value::dictionary& dict,
                const std::string& source) {
  for (auto& [key, value] : dict) {
    auto full = path.empty() ? key : path + "." + key;
    auto opt = lookup(opts, full);
    if (opt == nullptr) {
      if (auto sub = caf::get_if<caf::config_value::dictionary>(&value)) {
        if (path.empty() && !is_group(opts, full) && !is_caf_section(full))
          throw config_error("unknown section [" + full + "] in " + source);
        if (!path.empty() && !is_group(opts, full) && !is_caf_section(path))
          throw config_error("unknown section [" + full + "] in " + source);
        check_tree(opts, full, *sub, source);
        continue;
      }
      if (path.empty())
        throw config_error("option '" + key + "' outside any section in "
                           + source);
      throw config_error("unknown option " + full + " in " + source);
    }
    if (opt->check(value))
      throw config_error("invalid value for " + full + " in " + source + ": "
                         + caf::to_string(value) + " (expected "
                         + expected_text(*opt) + ")");
  }
}

} // namespace

void node_config::check_ini(const std::string& text,
                            const std::string& source) {
  caf::config_option_set none;
  caf::settings tree;
  caf::detail::ini_consumer consumer{none, tree};
  caf::string_parser_state res{text.data(), text.data() + text.size()};
  caf::detail::parser::read_ini(res, consumer);
  if (res.code != caf::pec::success && res.code != caf::pec::trailing_character)
    throw config_error("cannot parse " + source + " line "
                       + std::to_string(res.line) + " ('"
                       + line_of(text, res.line) + "'): "
                       + caf::to_string(res.code));
  check_tree(custom_options_, "", tree, source);
}

void node_config::check_args(const string_list& args) {
  for (auto& arg : args) {
    if (arg.rfind("--", 0) != 0) {
      if (arg.rfind("-", 0) == 0)
        continue; // short options (-h) are CAF's
      throw config_error("unexpected argument '" + arg + "'");
    }
    auto eq = arg.find('=');
    auto name = arg.substr(2, eq == std::string::npos ? std::string::npos
                                                      : eq - 2);
    auto opt = lookup(custom_options_, name);
    if (opt == nullptr)
      throw config_error("unknown option --" + name
                         + " (cairn-node --help lists them)");
    if (eq == std::string::npos) {
      if (!opt->is_flag())
        throw config_error("option --" + name + " needs a value (--" + name
                           + "=<" + expected_text(*opt) + ">)");
      continue;
    }
    auto text = arg.substr(eq + 1);
    if (opt->is_flag() && (text == "true" || text == "false"))
      continue;
    caf::settings scratch;
    string_list one{arg};
    auto res = custom_options_.parse(scratch, one);
    if (res.first != caf::pec::success)
      throw config_error("invalid value for " + name + ": '" + text
                         + "' (expected " + expected_text(*opt) + ")");
  }
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
      throw config_error("invalid value for "
                         + std::string{full.begin(), full.end()} + ": "
                         + caf::to_string(*value) + " (expected "
                         + expected_text(opt) + ")");
    opt.store(*value);
  }
}

// -- validation -----------------------------------------------------------------

std::chrono::milliseconds node_config::duration_of(const std::string& text) {
  auto d = parse_duration(text);
  if (!d)
    throw config_error("not a duration: '" + text + "'");
  return std::chrono::milliseconds{*d};
}

void node_config::validate() const {
  auto fail = [](const std::string& option, const std::string& why) {
    throw config_error("invalid option " + option + ": " + why);
  };
  auto positive = [&](const char* option, size_t value) {
    if (value == 0)
      fail(option, "must be > 0");
  };
  auto in_range = [&](const char* option, size_t value, size_t lo, size_t hi) {
    if (value < lo || value > hi)
      fail(option, "must be " + std::to_string(lo) + ".." + std::to_string(hi)
                     + ", not " + std::to_string(value));
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
  if (influx_port != 0
      && (influx_port == tcp_port || influx_port == http_port
          || influx_port == cluster_port))
    fail("cairn.influx.port", "must differ from the tcp, http and cluster ports");
  in_range("cairn.tcp.max-line", tcp_max_line, 1, size_t{1} << 30);
  in_range("cairn.tcp.max-connections", tcp_max_connections, 1, 1000000);
  in_range("cairn.tcp.window", tcp_window, 1, 4096);
  in_range("cairn.http.max-connections", http_max_connections, 1, 100000);
  (void)http_io_threads();
  in_range("cairn.http.max-websockets", http_max_websockets, 1, 1000000);
  in_range("cairn.http.ws-max-message", http_ws_max_message, 64, size_t{1} << 26);
  in_range("cairn.live.max-subscriptions", live_max_subscriptions, 1, 100000);
  in_range("cairn.alerts.max-connections", alerts_max_connections, 1, 1024);
  in_range("cairn.alerts.max-attempts", alerts_max_attempts, 1, 1000);
  in_range("cairn.alerts.history", alerts_history, 1, 10000000);
  (void)io_threads();
  in_range("cairn.partitions", partitions, 1, 4096);
  (void)parsers();
  if (cluster_partitions > 4096)
    fail("cairn.cluster.partitions", "must be 0..4096");
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
  duration("cairn.tcp.idle-timeout", tcp_idle_timeout_text);
  duration("cairn.tcp.line-timeout", tcp_line_timeout_text);
  duration("cairn.http.idle-timeout", http_idle_timeout_text);
  duration("cairn.http.read-timeout", http_read_timeout_text);
  duration("cairn.ingest.max-future", max_future_text);
  duration("cairn.ingest.seal-after", seal_after_text);
  duration("cairn.http.ws-ping-interval", http_ws_ping_interval_text);
  duration("cairn.live.grace", live_grace_text);
  duration("cairn.alerts.connect-timeout", alerts_connect_timeout_text);
  duration("cairn.alerts.request-timeout", alerts_request_timeout_text);
  duration("cairn.alerts.idle-timeout", alerts_idle_timeout_text);
  duration("cairn.alerts.retry-initial", alerts_retry_initial_text);
  duration("cairn.alerts.retry-cap", alerts_retry_cap_text);
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
  duration("cairn.cluster.handshake-timeout", handshake_timeout_text);
  if (*parse_duration(handshake_timeout_text) <= 0)
    fail("cairn.cluster.handshake-timeout", "must be > 0");
  if (cluster_max_frame < 1024 || cluster_max_frame > 0xFFFFFFFFu)
    fail("cairn.cluster.max-frame", "must be 1024 .. 4294967295");
  positive("cairn.cluster.credits", cluster_credits);
  positive("cairn.cluster.breaker-failures", breaker_failures);
  positive("cairn.cluster.hints-max-bytes", hints_max_bytes);
  // TLS of the client ports: a key needs its certificate and vice versa;
  // every file named must be readable (its contents are checked when the
  // server builds its context).
  auto tls_files = [&](const std::string& prefix, const std::string& cert,
                       const std::string& key, const std::string& ca) {
    if (cert.empty()) {
      if (!key.empty() || !ca.empty())
        fail(prefix + (key.empty() ? "tls-client-ca" : "tls-key"),
             "needs " + prefix + "tls-certificate");
      return;
    }
    if (key.empty())
      fail(prefix + "tls-key", "required with " + prefix + "tls-certificate");
    for (auto [name, path] : {std::pair{"tls-certificate", &cert},
                              std::pair{"tls-key", &key},
                              std::pair{"tls-client-ca", &ca}}) {
      if (path->empty())
        continue;
      std::ifstream probe{*path};
      if (!probe)
        fail(prefix + name, "cannot read '" + *path + "'");
    }
  };
  if (!alerts_tls_ca_file.empty() && !std::ifstream{alerts_tls_ca_file})
    fail("cairn.alerts.tls-ca-file", "cannot read '" + alerts_tls_ca_file + "'");
  tls_files("cairn.tcp.", tcp_tls_certificate, tcp_tls_key, tcp_tls_client_ca);
  tls_files("cairn.http.", http_tls_certificate, http_tls_key,
            http_tls_client_ca);
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
  auto host_port = [](const std::string& text) {
    auto colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 >= text.size())
      return false;
    unsigned port = 0;
    auto [ptr, ec] = std::from_chars(text.data() + colon + 1,
                                     text.data() + text.size(), port);
    return ec == std::errc{} && ptr == text.data() + text.size() && port > 0
           && port < 65536;
  };
  for (auto& seed : cluster_seeds)
    if (!host_port(seed))
      fail("cairn.cluster.seeds", "'" + seed + "' is not host:port");
  if (!cluster_advertise.empty() && !host_port(cluster_advertise))
    fail("cairn.cluster.advertise",
         "'" + cluster_advertise + "' is not host:port");
  if (!cluster_seeds.empty() && cluster_advertise.empty()
      && (cluster_host == "0.0.0.0" || cluster_host == "::"))
    fail("cairn.cluster.advertise",
         "must be set when cairn.cluster.host is a wildcard and "
         "cairn.cluster.seeds are used (the others dial it)");
  if (!auth_algorithm.empty() && auth_algorithm != "HS256"
      && auth_algorithm != "RS256" && auth_algorithm != "ES256")
    fail("cairn.auth.algorithm", "must be HS256, RS256 or ES256, not '"
                                   + auth_algorithm + "'");
  if (!auth_secret_file.empty() && !auth_public_key_file.empty())
    fail("cairn.auth.secret-file", "set either secret-file (HS256) or "
                                   "public-key-file (RS256 / ES256), not both");
  if (auth_algorithm == "HS256" && !auth_public_key_file.empty())
    fail("cairn.auth.public-key-file", "needs cairn.auth.algorithm RS256 or ES256");
  if (auth_algorithm != "HS256" && !auth_secret_file.empty())
    fail("cairn.auth.secret-file", "needs cairn.auth.algorithm HS256");
  if (auth_enforced() && auth_secret_file.empty() && auth_public_key_file.empty())
    fail(auth_required ? "cairn.auth.required" : "cairn.tcp.host",
         std::string{auth_required ? "authentication is required"
                                   : "a non-loopback client port ('" + bind_host
                                       + "') requires authentication"}
           + ": set cairn.auth.secret-file (HS256) or cairn.auth.public-key-file "
             "(RS256 / ES256)");
  if (auth_enforced() && influx_port != 0)
    fail("cairn.influx.port", "line protocol over TCP carries no token: with "
                              "authentication use POST /write with a Bearer token");
  duration("cairn.auth.leeway", auth_leeway_text);
  duration("cairn.rate.burst", rate_burst_text);
  duration("cairn.rate.max-delay", rate_max_delay_text);
  if (*parse_duration(rate_burst_text) <= 0)
    fail("cairn.rate.burst", "must be > 0");
  for (auto [name, v] : {std::pair{"cairn.rate.events-per-sec", rate_events_per_sec},
                         {"cairn.rate.requests-per-sec", rate_requests_per_sec},
                         {"cairn.rate.ingest-events-per-sec", rate_ingest_events_per_sec},
                         {"cairn.rate.ingest-requests-per-sec", rate_ingest_requests_per_sec},
                         {"cairn.rate.query-events-per-sec", rate_query_events_per_sec},
                         {"cairn.rate.query-requests-per-sec", rate_query_requests_per_sec},
                         {"cairn.rate.admin-events-per-sec", rate_admin_events_per_sec},
                         {"cairn.rate.admin-requests-per-sec", rate_admin_requests_per_sec}})
    if (v > 1000000000000ull)
      fail(name, "must be 0 (unlimited) .. 10^12");
  positive("cairn.rate.max-principals", rate_max_principals);
  static constexpr const char* levels[]
    = {"trace", "debug", "info", "warn", "warning", "error", "critical", "off"};
  bool known = false;
  for (auto l : levels)
    known = known || log_level == l;
  if (!known)
    fail("cairn.log.level", "unknown level '" + log_level + "'");
}

bool node_config::clients_exposed() const noexcept {
  return !(bind_host == "127.0.0.1" || bind_host == "localhost"
           || bind_host == "::1" || bind_host.rfind("127.", 0) == 0);
}

} // namespace cairn::runtime
