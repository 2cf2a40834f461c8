// node_config: every option of a cairn-node, on top of CAF's config system.
//
// Options live in the `cairn` group so that an INI file's [cairn] section,
// nested [cairn.tcp] style keys and command-line flags like
// --cairn.tcp.port=7500 all work (precedence: defaults < file < flags).
// `--help` lists every option with its default. Read once at start-up, before
// the actor system is constructed; read-only afterwards.
//
// INI form (CAF 0.17 keys cannot contain '.', so sub-groups are sections or
// maps):
//
//     [cairn]
//     node-name = "n1"
//     tiers = ["1s:15m", "1m:2d"]
//     [cairn.tcp]
//     port = 7411
//     max-line = 1048576
//     [cairn.storage]
//     path = "./data/n1"
//
// `tcp = { port = 7411, max-line = 1048576 }` inside [cairn] is equivalent.
// Why `parse` is redeclared here: CAF 0.17 stores values of nested INI
// sections only in `content`, never in the bound fields; node_config::parse
// runs CAF's parser and then copies every cairn.* value from `content` into
// its field (CLI values are in `content` too, so flags still win). Always
// call parse on a node_config (not through an actor_system_config&).
// Boolean options accept both `--cairn.storage.skip-corrupt` and
// `--cairn.storage.skip-corrupt=true|false` on the command line.
//
// Strictness (docs/configuration.md): CAF 0.17 silently keeps unknown INI
// keys and drops values of the wrong type, so `parse` first reads the INI
// file itself (CAF's own INI parser, without options) and checks every key:
// a `cairn.*` key must be a known option with a value of its type; sections
// other than `cairn` must be ones CAF itself uses. Command-line arguments
// get the same check. Every failure is one line naming the key
// (`error_message()`); cairn-node prints it and exits 2.
#pragma once

#include <caf/actor_system_config.hpp>

#include <chrono>
#include <cstdint>
#include <istream>
#include <stdexcept>
#include <string>
#include <vector>

namespace cairn::runtime {

/// A configuration error (unknown key or section, wrong type, out of range):
/// one line that names the option. cairn-node exits 2 on it.
class config_error : public std::invalid_argument {
public:
  using std::invalid_argument::invalid_argument;
};

class node_config : public caf::actor_system_config {
public:
  node_config();

  // -- identity ---------------------------------------------------------------
  std::string node_name = "n1";

  // -- network ----------------------------------------------------------------
  std::string bind_host = "127.0.0.1";
  uint16_t tcp_port = 7411;
  uint16_t http_port = 7480;
  uint16_t cluster_port = 7400;
  /// cairn.influx.port: Influx line protocol over TCP (0 = off).
  uint16_t influx_port = 0;
  size_t tcp_max_line = 1 << 20;
  size_t tcp_max_connections = 512;
  size_t tcp_window = 64;         ///< chunks in flight per connection
  /// cairn.tcp.io-threads: "auto" (io_threads()) or a count 1..64.
  std::string io_threads_text = "auto";
  std::string tcp_idle_timeout_text = "5m";  ///< 0 = never
  std::string tcp_line_timeout_text = "30s"; ///< 0 = never
  /// cairn.tcp.tls-*: TLS on the NDJSON and influx ports (docs/operations.md,
  /// "TLS"); empty certificate = plain TCP.
  std::string tcp_tls_certificate;
  std::string tcp_tls_key;
  std::string tcp_tls_client_ca;  ///< set = client certificates required
  std::string web_root = "web";   ///< cairn.http.web-root: dashboard files
  std::string http_idle_timeout_text = "60s"; ///< keep-alive idle; 0 = never
  std::string http_read_timeout_text = "30s"; ///< header + body; 0 = never
  size_t http_max_connections = 64;
  /// cairn.http.max-websockets: WebSocket connections (/v1/live), counted
  /// apart from HTTP requests.
  size_t http_max_websockets = 1024;
  /// cairn.http.io-threads: Asio threads of the HTTP / WebSocket server.
  /// cairn.http.io-threads: "auto" (http_io_threads()) or a count 1..64.
  std::string http_io_threads_text = "auto";
  /// cairn.http.ws-max-message: largest message a WebSocket client may send.
  size_t http_ws_max_message = 64 * 1024;
  /// cairn.http.ws-ping-interval: ping an idle WebSocket this often; one
  /// that answers nothing for two intervals is closed (0 = never).
  std::string http_ws_ping_interval_text = "30s";
  /// cairn.http.tls-*: HTTPS and wss:// on the HTTP port, as cairn.tcp.tls-*.
  std::string http_tls_certificate;
  std::string http_tls_key;
  std::string http_tls_client_ca;

  // -- live subscriptions (docs/protocol.md, "Live subscriptions") ------------
  /// cairn.live.grace: a bucket counts as closed this long after its window.
  std::string live_grace_text = "200ms";
  /// cairn.live.max-subscriptions: per client (socket or connection).
  size_t live_max_subscriptions = 64;

