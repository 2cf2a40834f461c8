#include "bench_options.hpp"

#include "runtime/time.hpp"

#include <algorithm>
#include <cstdlib>
#include <charconv>
#include <iostream>
#include <string_view>

#include <nlohmann/json.hpp>

namespace cairn::bench {

namespace {

constexpr const char* help_text = R"(usage: cairn-bench [OPTIONS]

Load generator for a Cairn node's client port (NDJSON over TCP), with
latency histograms.

connection:
  --host H            node address (default 127.0.0.1)
  --port P            client port (default 7411)
  --token JWT         token presented first on each connection (default:
                      the environment variable CAIRN_TOKEN)
  --connections N     parallel connections (default 4; 1 in --query-mode)
  --timeout S         give up after S seconds without reply progress (default 30)
  --tls               connect with TLS (implied by every --tls-* flag)
  --tls-ca PEM        CA that signed the node's certificate (default: system store)
  --tls-cert PEM --tls-key PEM
                      client certificate, when the node requires one
  --tls-server-name N name the certificate must carry (default: --host)
  --tls-insecure      skip every certificate check (tests only)

load:
  --mode ff|ack       ff: fire-and-forget event lines, one flush per connection
                      at the end (default); ack: {"op":"ingest"} requests of
                      --batch events, --inflight outstanding per connection
  --rate R            total events/s (queries/s in --query-mode); 0 = max (default)
  --duration S        seconds to run (default 10)
  --events N          send exactly N events (N queries with --queries) instead
  --series K          distinct series (default 1000): metric bench.m<i%10>,
                      tags {"host":"h<i/10>","region":eu|us|ap|sa}
  --batch B           ff: lines per write; ack: events per request (default 1000)
  --inflight M        ack/query: requests outstanding per connection
                      (default 4 in ack mode, 1 in query mode)
  --flush-every E     ff: also flush every E events per connection and report
                      the flush (ack) latency (default 0 = only at the end)
  --pool E            pre-generated events per connection (default 65536)
  --seed S            random seed for values and jitter (default 42)
  --ts-spread D       event times uniform over the last D (e.g. 60s, 500ms;
                      at most 1h) instead of now (default 0)
  --value-spread N    values log-uniform over N decades (1 .. 10^N, N <= 15)
                      instead of latency-like (default 0)

query mode:
  --query-mode        fire a query repeatedly instead of ingesting
  --query '{json}'    the query (default: 5 minutes of bench.m0 for host h0,
                      step 10s, aggs count+p99)
  --queries N         number of queries (default: run for --duration)

output:
  --json              print one JSON object with the results
  -h, --help          this text

exit status: 0 ok; 1 rejected events, error replies or accepted != sent;
2 connection failure; 64 usage error; 130 interrupted twice.
)";

int usage_error(const std::string& msg) {
  std::cerr << "cairn-bench: " << msg << "\n(see cairn-bench --help)\n";
  return 64;
}

template <class T>
bool parse_int(std::string_view text, T& out) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc{} && ptr == text.data() + text.size();
}

bool parse_double(std::string_view text, double& out) {
  try {
    size_t used = 0;
    out = std::stod(std::string{text}, &used);
    return used == text.size() && out >= 0;
  } catch (const std::exception&) {
    return false;
  }
}

/// A duration like "60s" or "500ms" (runtime/time.hpp), at most an hour.
bool parse_spread(std::string_view text, uint32_t& out_ms) {
  auto d = runtime::parse_duration(text);
  if (!d || *d < 0 || *d > 3'600'000)
    return false;
  out_ms = static_cast<uint32_t>(*d);
  return true;
}

} // namespace

const char* to_string(bench_mode m) noexcept {
  switch (m) {
    case bench_mode::ff:
      return "ff";
    case bench_mode::ack:
      return "ack";
    case bench_mode::query:
      return "query";
  }
  return "?";
}

