// Request/reply commands of cairn-cli: query, topk, series, metrics, stats,
// ping, raw and tail. `ingest` lives in ingest.cpp.
#include "commands.hpp"
#include "runtime/auth/jwt_signer.hpp"
#include "runtime/time.hpp"

#include <algorithm>
#include <atomic>
#include <csignal>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

#include "line_client.hpp"
#include "../common/text_table.hpp"

namespace cairn::cli {

namespace {

using std::chrono::milliseconds;

// -- shared helpers -------------------------------------------------------------

using runtime::format_duration;
using runtime::wall_clock_now;

/// Parses a reply line; prints a message and returns nullopt if it is not a
/// JSON object.
std::optional<json> parse_reply(const std::string& line) {
  auto doc = json::parse(line, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    std::cerr << "error: malformed reply from server: " << line << '\n';
    return std::nullopt;
  }
  return doc;
}

bool is_ok(const json& reply) {
  auto it = reply.find("ok");
  return it != reply.end() && it->is_boolean() && it->get<bool>();
}

/// Parses a request given on the command line as a JSON object, filling in
/// `op` if absent. Prints a usage message and returns nullopt on bad input.
std::optional<json> parse_request(const std::string& text, const char* op) {
  auto doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    std::cerr << "error: " << op
              << ": the argument must be a JSON object, e.g. '{\"metric\":\"m\"}'"
              << '\n';
    return std::nullopt;
  }
  if (!doc.contains("op")) {
    // Put "op" first: it reads better in logs.
    json with_op = {{"op", op}};
    for (auto& [k, v] : doc.items())
      with_op[k] = v;
    doc = std::move(with_op);
  }
  return doc;
}

/// Sends one request and returns the parsed reply, or nullopt after an
/// error message. Stores the raw reply line in `raw` when given.
std::optional<json> call(const cli_options& opts, const json& request,
                         std::string* raw = nullptr) {
  line_client conn{opts.host, opts.port, opts.timeout, opts.tls, opts.token};
  auto line = conn.request(request.dump(), opts.timeout);
  if (raw != nullptr)
    *raw = line;
  return parse_reply(line);
}

/// Common tail of simple commands: raw output with --json, error handling.
/// Returns the reply to print as a table, or an exit status.
struct call_result {
  std::optional<json> reply;
  int status = exit_code::ok;
};

call_result call_checked(const cli_options& opts, const json& request) {
  std::string raw;
  auto reply = call(opts, request, &raw);
  if (!reply)
    return {std::nullopt, exit_code::server_error};
  if (!is_ok(*reply))
    return {std::nullopt, report_error(*reply)};
  if (opts.json) {
    std::cout << raw << '\n';
    return {std::nullopt, exit_code::ok};
  }
  return {std::move(reply), exit_code::ok};
}

void warn_partial(const json& reply) {
  if (reply.value("partial", false)) {
    std::cerr << "warning: partial result";
    if (auto it = reply.find("missing_partitions"); it != reply.end())
      std::cerr << ", missing partitions " << it->dump();
    std::cerr << '\n';
  }
}

int64_t int_or(const json& v, int64_t fallback) {
  return v.is_number() ? v.get<int64_t>() : fallback;
}

// -- stats printer --------------------------------------------------------------

void print_tree(std::ostream& out, const json& obj, int indent);

void print_object_array(std::ostream& out, const json& arr, int indent) {
  text_table table;
  std::vector<std::string> keys;
  for (const auto& row : arr)
    for (const auto& [k, v] : row.items())
      if (std::find(keys.begin(), keys.end(), k) == keys.end())
        keys.push_back(k);
  for (const auto& k : keys) {
    bool numeric = std::all_of(arr.begin(), arr.end(), [&](const json& row) {
      auto it = row.find(k);
      return it == row.end() || it->is_number();
    });
    table.add_column(k, numeric ? align::right : align::left);
  }
  for (const auto& row : arr) {
    std::vector<std::string> cells;
    for (const auto& k : keys) {
      auto it = row.find(k);
      cells.push_back(it == row.end() ? "" : format_cell(*it));
    }
    table.add_row(std::move(cells));
  }
  std::ostringstream buf;
  table.print(buf);
  std::istringstream lines{buf.str()};
  for (std::string line; std::getline(lines, line);)
    out << std::string(indent, ' ') << line << '\n';
}

void print_tree(std::ostream& out, const json& obj, int indent) {
  std::string pad(indent, ' ');
  for (const auto& [key, val] : obj.items()) {
    if (indent == 0 && key == "ok")
      continue;
    if (val.is_object()) {
      out << pad << key << ":\n";
      print_tree(out, val, indent + 2);
    } else if (val.is_array() && !val.empty()
               && std::all_of(val.begin(), val.end(),
                              [](const json& x) { return x.is_object(); })) {
      out << pad << key << ":\n";
      print_object_array(out, val, indent + 2);
    } else if (val.is_array()) {
      std::string joined;
      for (const auto& x : val)
        joined += (joined.empty() ? "" : ", ") + format_cell(x);
      out << pad << key << ": " << (val.empty() ? "(none)" : joined) << '\n';
    } else {
      out << pad << key << ": " << format_cell(val) << '\n';
    }
  }
}

// -- query table ----------------------------------------------------------------

/// Prints a query reply as one aligned table per series.
void print_query(const json& request, const json& reply) {
  auto step = int_or(reply.value("step", json{}), 0);
  std::cout << "metric " << request.value("metric", std::string{"?"});
  if (step > 0)
    std::cout << "  step " << format_duration(step);
  if (auto it = reply.find("tier"); it != reply.end())
    std::cout << "  tier " << format_cell(*it);
  std::cout << '\n';
  warn_partial(reply);
  const auto& series = reply.value("series", json::array());
  if (series.empty()) {
    std::cout << "(no data)\n";
    return;
  }
  // Agg columns: as requested, else as they appear in the points.
  std::vector<std::string> aggs;
  if (auto it = request.find("aggs"); it != request.end() && it->is_array()) {
    for (const auto& a : *it)
      if (a.is_string())
        aggs.push_back(a.get<std::string>());
  } else {
    for (const auto& s : series)
      for (const auto& p : s.value("points", json::array()))
        for (const auto& [k, v] : p.items())
          if (k != "t" && std::find(aggs.begin(), aggs.end(), k) == aggs.end())
            aggs.push_back(k);
  }
  bool first = true;
  for (const auto& s : series) {
    if (!first)
      std::cout << '\n';
    first = false;
    const auto& points = s.value("points", json::array());
    std::cout << "series " << format_tags(s.value("tags", json::object()))
              << "  (" << points.size() << " points)\n";
    bool millis = std::any_of(points.begin(), points.end(), [](const json& p) {
      return int_or(p.value("t", json{}), 0) % 1000 != 0;
    });
    text_table table;
    table.add_column("time");
    for (const auto& a : aggs)
      table.add_column(a, align::right);
    for (const auto& p : points) {
      std::vector<std::string> cells;
      cells.push_back(format_iso8601(int_or(p.value("t", json{}), 0), millis));
      for (const auto& a : aggs) {
        auto it = p.find(a);
        cells.push_back(it == p.end() ? "-" : format_cell(*it));
      }
      table.add_row(std::move(cells));
    }
    table.print(std::cout);
  }
}

// -- tail -----------------------------------------------------------------------

std::atomic<bool> g_interrupted{false};

extern "C" void on_sigint(int) {
  g_interrupted.store(true);
}

} // namespace

