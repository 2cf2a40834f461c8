// The commands of cairn-cli. Each one opens its own connection, talks the
// protocol of docs/protocol.md and returns the process exit status:
//
//   0  success
//   1  the server answered with an error (or rejected events)
//   2  transport failure: cannot connect, connection lost, no reply in time
//  64  usage error (bad arguments)
//
// Results go to stdout, diagnostics and server errors to stderr, the latter
// as "error: CODE: MESSAGE". Commands run on the main thread; `ingest` adds
// one reader thread of its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../common/tls_client.hpp"

namespace cairn::cli {

/// Exit statuses shared by all commands.
namespace exit_code {
constexpr int ok = 0;
constexpr int server_error = 1;
constexpr int transport = 2;
constexpr int usage = 64;
} // namespace exit_code

/// Global options, parsed before the command word.
struct cli_options {
  std::string host = "127.0.0.1";
  uint16_t port = 7411;
  /// Print raw reply lines (or a JSON summary) instead of tables.
  bool json = false;
  /// Connect / reply timeout for single requests.
  std::chrono::milliseconds timeout{10000};
  /// How many error lines `ingest` prints before only counting them.
  int64_t max_errors = 100;
  /// TLS to the client port (--tls, --tls-*; docs/clients.md).
  apps::tls_client_options tls;
  /// JWT presented first on every connection (--token or CAIRN_TOKEN;
  /// empty = none).
  std::string token;
  /// `token` command: how to sign (docs/operations.md, "Securing a node").
  struct signing {
    std::string key_file;        ///< HS256 secret or RS256/ES256 private key
    std::string algorithm = "HS256";
    std::string ttl = "24h";
    std::string issuer;
    std::string audience;
  } sign;
};

/// Prints "error: CODE: MESSAGE" for an error reply to stderr and returns
/// exit_code::server_error.
int report_error(const nlohmann::ordered_json& reply);

int run_ingest(const cli_options& opts, const std::string& path);
int run_query(const cli_options& opts, const std::string& request_text);
int run_topk(const cli_options& opts, const std::string& request_text);
int run_series(const cli_options& opts, const std::string& metric);
int run_metrics(const cli_options& opts);
int run_stats(const cli_options& opts);
int run_ping(const cli_options& opts);
int run_raw(const cli_options& opts, const std::string& request_text);
/// Prints a token for SUBJECT with the comma-separated SCOPES, signed with
/// opts.sign (no connection is opened).
int run_token(const cli_options& opts, const std::string& subject,
              const std::string& scopes);
int run_tail(const cli_options& opts, const std::string& metric,
             const std::vector<std::string>& aggs);

} // namespace cairn::cli