  // -- alerting (docs/alerting.md) --------------------------------------------
  /// cairn.alerts.enabled: evaluate alert rules and send notifications.
  bool alerts_enabled = true;
  /// cairn.alerts.max-connections: webhook sockets per destination host.
  size_t alerts_max_connections = 4;
  std::string alerts_connect_timeout_text = "2s";
  std::string alerts_request_timeout_text = "5s";
  std::string alerts_idle_timeout_text = "30s";
  /// cairn.alerts.tls-ca-file: CA bundle for https:// receivers (empty =
  /// the system's store only).
  std::string alerts_tls_ca_file;
  /// Retries: full-jitter exponential backoff from retry-initial, doubling,
  /// capped at retry-cap; after max-attempts a dead letter.
  std::string alerts_retry_initial_text = "200ms";
  std::string alerts_retry_cap_text = "30s";
  size_t alerts_max_attempts = 10;
  /// cairn.alerts.history: history entries kept.
  size_t alerts_history = 10000;

  // -- ingest / aggregation ---------------------------------------------------
  size_t partitions = 8;
  /// cairn.ingest.parsers: "auto" or a fixed count (parsers()).
  std::string parsers_text = "auto";
  std::vector<std::string> tier_texts = {"1s:15m", "1m:2d", "1h:90d"};
  double sketch_accuracy = 0.01;
  std::string max_future_text = "10m";
  /// cairn.ingest.seal-after: lateness horizon after which a bucket's
  /// window is sealed into a compressed block (docs/configuration.md).
  std::string seal_after_text = "2s";
  /// cairn.limits.max-series: series per node (0 = no limit).
  size_t max_series = 1000000;
  size_t partition_credits = 128; ///< in-flight batches per partition

  // -- storage ----------------------------------------------------------------
  bool storage_enabled = true;  ///< false: in-memory only (benchmarks)
  std::string storage_path = "./data/n1";
  std::string storage_sync = "always";  ///< always | interval | never
  std::string storage_sync_interval_text = "10ms";
  size_t snapshot_every_events = 1000000;
  std::string snapshot_interval_text = "60s";
  size_t snapshot_keep = 2;
  std::string raw_retention_text = "0";
  bool skip_corrupt = false;
  size_t idempotency_keys = 100000;
  std::string idempotency_window_text = "24h";

  // -- cluster (docs/cluster.md) ---------------------------------------------
  /// cairn.cluster.node-name: this node's name in cairn.cluster.nodes
  /// (empty = cairn.node-name).
  std::string cluster_node_name;
  /// cairn.cluster.nodes: "name@host:port" of every member, this node
  /// included. Empty = single node (no peers, no routing).
  std::vector<std::string> cluster_nodes;
  /// cairn.cluster.seeds: "host:port" cluster ports of running members; a
  /// node started with seeds and no cairn.cluster.nodes joins their
  /// cluster (docs/cluster.md, "Joining through seeds").
  std::vector<std::string> cluster_seeds;
  /// cairn.cluster.advertise: "host:port" at which the other members reach
  /// this node's cluster port (empty = cairn.cluster.host:port).
  std::string cluster_advertise;
  /// cairn.cluster.partitions: partitions of the cluster (0 = use
  /// cairn.partitions). Must be equal on every node.
  size_t cluster_partitions = 0;
  /// cairn.cluster.host: address the cluster port binds (127.0.0.1 unless
  /// TLS is configured).
  std::string cluster_host = "127.0.0.1";
  std::string heartbeat_interval_text = "1s";
  std::string connection_timeout_text = "4s";
  std::string cluster_request_timeout_text = "2s";
  std::string cluster_ingest_timeout_text = "5s";
  size_t cluster_credits = 32; ///< in-flight remote batches per peer
  /// cairn.cluster.rebalance-concurrency: partition handoffs a membership
  /// saga runs at once (docs/sagas.md, "decommission": why 1).
  size_t rebalance_concurrency = 1;
  /// cairn.cluster.rebalance-bytes-per-second: pace of shipped snapshot
  /// bytes over all handoffs the coordinator runs (0 = unlimited). 16 MiB/s:
  /// faster pre-copies took the CPU from ingest on a small machine
  /// (docs/benchmarks.md, "Membership changes").
  size_t rebalance_bytes_per_second = 16u << 20;
  /// cairn.cluster.handoff-chunk-bytes: bytes per snapshot chunk message.
  size_t handoff_chunk_bytes = 1u << 20;
  std::string reconnect_min_text = "200ms";
  std::string reconnect_max_text = "5s";
  size_t breaker_failures = 3;
  std::string breaker_reset_text = "500ms";
  std::string breaker_reset_max_text = "10s";
  size_t hints_max_bytes = 256u << 20;  ///< per node, all peers together
  /// cairn.cluster.max-frame: largest BASP payload a cluster-port client
  /// may announce (the cluster gate closes the connection above it).
  size_t cluster_max_frame = 64u << 20;
  /// cairn.cluster.handshake-timeout: TLS + BASP client handshake deadline.
  std::string handshake_timeout_text = "5s";
  std::string tls_certificate;  ///< PEM; all three set = mutual TLS
  std::string tls_key;
  std::string tls_ca_file;