// -- commands -------------------------------------------------------------------

int report_error(const json& reply) {
  std::string code = "internal";
  std::string message = reply.dump();
  if (auto it = reply.find("error"); it != reply.end() && it->is_object()) {
    code = it->value("code", std::string{"unknown"});
    message = it->value("message", std::string{});
  }
  std::cerr << "error: " << code << ": " << message << '\n';
  return exit_code::server_error;
}


int run_query(const cli_options& opts, const std::string& request_text) {
  auto request = parse_request(request_text, "query");
  if (!request)
    return exit_code::usage;
  auto res = call_checked(opts, *request);
  if (res.reply)
    print_query(*request, *res.reply);
  return res.status;
}

int run_topk(const cli_options& opts, const std::string& request_text) {
  auto request = parse_request(request_text, "topk");
  if (!request)
    return exit_code::usage;
  auto res = call_checked(opts, *request);
  if (!res.reply)
    return res.status;
  const auto& reply = *res.reply;
  warn_partial(reply);
  const auto& top = reply.value("top", json::array());
  if (top.empty()) {
    std::cout << "(no data)\n";
    return exit_code::ok;
  }
  text_table table;
  table.add_column("rank", align::right);
  table.add_column(request->value("by", std::string{"tag"}));
  table.add_column(request->value("agg", std::string{"count"}), align::right);
  int rank = 0;
  for (const auto& entry : top)
    table.add_row({std::to_string(++rank),
                   format_cell(entry.value("tag", json{})),
                   format_cell(entry.value("value", json{}))});
  table.print(std::cout);
  return exit_code::ok;
}

