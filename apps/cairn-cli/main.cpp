// cairn-cli: a command-line client for a Cairn node's NDJSON-over-TCP port
// (docs/protocol.md). Parses the command line and runs one command; see
// docs/clients.md for usage.
#include <charconv>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "commands.hpp"
#include "line_client.hpp"
#include "../common/tcp_connect.hpp"

namespace {

using namespace cairn::cli;

constexpr const char* usage_text = R"(usage: cairn-cli [OPTIONS] COMMAND [ARGS]

Talks to a Cairn node's client port (NDJSON over TCP, or TLS with --tls).

commands:
  ingest FILE|-          stream NDJSON events from FILE or stdin (fire-and-forget),
                         then flush and print accepted/rejected counts
  query '{json}'         run a query ("op":"query" is added if missing) and print
                         one table per series
  topk '{json}'          run a top-K request and print it as a table
  series [METRIC]        list series (of METRIC)
  metrics                list metrics with their series counts
  stats                  print node statistics
  ping                   print node, version, status and round-trip time
  raw '{json}'           send any request line, print the reply line
  tail METRIC [AGG...]   every second, print newly closed buckets of the last
                         minute (default agg: count) until Ctrl-C
  token SUB SCOPES       print a JWT for subject SUB with SCOPES (comma-separated:
                         ingest,query,admin) signed with --key-file; opens no
                         connection

options:
  --host H               node address (default 127.0.0.1)
  --token JWT            token presented first on each connection (default:
                         the environment variable CAIRN_TOKEN)
  --port P               client port (default 7411)
  --json                 print raw reply lines / a JSON summary instead of tables
  --timeout S            seconds to wait for a connection or reply (default 10;
                         ingest waits up to 6x this for its flush)
  --max-errors N         ingest: print at most N rejected lines (default 100)
  --tls                  connect with TLS (implied by every --tls-* flag)
  --tls-ca PEM           CA that signed the node's certificate (default: the
                         system's CA store)
  --tls-cert PEM --tls-key PEM
                         client certificate, when the node requires one
  --tls-server-name N    name the certificate must carry (default: --host)
  --tls-insecure         skip every certificate check (tests only)
  --key-file F           token: the HS256 secret file (the node's
                         cairn.auth.secret-file) or an RS256/ES256 private key
  --algorithm A          token: HS256 (default), RS256 or ES256
  --ttl D                token: lifetime, e.g. 15m, 24h, 30d (default 24h)
  --issuer I, --audience A
                         token: iss / aud claims (when the node checks them)
  -h, --help             this text

exit status: 0 ok, 1 server error or rejected events, 2 connection failure,
64 usage error.

examples:
  cairn-cli ingest events.ndjson
  cairn-cli query '{"metric":"http.latency_ms","from":"-5m","step":"10s","aggs":["count","p99"]}'
  cairn-cli topk '{"metric":"http.latency_ms","by":"path","k":5}'
  cairn-cli tail http.latency_ms count p99
  cairn-cli --key-file /etc/cairn/jwt/secret token grafana query
)";

int usage_error(const std::string& msg) {
  std::cerr << "cairn-cli: " << msg << "\n(see cairn-cli --help)\n";
  return exit_code::usage;
}

template <class T>
bool parse_number(std::string_view text, T& out) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc{} && ptr == text.data() + text.size();
}

int dispatch(const cli_options& opts, const std::vector<std::string>& args) {
  const auto& cmd = args[0];
  auto argc = args.size() - 1;
  auto need = [&](size_t min, size_t max) {
    return argc >= min && argc <= max;
  };
  if (cmd == "ingest" && need(1, 1))
    return run_ingest(opts, args[1]);
  if (cmd == "query" && need(1, 1))
    return run_query(opts, args[1]);
  if (cmd == "topk" && need(1, 1))
    return run_topk(opts, args[1]);
  if (cmd == "series" && need(0, 1))
    return run_series(opts, argc == 1 ? args[1] : std::string{});
  if (cmd == "metrics" && need(0, 0))
    return run_metrics(opts);
  if (cmd == "stats" && need(0, 0))
    return run_stats(opts);
  if (cmd == "ping" && need(0, 0))
    return run_ping(opts);
  if (cmd == "raw" && need(1, 1))
    return run_raw(opts, args[1]);
  if (cmd == "tail" && argc >= 1)
    return run_tail(opts, args[1], {args.begin() + 2, args.end()});
  if (cmd == "token" && need(2, 2))
    return run_token(opts, args[1], args[2]);
  static constexpr const char* known[] = {"ingest",  "query", "topk",
                                          "series",  "metrics", "stats",
                                          "ping",    "raw",   "tail",
                                          "token"};
  for (auto* k : known)
    if (cmd == k)
      return usage_error("wrong number of arguments for '" + cmd + "'");
  return usage_error("unknown command '" + cmd + "'");
}

} // namespace

int main(int argc, char** argv) {
  cli_options opts;
  std::vector<std::string> positional;
  bool options_done = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (options_done || arg.size() < 2 || arg[0] != '-') {
      positional.emplace_back(arg);
      continue;
    }
    if (arg == "--") {
      options_done = true;
      continue;
    }
    if (arg == "-h" || arg == "--help") {
      std::cout << usage_text;
      return exit_code::ok;
    }
    if (arg == "--json") {
      opts.json = true;
      continue;
    }
    if (arg == "--tls" || arg == "--tls-insecure") {
      (void)opts.tls.parse_flag(std::string{arg}, {});
      continue;
    }
    // Options with a value: "--name value" or "--name=value".
    std::string_view name = arg;
    std::string_view value;
    if (auto eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return usage_error("option " + std::string{arg} + " needs a value");
    }
    if (name == "--host") {
      opts.host = value;
    } else if (name == "--port") {
      if (!parse_number(value, opts.port) || opts.port == 0)
        return usage_error("bad port '" + std::string{value} + "'");
    } else if (name == "--timeout") {
      double secs = 0;
      try {
        secs = std::stod(std::string{value});
      } catch (const std::exception&) {
        secs = -1;
      }
      if (!(secs > 0))
        return usage_error("bad timeout '" + std::string{value} + "'");
      opts.timeout = std::chrono::milliseconds(static_cast<int64_t>(secs * 1000));
    } else if (cairn::apps::tls_client_options::takes_value(std::string{name})) {
      (void)opts.tls.parse_flag(std::string{name}, std::string{value});
    } else if (name == "--token") {
      opts.token = value;
    } else if (name == "--key-file") {
      opts.sign.key_file = value;
    } else if (name == "--algorithm") {
      opts.sign.algorithm = value;
    } else if (name == "--ttl") {
      opts.sign.ttl = value;
    } else if (name == "--issuer") {
      opts.sign.issuer = value;
    } else if (name == "--audience") {
      opts.sign.audience = value;
    } else if (name == "--max-errors") {
      if (!parse_number(value, opts.max_errors) || opts.max_errors < 0)
        return usage_error("bad --max-errors '" + std::string{value} + "'");
    } else {
      return usage_error("unknown option " + std::string{name});
    }
  }
  if (positional.empty())
    return usage_error("no command given");
  opts.token = cairn::apps::client_token(opts.token);
  try {
    return dispatch(opts, positional);
  } catch (const transport_error& e) {
    std::cerr << "error: " << e.what() << '\n';
    return exit_code::transport;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
    return exit_code::server_error;
  }
}