  /// The effective cluster node name.
  const std::string& member_name() const noexcept {
    return cluster_node_name.empty() ? node_name : cluster_node_name;
  }
  bool tls_enabled() const noexcept { return !tls_certificate.empty(); }
  /// The "host:port" this node announces when it joins through seeds.
  std::string advertised_cluster_address() const {
    return cluster_advertise.empty()
             ? cluster_host + ":" + std::to_string(cluster_port)
             : cluster_advertise;
  }

  /// The INI file parse() read (--config-file), empty if none: relative
  /// paths such as cairn.http.web-root are also looked up next to it.
  std::string config_file;

  // -- client authentication and rate limits (docs/operations.md,
  //    "Securing a node") -------------------------------------------------------
  bool auth_required = false;        ///< cairn.auth.required
  std::string auth_algorithm = "HS256";
  std::string auth_secret_file;      ///< HS256 shared secret
  std::string auth_public_key_file;  ///< RS256 / ES256 PEM public key
  std::string auth_leeway_text = "30s";
  std::string auth_issuer;
  std::string auth_audience;
  // Integers: CAF 0.17's INI parser reads "20" as an integer, which a
  // double option refuses.
  size_t rate_events_per_sec = 0;    ///< 0 = unlimited
  size_t rate_requests_per_sec = 0;
  size_t rate_ingest_events_per_sec = 0;  ///< 0 = the default above
  size_t rate_ingest_requests_per_sec = 0;
  size_t rate_query_events_per_sec = 0;
  size_t rate_query_requests_per_sec = 0;
  size_t rate_admin_events_per_sec = 0;
  size_t rate_admin_requests_per_sec = 0;
  std::string rate_burst_text = "1s";
  std::string rate_max_delay_text = "1s";
  size_t rate_max_principals = 100000;

  /// True if the client ports (tcp, http) bind a non-loopback address.
  bool clients_exposed() const noexcept;
  /// True if every client must authenticate: cairn.auth.required, or a
  /// non-loopback client port.
  bool auth_enforced() const noexcept {
    return auth_required || clients_exposed();
  }

  // -- logging ----------------------------------------------------------------
  std::string log_level = "info";
  std::string log_file;  ///< empty = stderr

  /// Validates the options that runtime/ understands (ports, sizes and
  /// their ranges, durations, sync mode). Throws config_error naming the
  /// bad option. Domain options (tiers) are validated where they are parsed.
  void validate() const;

  /// cairn.ingest.parsers as a count, 0 for "auto". Throws config_error
  /// unless it is auto or 1..256.
  size_t parsers() const;

  /// The I/O threads of the TCP gateway and of the HTTP server: the count
  /// given, or for "auto" one per 4 cores (at least 1; reading and cutting
  /// lines costs a fraction of what parsing and applying them does,
  /// docs/architecture.md "Ingest cost budget"). Throws config_error
  /// unless the option is auto or 1..64.
  size_t io_threads() const;
  size_t http_io_threads() const;

  /// A duration option known to be valid (after validate()).
  static std::chrono::milliseconds duration_of(const std::string& text);

  // -- parsing (hides the base overloads, see the header comment) -------------

  /// Usage text listing every cairn.* option with its type, description and
  /// current (default) value, followed by CAF's own options. Printed by
  /// `cairn-node --help`.
  std::string help_text() const;

  /// Parses the INI file (--config-file=FILE, else `ini_file`) and the
  /// command line. On failure returns an error and error_message() says,
  /// in one line, which key is wrong and why.
  caf::error parse(int argc, char** argv, const char* ini_file = nullptr);
  caf::error parse(int argc, char** argv, std::istream& ini);
  caf::error parse(string_list args, const char* ini_file = nullptr);
  caf::error parse(string_list args, std::istream& ini);

  /// Copies every `cairn.*` value found in `content` (nested INI sections,
  /// CLI flags) into its field. Called by parse; public for callers that fill
  /// `content` by other means.
  void sync_options();

  /// The one-line description of the last failed parse (empty after a
  /// successful one).
  const std::string& error_message() const noexcept { return error_message_; }

  /// Checks the keys and values of an INI text as the class comment says.
  /// Throws config_error naming the first bad key; `source` names the file
  /// in the message.
  void check_ini(const std::string& text, const std::string& source);

  /// Checks command-line arguments as the class comment says. Throws
  /// config_error naming the first bad argument.
  void check_args(const string_list& args);

private:
  std::string error_message_;
};

} // namespace cairn::runtime