int run_series(const cli_options& opts, const std::string& metric) {
  json request = {{"op", "series"}};
  if (!metric.empty())
    request["metric"] = metric;
  auto res = call_checked(opts, request);
  if (!res.reply)
    return res.status;
  const auto& series = res.reply->value("series", json::array());
  text_table table;
  table.add_column("metric");
  table.add_column("tags");
  for (const auto& s : series)
    table.add_row({s.value("metric", std::string{}),
                   format_tags(s.value("tags", json::object()))});
  if (table.empty())
    std::cout << "(no series)\n";
  else
    table.print(std::cout);
  std::cout << series.size() << " series";
  if (res.reply->value("truncated", false))
    std::cout << " (truncated: more exist; narrow with a metric)";
  std::cout << '\n';
  return exit_code::ok;
}

int run_metrics(const cli_options& opts) {
  auto res = call_checked(opts, json{{"op", "metrics"}});
  if (!res.reply)
    return res.status;
  const auto& metrics = res.reply->value("metrics", json::array());
  if (metrics.empty()) {
    std::cout << "(no metrics)\n";
    return exit_code::ok;
  }
  text_table table;
  table.add_column("metric");
  table.add_column("series", align::right);
  for (const auto& m : metrics)
    table.add_row({m.value("name", std::string{}),
                   format_cell(m.value("series", json{}))});
  table.print(std::cout);
  return exit_code::ok;
}

int run_stats(const cli_options& opts) {
  auto res = call_checked(opts, json{{"op", "stats"}});
  if (res.reply)
    print_tree(std::cout, *res.reply, 0);
  return res.status;
}

int run_ping(const cli_options& opts) {
  line_client conn{opts.host, opts.port, opts.timeout, opts.tls, opts.token};
  auto start = std::chrono::steady_clock::now();
  auto line = conn.request(R"({"op":"ping"})", opts.timeout);
  auto rtt = std::chrono::duration<double, std::milli>(
               std::chrono::steady_clock::now() - start)
               .count();
  auto reply = parse_reply(line);
  if (!reply)
    return exit_code::server_error;
  if (!is_ok(*reply))
    return report_error(*reply);
  if (opts.json) {
    std::cout << line << '\n';
    return exit_code::ok;
  }
  char rtt_text[32];
  std::snprintf(rtt_text, sizeof(rtt_text), "%.3f", rtt);
  std::cout << "node " << format_cell(reply->value("node", json{}))
            << "  version " << format_cell(reply->value("version", json{}))
            << "  status " << format_cell(reply->value("status", json{}))
            << "  rtt " << rtt_text << " ms\n";
  return exit_code::ok;
}

int run_raw(const cli_options& opts, const std::string& request_text) {
  // Sent as given (bad requests are useful to test the server), but always
  // as a single line.
  std::string line = request_text;
  std::replace(line.begin(), line.end(), '\n', ' ');
  line_client conn{opts.host, opts.port, opts.timeout, opts.tls, opts.token};
  auto reply_line = conn.request(line, opts.timeout);
  std::cout << reply_line << '\n';
  auto reply = json::parse(reply_line, nullptr, false);
  if (reply.is_object() && !is_ok(reply)) {
    report_error(reply);
    return exit_code::server_error;
  }
  return exit_code::ok;
}