std::optional<bench_options> parse_bench_options(int argc, char** argv,
                                                 int& exit_status) {
  bench_options opts;
  bool connections_set = false;
  bool inflight_set = false;
  bool query_mode = false;
  uint64_t queries = 0;
  exit_status = 64;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << help_text;
      exit_status = 0;
      return std::nullopt;
    }
    if (arg == "--json") {
      opts.json = true;
      continue;
    }
    if (arg == "--query-mode") {
      query_mode = true;
      continue;
    }
    if (arg == "--tls" || arg == "--tls-insecure") {
      (void)opts.tls.parse_flag(std::string{arg}, {});
      continue;
    }
    std::string_view name = arg.substr(0, arg.find('='));
    static constexpr std::string_view valued[] = {
      "--host",     "--port",     "--connections", "--rate",
      "--duration", "--events",   "--series",      "--batch",
      "--inflight", "--flush-every", "--pool",     "--seed",
      "--timeout",  "--queries",  "--query",       "--mode",
      "--ts-spread", "--value-spread",
      "--tls-ca",   "--tls-cert", "--tls-key",     "--tls-server-name", "--token"};
    if (std::find(std::begin(valued), std::end(valued), name)
        == std::end(valued)) {
      usage_error(arg.starts_with("-") ? "unknown option " + std::string{name}
                                       : "unexpected argument '"
                                           + std::string{arg} + "'");
      return std::nullopt;
    }
    std::string_view value;
    if (auto eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    } else if (i + 1 < argc && arg.starts_with("--")) {
      value = argv[++i];
    } else {
      usage_error(arg.starts_with("--") ? "option " + std::string{arg}
                                            + " needs a value"
                                        : "unexpected argument '"
                                            + std::string{arg} + "'");
      return std::nullopt;
    }
    bool ok = true;
    if (apps::tls_client_options::takes_value(std::string{name}))
      (void)opts.tls.parse_flag(std::string{name}, std::string{value});
    else if (name == "--host")
      opts.host = value;
    else if (name == "--token")
      opts.token = value;
    else if (name == "--port")
      ok = parse_int(value, opts.port) && opts.port != 0;
    else if (name == "--connections") {
      ok = parse_int(value, opts.connections) && opts.connections > 0
           && opts.connections <= 1024;
      connections_set = true;
    }
    else if (name == "--rate")
      ok = parse_double(value, opts.rate);
    else if (name == "--duration")
      ok = parse_double(value, opts.duration_s) && opts.duration_s > 0;
    else if (name == "--events")
      ok = parse_int(value, opts.events) && opts.events > 0;
    else if (name == "--series")
      ok = parse_int(value, opts.series) && opts.series > 0;
    else if (name == "--batch")
      ok = parse_int(value, opts.batch) && opts.batch > 0
           && opts.batch <= 1'000'000;
    else if (name == "--inflight") {
      ok = parse_int(value, opts.inflight) && opts.inflight > 0;
      inflight_set = true;
    }
    else if (name == "--flush-every")
      ok = parse_int(value, opts.flush_every);
    else if (name == "--pool")
      ok = parse_int(value, opts.pool) && opts.pool > 0
           && opts.pool <= 4'000'000;
    else if (name == "--seed")
      ok = parse_int(value, opts.seed);
    else if (name == "--ts-spread")
      ok = parse_spread(value, opts.shape.ts_spread_ms);
    else if (name == "--value-spread")
      ok = parse_int(value, opts.shape.value_decades)
           && opts.shape.value_decades <= 15;
    else if (name == "--timeout")
      ok = parse_double(value, opts.timeout_s) && opts.timeout_s > 0;
    else if (name == "--queries")
      ok = parse_int(value, queries) && queries > 0;
    else if (name == "--query")
      opts.query = value;
    else if (name == "--mode") {
      if (value == "ff")
        opts.mode = bench_mode::ff;
      else if (value == "ack")
        opts.mode = bench_mode::ack;
      else
        ok = false;
    } else {
      usage_error("unknown option " + std::string{name});
      return std::nullopt;
    }
    if (!ok) {
      usage_error("bad value '" + std::string{value} + "' for "
                  + std::string{name});
      return std::nullopt;
    }
  }
  if (query_mode) {
    opts.mode = bench_mode::query;
    if (!connections_set)
      opts.connections = 1;
    if (!inflight_set)
      opts.inflight = 1;
    if (queries > 0)
      opts.events = queries;
    if (opts.query.empty())
      opts.query = R"({"op":"query","metric":"bench.m0","from":"-5m","to":"now",)"
                   R"("step":"10s","aggs":["count","p99"],)"
                   R"("where":{"host":"h0","region":"eu"}})";
    auto doc = nlohmann::ordered_json::parse(opts.query, nullptr, false);
    if (!doc.is_object()) {
      usage_error("--query must be a JSON object");
      return std::nullopt;
    }
    if (!doc.contains("op")) {
      nlohmann::ordered_json with_op = {{"op", "query"}};
      for (auto& [k, v] : doc.items())
        with_op[k] = v;
      doc = std::move(with_op);
    }
    opts.query = doc.dump();
  } else if (queries > 0 || !opts.query.empty()) {
    usage_error("--query and --queries need --query-mode");
    return std::nullopt;
  }
  if (opts.token.empty())
    if (const char* env = std::getenv("CAIRN_TOKEN"))
      opts.token = env;
  exit_status = 0;
  return opts;
}

} // namespace cairn::bench