int run_tail(const cli_options& opts, const std::string& metric,
             const std::vector<std::string>& aggs_in) {
  std::vector<std::string> aggs = aggs_in;
  if (aggs.empty())
    aggs.emplace_back("count");
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  line_client conn{opts.host, opts.port, opts.timeout, opts.tls, opts.token};
  constexpr int64_t window_ms = 60000;
  constexpr int64_t close_grace_ms = 1000; // let late events of a bucket land
  int64_t last_t = std::numeric_limits<int64_t>::min();
  bool header_done = false;
  std::vector<size_t> widths;
  while (!g_interrupted.load()) {
    auto now = wall_clock_now();
    json request = {{"op", "query"}, {"metric", metric},
                    {"from", now - window_ms}, {"to", now}, {"aggs", aggs}};
    auto reply = parse_reply(conn.request(request.dump(), opts.timeout));
    if (!reply)
      return exit_code::server_error;
    if (!is_ok(*reply))
      return report_error(*reply);
    auto step = std::max<int64_t>(1, int_or(reply->value("step", json{}), 1000));
    bool millis = step % 1000 != 0;
    if (!header_done && !opts.json) {
      widths.push_back(millis ? 24 : 20);
      std::string header = "time";
      header.resize(widths[0], ' ');
      for (const auto& a : aggs) {
        widths.push_back(std::max<size_t>(12, a.size()));
        header += "  " + std::string(widths.back() - a.size(), ' ') + a;
      }
      std::cout << header << '\n';
      header_done = true;
    }
    // Only buckets that are closed, so a printed row does not change later.
    int64_t newest = last_t;
    for (const auto& s : reply->value("series", json::array())) {
      for (const auto& p : s.value("points", json::array())) {
        auto t = int_or(p.value("t", json{}), 0);
        if (t <= last_t || t + step > now - close_grace_ms)
          continue;
        newest = std::max(newest, t);
        if (opts.json) {
          std::cout << p.dump() << '\n';
          continue;
        }
        std::string row = format_iso8601(t, millis);
        row.resize(widths[0], ' ');
        for (size_t i = 0; i < aggs.size(); ++i) {
          auto it = p.find(aggs[i]);
          auto cell = it == p.end() ? std::string{"-"} : format_cell(*it);
          row += "  ";
          if (cell.size() < widths[i + 1])
            row.append(widths[i + 1] - cell.size(), ' ');
          row += cell;
        }
        std::cout << row << '\n';
      }
    }
    last_t = newest;
    std::cout.flush();
    // Sleep to the next poll in small slices so Ctrl-C is prompt.
    auto next = now + 1000;
    while (!g_interrupted.load() && wall_clock_now() < next)
      std::this_thread::sleep_for(milliseconds(50));
  }
  return exit_code::ok;
}

int run_token(const cli_options& opts, const std::string& subject,
              const std::string& scopes) {
  namespace auth = cairn::runtime::auth;
  if (opts.sign.key_file.empty()) {
    std::cerr << "cairn-cli: token needs --key-file (the node's secret file or "
                 "the issuer's private key)\n";
    return exit_code::usage;
  }
  try {
    auth::token_request req;
    req.algorithm = opts.sign.algorithm;
    req.key = auth::read_key_file("--key-file", opts.sign.key_file,
                                  opts.sign.algorithm == "HS256");
    req.subject = subject;
    std::istringstream list{scopes};
    for (std::string s; std::getline(list, s, ',');)
      if (!s.empty())
        req.scopes.push_back(s);
    auto ttl = runtime::parse_duration(opts.sign.ttl);
    if (!ttl)
      throw std::invalid_argument("--ttl: not a duration: '" + opts.sign.ttl + "'");
    req.ttl = std::chrono::seconds{*ttl / 1000};
    req.issuer = opts.sign.issuer;
    req.audience = opts.sign.audience;
    std::cout << auth::sign_token(req, runtime::wall_clock_now() / 1000) << '\n';
    return exit_code::ok;
  } catch (const std::exception& e) {
    std::cerr << "cairn-cli: token: " << e.what() << '\n';
    return exit_code::usage;
  }
}

} // namespace cairn::cli
