#include "shell.hpp"
#include "runtime/time.hpp"

#include "interrupt.hpp"
#include "query_syntax.hpp"

#include "../cairn-cli/text_table.hpp"

#include <algorithm>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

namespace cairn::console {

namespace {

using nlohmann::json;
using cli::align;
using cli::text_table;
using namespace std::chrono_literals;

using runtime::wall_clock_now;

/// "10s" -> 10000; 0 if malformed (runtime/time's one duration syntax).
int64_t duration_ms(const std::string& s) {
  return runtime::parse_duration(s).value_or(0);
}

bool is_ok(const json& reply) {
  auto it = reply.find("ok");
  return it != reply.end() && it->is_boolean() && it->get<bool>();
}

/// The error of a reply as one line: "code: message" or the message.
std::string error_text(const json& reply) {
  auto it = reply.find("error");
  if (it == reply.end())
    return "request failed";
  if (it->is_string())
    return it->get<std::string>();
  if (it->is_object()) {
    auto code = it->value("code", std::string{});
    auto msg = it->value("message", std::string{});
    return code.empty() ? msg : code + ": " + msg;
  }
  return it->dump();
}

std::string cell(const json& v) {
  return cli::format_cell(cli::json(v));
}

std::string tags_text(const json& tags) {
  return cli::format_tags(cli::json(tags));
}

/// "k=v k=v" of the scalar members of `obj`, the telling ones first, at
/// most `max` characters.
std::string summary(const json& obj, size_t max = 70) {
  std::string out;
  if (!obj.is_object())
    return obj.is_null() ? "" : obj.dump();
  static const std::vector<std::string> first = {
    "status", "series", "buckets", "events", "journal_seq", "snapshot_seq",
    "pending_writes", "recovering"};
  std::vector<std::pair<std::string, json>> ordered;
  for (auto& k : first)
    if (auto it = obj.find(k); it != obj.end())
      ordered.emplace_back(k, *it);
  for (auto& [k, v] : obj.items())
    if (std::find(first.begin(), first.end(), k) == first.end()
        && k != "id")
      ordered.emplace_back(k, v);
  for (auto& [k, v] : ordered) {
    if (v.is_structured())
      continue;
    auto part = k + "=" + cell(v);
    if (out.size() + part.size() + 1 > max) {
      out += out.empty() ? "..." : " ...";
      break;
    }
    if (!out.empty())
      out += ' ';
    out += part;
  }
  return out;
}

/// Prints `obj` as an indented tree; arrays of objects become tables.
void print_tree(std::ostream& out, const json& obj, int indent) {
  std::string pad(indent, ' ');
  for (auto& [k, v] : obj.items()) {
    if (k == "ok")
      continue;
    if (v.is_object()) {
      if (v.empty()) {
        out << pad << k << ": {}\n";
        continue;
      }
      out << pad << k << ":\n";
      print_tree(out, v, indent + 2);
    } else if (v.is_array() && !v.empty()
               && std::all_of(v.begin(), v.end(),
                              [](const json& x) { return x.is_object(); })) {
      out << pad << k << ":\n";
      std::vector<std::string> keys;
      for (auto& row : v)
        for (auto& [rk, rv] : row.items())
          if (std::find(keys.begin(), keys.end(), rk) == keys.end())
            keys.push_back(rk);
      text_table t;
      for (auto& key : keys) {
        bool numeric = std::all_of(v.begin(), v.end(), [&](const json& row) {
          auto it = row.find(key);
          return it == row.end() || it->is_number();
        });
        t.add_column(key, numeric ? align::right : align::left);
      }
      for (auto& row : v) {
        std::vector<std::string> cells;
        for (auto& key : keys) {
          auto it = row.find(key);
          cells.push_back(it == row.end() ? ""
                          : it->is_structured() ? summary(*it, 40)
                                                : cell(*it));
        }
        t.add_row(std::move(cells));
      }
      std::ostringstream table;
      t.print(table);
      std::istringstream lines{table.str()};
      for (std::string line; std::getline(lines, line);)
        out << pad << "  " << line << '\n';
    } else {
      out << pad << k << ": " << (v.is_array() ? v.dump() : cell(v)) << '\n';
    }
  }
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j)
    prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1,
                         prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

/// Sleeps `d` in small steps; returns false if interrupted.
bool sleep_interruptible(std::chrono::milliseconds d) {
  auto end = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < end) {
    if (interrupted())
      return false;
    std::this_thread::sleep_for(20ms);
  }
  return !interrupted();
}

std::string partial_warning(const json& reply) {
  if (!reply.value("partial", false))
    return {};
  std::string out = "warning: partial result";
  if (auto it = reply.find("missing_partitions"); it != reply.end())
    out += ", missing partitions " + it->dump();
  return out;
}

} // namespace

// -- free functions -------------------------------------------------------------

std::string suggest(const std::string& word,
                    const std::vector<std::string>& names) {
  std::string best;
  size_t best_d = 3;
  for (auto& n : names) {
    if (!word.empty() && n.rfind(word, 0) == 0)
      return n;
    auto d = edit_distance(word, n);
    if (d < best_d) {
      best_d = d;
      best = n;
    }
  }
  return best;
}

std::vector<std::string> split_commands(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  int depth = 0;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quoted) {
      cur += c;
      if (c == '\\' && i + 1 < text.size())
        cur += text[++i];
      else if (c == '"')
        quoted = false;
      continue;
    }
    if (c == '"')
      quoted = true;
    else if (c == '{' || c == '[')
      ++depth;
    else if ((c == '}' || c == ']') && depth > 0)
      --depth;
    if (c == ';' && depth == 0) {
      out.push_back(cur);
      cur.clear();
      continue;
    }
    cur += c;
  }
  out.push_back(cur);
  // Drop blank pieces ("a; b;" has a trailing one).
  out.erase(std::remove_if(out.begin(), out.end(),
                           [](const std::string& s) {
                             return s.find_first_not_of(" \t\r\n")
                                    == std::string::npos;
                           }),
            out.end());
  return out;
}

// -- console --------------------------------------------------------------------

shell::shell(node_link& link, console_options opts, std::ostream& out,
                 std::ostream& err)
  : link_(link), opts_(opts), out_(out), err_(err) {
  commands_ = {
    {"help", "help [COMMAND]", "list the commands, or explain one",
     "Without an argument, lists every command with a one-line summary.",
     &shell::cmd_help},
    {"nodes", "nodes",
     "cluster membership, partition map and versions",
     "Shows every member (this node first) with its status and version, the\n"
     "partition map (version and owners) and, in a cluster, each peer's\n"
     "link state. A single node answers with itself and 'no peers'.",
     &shell::cmd_nodes},
    {"cluster", "cluster", "same as nodes", "An alias of 'nodes'.",
     &shell::cmd_nodes},
    {"actors", "actors [NODE]",
     "the node's actors: kind, mailbox, messages processed, state",
     "Lists every registered actor of the node (node, ingestor,\n"
     "query_coordinator, parser-N workers, partitions pN, peer links) with\n"
     "its mailbox size (messages waiting), the messages it has processed and\n"
     "a summary of its state. NODE defaults to the connected node.",
     &shell::cmd_actors},
    {"inspect", "inspect ACTOR",
     "one actor in detail (a partition: series, buckets, journal, snapshot, credits)",
     "ACTOR is a name from 'actors' (Tab completes it), e.g. p3, ingestor.\n"
     "A partition shows its series and bucket counts, journal sequence, last\n"
     "snapshot and the ingest credits the ingestor holds for it.",
     &shell::cmd_inspect},
    {"send", "send ACTOR JSON",
     "send a control message to an actor and print its reply",
     "JSON is an object with \"op\". Every actor understands\n"
     "{\"op\":\"introspect\"}; partitions also {\"op\":\"stats\"} and\n"
     "{\"op\":\"snapshot\"}; query_coordinator any read request of the\n"
     "protocol ({\"op\":\"metrics\"}, {\"op\":\"query\",...}); node {\"op\":\"ping\"}.\n"
     "Example: send p0 {\"op\":\"stats\"}",
     &shell::cmd_send},
    {"metrics", "metrics", "metric names and their series counts",
     "Lists every metric the node holds with its number of series.",
     &shell::cmd_metrics},
    {"series", "series [METRIC] [where k=v ...] [limit=N]",
     "the series (tag sets) of a metric",
     "Lists series, all or those of METRIC, optionally filtered by tags.",
     &shell::cmd_series},
    {"query", "query METRIC [AGGS] [-15m|from=T] [to=T] [step=D] [where k=v ...] [by TAG[,TAG]]",
     "a time-series query, printed as a table",
     "AGGS is a comma list of count, sum, min, max, avg, last, rate, pNN.\n"
     "Times: -15m, now, now-15m or epoch ms; durations 10s, 1m, 1h.\n"
     "Example: query http.latency_ms p99,avg -15m step=1m where service=api by region",
     &shell::cmd_query},
    {"topk", "topk METRIC by TAG [N|k=N] [AGG] [-1h|from=T] [to=T] [where k=v ...]",
     "the top N values of a tag by an aggregate",
     "Example: topk http.requests by path 5 count -1h where service=api",
     &shell::cmd_topk},
    {"ingest", "ingest JSON",
     "ingest an event, an array of events or {\"events\":[...]}",
     "Answers once the events are durable, with accepted/rejected counts.\n"
     "Example: ingest {\"metric\":\"m\",\"value\":3,\"tags\":{\"a\":\"b\"}}",
     &shell::cmd_ingest},
    {"watch", "watch METRIC [AGGS] [step=D] [where k=v ...] [by TAG] [limit=N]",
     "live values of a metric, one row per closed bucket, until Ctrl-C",
     "Polls every second and prints each bucket once it is closed (default\n"
     "step 1s, agg count). Ctrl-C stops the watch and returns to the prompt;\n"
     "limit=N stops after N polls. A lost connection is retried.",
     &shell::cmd_watch},
    {"breakers", "breakers", "state of every circuit breaker (one per peer)",
     "Shows each peer's breaker: state (closed/open/half_open), consecutive\n"
     "failures and transition counters.",
     &shell::cmd_breakers},
    {"snapshot", "snapshot PARTITION|all", "take a snapshot of a partition now",
     "PARTITION is p3 or 3. Answers once the snapshot is written, with the\n"
     "journal sequence it covers.",
     &shell::cmd_snapshot},
    {"stats", "stats", "node statistics (events, partitions, recovery, counters)",
     "The node's 'stats' reply as a tree; partitions as a table.",
     &shell::cmd_stats},
    {"ping", "ping", "node name, version, status and round-trip time",
     "Checks the connection.", &shell::cmd_ping},
    {"quit", "quit", "leave the console (also: exit, Ctrl-D)", "",
     &shell::cmd_quit},
    {"exit", "exit", "leave the console", "", &shell::cmd_quit},
  };
}

const shell::command* shell::find(const std::string& name) const {
  for (auto& c : commands_)
    if (c.name == name)
      return &c;
  return nullptr;
}

std::vector<std::string> shell::command_names() const {
  std::vector<std::string> out;
  for (auto& c : commands_)
    out.push_back(c.name);
  return out;
}

int shell::fail(const std::string& message, int status) {
  if (opts_.json)
    out_ << json{{"ok", false}, {"error", message}}.dump() << std::endl;
  else
    err_ << "error: " << message << std::endl;
  last_status_ = status;
  return status;
}

int shell::fail_syntax(const std::string& line, size_t pos, size_t len,
                         const std::string& message) {
  if (opts_.json) {
    out_ << json{{"ok", false},
                 {"error", message},
                 {"position", pos}}
              .dump()
         << std::endl;
  } else {
    // The message once, then the line with a caret under the token.
    auto caret = render_error(line, syntax_error{pos, len, ""}, "  ");
    while (!caret.empty() && caret.back() == ' ')
      caret.pop_back();
    err_ << "error: " << message << '\n' << caret << '\n' << std::flush;
  }
  last_status_ = exit_code::failed;
  return exit_code::failed;
}

std::optional<json> shell::parse_request(const std::string& line) {
  auto parsed = parse_read(line);
  if (auto* e = std::get_if<syntax_error>(&parsed)) {
    fail_syntax(line, e->pos, e->len, e->message);
    return std::nullopt;
  }
  auto req = std::get<json>(std::move(parsed));
  req.erase("op");
  return req;
}

std::optional<json> shell::read_command(const std::string& cmd,
                                        const std::string& line, json& req) {
  auto parsed = parse_request(line);
  if (!parsed)
    return std::nullopt;
  req = std::move(*parsed);
  return checked({{"cmd", cmd}, {"request", req}}, true);
}

void shell::note_connection() {
  auto st = link_.status();
  if (st.connected && st.generation != seen_generation_) {
    if (seen_generation_ != 0)
      err_ << "reconnected to " << link_.address() << std::endl;
    seen_generation_ = st.generation;
    node_name_.clear();
    actors_.valid = metrics_.valid = nodes_.valid = false;
  }
}

std::optional<json> shell::request(const json& req, bool retry_safe) {
  for (int attempt = 0;; ++attempt) {
    auto r = link_.call(req, opts_.timeout);
    if (r.failure == transport::none) {
      note_connection();
      return std::move(r.reply);
    }
    if (r.failure == transport::timeout) {
      fail("no reply from " + link_.address() + " within "
             + std::to_string(opts_.timeout.count() / 1000) + "s ("
             + error_text(r.reply) + ")",
           exit_code::transport);
      return std::nullopt;
    }
    if (attempt > 0 || (!retry_safe && r.failure == transport::lost)) {
      fail(error_text(r.reply)
             + (r.failure == transport::lost
                  ? "; the command may or may not have been applied"
                  : ""),
           exit_code::transport);
      return std::nullopt;
    }
    err_ << (r.failure == transport::lost ? "connection to " : "")
         << (r.failure == transport::lost ? link_.address() + " lost"
                                          : error_text(r.reply))
         << "; reconnecting (Ctrl-C to stop)..." << std::endl;
    auto st = link_.wait_connected(opts_.reconnect_wait, interrupted);
    if (!st.connected) {
      fail("cannot reach " + link_.address()
             + (st.last_error.empty() ? std::string{} : ": " + st.last_error),
           exit_code::transport);
      return std::nullopt;
    }
    note_connection();
  }
}

std::optional<json> shell::checked(const json& req, bool retry_safe) {
  auto reply = request(req, retry_safe);
  if (!reply)
    return std::nullopt;
  if (!is_ok(*reply)) {
    if (opts_.json) {
      out_ << reply->dump() << std::endl;
      last_status_ = exit_code::failed;
    } else {
      fail(error_text(*reply));
    }
    return std::nullopt;
  }
  if (auto w = partial_warning(*reply); !w.empty() && !opts_.json)
    err_ << w << std::endl;
  if (opts_.json) {
    out_ << reply->dump() << std::endl;
    last_status_ = exit_code::ok;
    return std::nullopt;
  }
  return reply;
}

std::string shell::prompt() {
  auto st = link_.status();
  if (!st.connected)
    return "cairn (disconnected)> ";
  if (node_name_.empty() || st.generation != seen_generation_) {
    note_connection();
    auto r = link_.call({{"cmd", "ping"}}, 2000ms);
    if (r.failure == transport::none)
      node_name_ = r.reply.value("node", std::string{});
  }
  return "cairn " + (node_name_.empty() ? link_.address() : node_name_)
         + "> ";
}

int shell::execute(const std::string& raw_line) {
  clear_interrupt();
  last_status_ = exit_code::ok;
  // Surrounding blanks are dropped so that carets line up with the echo.
  auto first = raw_line.find_first_not_of(" \t\r\n");
  auto last = raw_line.find_last_not_of(" \t\r\n");
  auto line = first == std::string::npos
                ? std::string{}
                : raw_line.substr(first, last - first + 1);
  auto tokenized = tokenize(line);
  if (auto* e = std::get_if<syntax_error>(&tokenized))
    return fail_syntax(line, e->pos, e->len, e->message);
  auto& toks = std::get<std::vector<token>>(tokenized);
  if (toks.empty() || toks[0].text[0] == '#')
    return exit_code::ok;
  std::vector<std::string> words;
  for (auto& t : toks)
    words.push_back(t.text);
  auto* c = find(words[0]);
  if (c == nullptr) {
    auto s = suggest(words[0], command_names());
    return fail("unknown command '" + words[0] + "'"
                + (s.empty() ? std::string{"; type 'help' for the list"}
                             : " (did you mean '" + s + "'?)"));
  }
  try {
    auto status = (this->*(c->run))(line, words);
    return status != exit_code::ok ? status : last_status_;
  } catch (const std::exception& e) {
    return fail(std::string{"internal error: "} + e.what());
  }
}

// -- completion -----------------------------------------------------------------

std::vector<std::string>
shell::cached(cache& c,
                const std::function<std::vector<std::string>()>& fetch) {
  auto now = std::chrono::steady_clock::now();
  if (!c.valid || now - c.fetched > 5s) {
    auto fresh = fetch();
    if (!fresh.empty() || !c.valid) {
      c.values = std::move(fresh);
      c.valid = true;
    }
    c.fetched = now;
  }
  return c.values;
}

namespace {

/// The "name" of every element of reply[list_key] for console command `cmd`
/// (empty when the node cannot be asked).
template <class Link>
std::vector<std::string> fetch_names(Link& link, const char* cmd,
                                     const char* list_key) {
  std::vector<std::string> out;
  auto r = link.call({{"cmd", cmd}}, 3000ms);
  if (r.failure == transport::none && r.reply.contains(list_key))
    for (auto& x : r.reply[list_key])
      out.push_back(x.value("name", std::string{}));
  return out;
}

} // namespace

std::vector<std::string> shell::actor_names() {
  return cached(actors_, [this] { return fetch_names(link_, "actors", "actors"); });
}

std::vector<std::string> shell::metric_names() {
  return cached(metrics_,
                [this] { return fetch_names(link_, "metrics", "metrics"); });
}

std::vector<std::string> shell::node_names() {
  return cached(nodes_, [this] { return fetch_names(link_, "nodes", "members"); });
}

std::vector<std::string>
shell::complete(const std::vector<std::string>& before,
                  const std::string& prefix) {
  std::vector<std::string> pool;
  if (before.empty()) {
    pool = command_names();
  } else {
    auto& cmd = before[0];
    auto pos = before.size();  // index of the word being completed
    static const std::vector<std::string> aggs = {
      "count", "sum", "min", "max", "avg", "last", "rate", "p50", "p90",
      "p99", "p99.9"};
    if (cmd == "help" && pos == 1) {
      pool = command_names();
    } else if ((cmd == "inspect" || cmd == "send") && pos == 1) {
      pool = actor_names();
    } else if (cmd == "actors" && pos == 1) {
      pool = node_names();
    } else if (cmd == "snapshot" && pos == 1) {
      for (auto& a : actor_names())
        if (a.size() > 1 && a[0] == 'p' && std::isdigit(static_cast<unsigned char>(a[1])))
          pool.push_back(a);
      pool.push_back("all");
    } else if (cmd == "send" && pos == 2) {
      pool = {R"({"op":"introspect"})", R"({"op":"stats"})",
              R"({"op":"snapshot"})"};
    } else if ((cmd == "query" || cmd == "topk" || cmd == "series"
                || cmd == "watch")
               && pos == 1) {
      pool = metric_names();
    } else if (cmd == "query" || cmd == "topk" || cmd == "watch") {
      pool = aggs;
      for (auto kw : {"where", "by", "step=", "from=", "to=", "-5m", "-15m",
                      "-1h"})
        pool.push_back(kw);
      if (cmd == "topk")
        pool.push_back("k=");
    } else if (cmd == "series") {
      pool = {"where", "limit="};
    }
  }
  std::vector<std::string> out;
  for (auto& p : pool)
    if (p.rfind(prefix, 0) == 0 && !p.empty())
      out.push_back(p);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// -- commands -------------------------------------------------------------------

int shell::cmd_help(const std::string&, const std::vector<std::string>& w) {
  if (w.size() > 1) {
    auto* c = find(w[1]);
    if (c == nullptr) {
      auto s = suggest(w[1], command_names());
      return fail("no command '" + w[1] + "'"
                  + (s.empty() ? std::string{} : " (did you mean '" + s + "'?)"));
    }
    out_ << "usage: " << c->usage << "\n  " << c->summary << '\n';
    if (!c->details.empty()) {
      std::istringstream lines{c->details};
      for (std::string l; std::getline(lines, l);)
        out_ << "  " << l << '\n';
    }
    out_ << std::flush;
    return exit_code::ok;
  }
  text_table t;
  t.add_column("COMMAND");
  t.add_column("DESCRIPTION");
  for (auto& c : commands_)
    if (c.name != "exit")
      t.add_row({c.name, c.summary});
  t.print(out_);
  out_ << "Type 'help COMMAND' for its syntax. Tab completes commands, actor "
          "and metric names; Ctrl-C cancels, Ctrl-D leaves."
       << std::endl;
  return exit_code::ok;
}

int shell::cmd_nodes(const std::string&, const std::vector<std::string>& w) {
  if (w.size() > 1)
    return fail(w[0] + " takes no arguments");
  auto reply = checked({{"cmd", "nodes"}}, true);
  if (!reply)
    return last_status_;
  auto& r = *reply;
  auto mode = r.value("mode", std::string{"cluster"});
  out_ << "mode: " << mode;
  if (r.contains("note"))
    out_ << " (" << r["note"].get<std::string>() << ")";
  out_ << '\n';
  text_table t;
  t.add_column("NODE");
  t.add_column("STATUS");
  t.add_column("ADDRESS");
  t.add_column("VERSION");
  t.add_column("BREAKER");
  t.add_column("DETAIL");
  for (auto& m : r.value("members", json::array())) {
    auto name = m.value("name", std::string{"?"});
    if (m.value("self", false))
      name += " (self)";
    std::string breaker;
    if (m.contains("breaker"))
      breaker = m["breaker"].value("state", std::string{});
    std::string detail = m.value("status_detail", std::string{});
    if (m.contains("last_error"))
      detail = m["last_error"].get<std::string>();
    if (m.contains("error"))
      detail = m["error"].get<std::string>();
    t.add_row({name, m.value("status", std::string{}),
               m.value("address", std::string{"-"}),
               m.value("version", std::string{"-"}), breaker.empty() ? "-" : breaker,
               detail});
  }
  t.print(out_);
  if (r.contains("partition_map")) {
    auto& pm = r["partition_map"];
    out_ << "partition map: version " << cell(pm.value("version", json{}))
         << ", " << cell(pm.value("partitions", json{})) << " partitions\n";
    if (pm.contains("owned") && pm["owned"].is_object()) {
      for (auto& [owner, parts] : pm["owned"].items())
        out_ << "  " << owner << ": " << parts.size() << " partitions "
             << parts.dump() << '\n';
    } else {
      out_ << "  all partitions on " << r.value("self", std::string{}) << '\n';
    }
  }
  out_ << std::flush;
  return exit_code::ok;
}

int shell::cmd_actors(const std::string&,
                        const std::vector<std::string>& w) {
  if (w.size() > 2)
    return fail("usage: actors [NODE]");
  json req{{"cmd", "actors"}};
  if (w.size() == 2)
    req["node"] = w[1];
  auto reply = checked(req, true);
  if (!reply)
    return last_status_;
  text_table t;
  t.add_column("NAME");
  t.add_column("KIND");
  t.add_column("MAILBOX", align::right);
  t.add_column("PROCESSED", align::right);
  t.add_column("STATE");
  std::vector<std::string> names;
  for (auto& a : (*reply)["actors"]) {
    auto name = a.value("name", std::string{});
    names.push_back(name);
    auto state = a.contains("error") ? "error: " + a["error"].get<std::string>()
                                     : summary(a.value("state", json::object()));
    t.add_row({name, a.value("kind", std::string{}),
               a.contains("mailbox") ? cell(a["mailbox"]) : "-",
               a.contains("processed") ? cell(a["processed"]) : "-", state});
  }
  actors_.values = names;
  actors_.valid = true;
  actors_.fetched = std::chrono::steady_clock::now();
  t.print(out_);
  out_ << (*reply)["actors"].size() << " actors on "
       << reply->value("node", std::string{}) << std::endl;
  return exit_code::ok;
}

int shell::cmd_inspect(const std::string&,
                         const std::vector<std::string>& w) {
  if (w.size() != 2)
    return fail("usage: inspect ACTOR (see 'actors' for the names)");
  auto reply = checked({{"cmd", "inspect"}, {"actor", w[1]}}, true);
  if (!reply)
    return last_status_;
  auto& r = *reply;
  out_ << "actor:     " << r.value("name", std::string{}) << " ("
       << r.value("kind", std::string{}) << ")\n";
  if (r.contains("mailbox"))
    out_ << "mailbox:   " << cell(r["mailbox"]) << " waiting\n";
  if (r.contains("processed"))
    out_ << "processed: " << cell(r["processed"]) << " messages\n";
  if (r.contains("state") && r["state"].is_object() && !r["state"].empty()) {
    out_ << "state:\n";
    auto st = r["state"];
    if (st.contains("last_snapshot_ms")) {
      auto ms = st["last_snapshot_ms"].get<int64_t>();
      st["last_snapshot"] = ms > 0 ? cli::format_iso8601(ms, false)
                                   : std::string{"never (this run)"};
      st.erase("last_snapshot_ms");
    }
    print_tree(out_, st, 2);
  }
  if (r.contains("credits")) {
    out_ << "credits:\n";
    print_tree(out_, r["credits"], 2);
  }
  out_ << std::flush;
  return exit_code::ok;
}

int shell::cmd_send(const std::string& line,
                      const std::vector<std::string>& w) {
  if (w.size() < 3)
    return fail("usage: send ACTOR JSON, e.g. send p0 {\"op\":\"stats\"}");
  auto toks = std::get<std::vector<token>>(tokenize(line));
  auto text = rest_of_line(line, toks, 2);
  json msg;
  try {
    msg = json::parse(text);
  } catch (const json::parse_error& e) {
    auto pos = toks[2].pos + std::min<size_t>(e.byte > 0 ? e.byte - 1 : 0,
                                              text.size());
    return fail_syntax(line, pos, 1, "the message is not valid JSON");
  }
  if (!msg.is_object())
    return fail_syntax(line, toks[2].pos, text.size(),
                       "the message must be a JSON object with \"op\"");
  auto reply = checked({{"cmd", "send"}, {"actor", w[1]}, {"message", msg}},
                       false);
  if (!reply)
    return last_status_;
  print_tree(out_, *reply, 0);
  out_ << std::flush;
  return exit_code::ok;
}

int shell::cmd_metrics(const std::string&,
                         const std::vector<std::string>& w) {
  if (w.size() > 1)
    return fail("metrics takes no arguments; see 'series METRIC'");
  auto reply = checked({{"cmd", "metrics"}}, true);
  if (!reply)
    return last_status_;
  text_table t;
  t.add_column("METRIC");
  t.add_column("SERIES", align::right);
  std::vector<std::string> names;
  for (auto& m : (*reply)["metrics"]) {
    names.push_back(m.value("name", std::string{}));
    t.add_row({names.back(), cell(m.value("series", json{}))});
  }
  metrics_.values = names;
  metrics_.valid = true;
  metrics_.fetched = std::chrono::steady_clock::now();
  if (t.empty())
    out_ << "no metrics yet" << std::endl;
  else
    t.print(out_);
  out_ << std::flush;
  return exit_code::ok;
}

int shell::cmd_series(const std::string& line,
                        const std::vector<std::string>&) {
  json req;
  auto reply = read_command("series", line, req);
  if (!reply)
    return last_status_;
  text_table t;
  t.add_column("METRIC");
  t.add_column("TAGS");
  for (auto& s : (*reply)["series"])
    t.add_row({s.value("metric", std::string{}),
               tags_text(s.value("tags", json::object()))});
  if (t.empty())
    out_ << "no series" << std::endl;
  else
    t.print(out_);
  if (reply->value("truncated", false))
    out_ << "(truncated; add limit=N or a where clause)\n";
  out_ << std::flush;
  return exit_code::ok;
}

int shell::cmd_query(const std::string& line,
                       const std::vector<std::string>&) {
  json req;
  auto reply = read_command("query", line, req);
  if (!reply)
    return last_status_;
  auto aggs = req.value("aggs", json::array({"count"}));
  auto group_by = req.value("group_by", json::array());
  text_table t;
  for (auto& g : group_by)
    t.add_column(g.get<std::string>());
  t.add_column("TIME");
  for (auto& a : aggs)
    t.add_column(a.get<std::string>(), align::right);
  size_t rows = 0;
  for (auto& s : (*reply)["series"]) {
    auto tags = s.value("tags", json::object());
    for (auto& p : s["points"]) {
      std::vector<std::string> cells;
      for (auto& g : group_by)
        cells.push_back(tags.contains(g.get<std::string>())
                          ? cell(tags[g.get<std::string>()])
                          : "-");
      cells.push_back(cli::format_iso8601(p.value("t", int64_t{0}), false));
      for (auto& a : aggs)
        cells.push_back(cell(p.value(a.get<std::string>(), json{})));
      t.add_row(std::move(cells));
      ++rows;
    }
  }
  if (rows == 0) {
    out_ << "no data" << std::endl;
  } else {
    t.print(out_);
  }
  auto step = reply->value("step", int64_t{0});
  out_ << "(" << rows << (rows == 1 ? " row" : " rows") << ", tier "
       << reply->value("tier", std::string{"?"}) << ", step " << step / 1000.0
       << "s)" << std::endl;
  return exit_code::ok;
}

int shell::cmd_topk(const std::string& line,
                      const std::vector<std::string>&) {
  json req;
  auto reply = read_command("topk", line, req);
  if (!reply)
    return last_status_;
  text_table t;
  t.add_column("RANK", align::right);
  t.add_column(req.value("by", std::string{"TAG"}));
  t.add_column(req.value("agg", std::string{"count"}), align::right);
  size_t rank = 0;
  for (auto& e : (*reply)["top"])
    t.add_row({std::to_string(++rank), cell(e.value("tag", json{})),
               cell(e.value("value", json{}))});
  if (t.empty())
    out_ << "no data" << std::endl;
  else
    t.print(out_);
  out_ << std::flush;
  return exit_code::ok;
}

int shell::cmd_ingest(const std::string& line,
                        const std::vector<std::string>& w) {
  if (w.size() < 2)
    return fail("usage: ingest JSON (an event, an array of events or "
                "{\"events\":[...]})");
  auto toks = std::get<std::vector<token>>(tokenize(line));
  auto text = rest_of_line(line, toks, 1);
  json body;
  try {
    body = json::parse(text);
  } catch (const json::parse_error& e) {
    auto pos = toks[1].pos + std::min<size_t>(e.byte > 0 ? e.byte - 1 : 0,
                                              text.size());
    return fail_syntax(line, pos, 1, "not valid JSON");
  }
  if (!body.is_object() && !body.is_array())
    return fail_syntax(line, toks[1].pos, text.size(),
                       "expected an event object, an array of events or "
                       "{\"events\":[...]}");
  auto reply = checked({{"cmd", "ingest"}, {"request", body}}, false);
  if (!reply)
    return last_status_;
  auto rejected = reply->value("rejected", 0);
  out_ << "accepted " << reply->value("accepted", 0) << ", rejected "
       << rejected;
  if (reply->value("duplicate", false))
    out_ << " (duplicate idempotency key: not applied again)";
  out_ << '\n';
  for (auto& e : reply->value("errors", json::array()))
    out_ << "  event " << e.value("index", 0) << ": "
         << e.value("code", std::string{}) << ": "
         << e.value("message", std::string{}) << '\n';
  out_ << std::flush;
  if (rejected > 0)
    last_status_ = exit_code::failed;
  return last_status_;
}

int shell::cmd_watch(const std::string& line,
                       const std::vector<std::string>&) {
  auto parsed = parse_request(line);
  if (!parsed)
    return last_status_;
  auto req = std::move(*parsed);
  int64_t polls = -1;
  if (req.contains("limit")) {
    polls = req["limit"].get<int64_t>();
    req.erase("limit");
  }
  if (!req.contains("step"))
    req["step"] = "1s";
  if (!req.contains("aggs"))
    req["aggs"] = json::array({"count"});
  auto step = duration_ms(req["step"].get<std::string>());
  auto aggs = req["aggs"];
  auto group_by = req.value("group_by", json::array());
  // A bucket is printed once it is closed: its end lies a grace period in
  // the past (late events within it are still counted).
  const int64_t grace = 1000;
  std::map<std::string, int64_t> last_t;
  auto window = std::max<int64_t>(10 * step, 10000);
  if (!opts_.json) {
    out_ << "watching " << req["metric"].get<std::string>() << " "
         << aggs.dump() << " every " << opts_.watch_interval.count() / 1000.0
         << "s, step " << req["step"].get<std::string>()
         << " (Ctrl-C to stop)\n";
    std::string header = "TIME                ";
    for (auto& g : group_by) {
      auto name = g.get<std::string>();
      header += "  " + name + std::string(name.size() < 12 ? 12 - name.size() : 0, ' ');
    }
    for (auto& a : aggs) {
      auto name = a.get<std::string>();
      header += "  " + std::string(name.size() < 12 ? 12 - name.size() : 0, ' ')
                + name;
    }
    out_ << header << std::endl;
  }
  bool first = true;
  int64_t rows = 0;
  clear_interrupt();
  while (!interrupted() && polls != 0) {
    if (polls > 0)
      --polls;
    auto now = wall_clock_now();
    req["from"] = now - window;
    req["to"] = now;
    auto r = link_.call({{"cmd", "query"}, {"request", req}}, opts_.timeout);
    if (r.failure != transport::none) {
      err_ << "watch: " << error_text(r.reply) << "; retrying (Ctrl-C to stop)"
           << std::endl;
      link_.wait_connected(opts_.reconnect_wait, interrupted);
      note_connection();
      continue;
    }
    note_connection();
    if (!is_ok(r.reply)) {
      return fail(error_text(r.reply));
    }
    std::vector<std::pair<int64_t, std::string>> lines;
    for (auto& s : r.reply["series"]) {
      auto tags = s.value("tags", json::object());
      auto key = tags.dump();
      auto& last = last_t.try_emplace(key, first ? 0 : now - window).first->second;
      // On the first poll show only the newest closed bucket.
      int64_t newest = 0;
      for (auto& p : s["points"]) {
        auto t = p.value("t", int64_t{0});
        if (t + step <= now - grace)
          newest = std::max(newest, t);
      }
      for (auto& p : s["points"]) {
        auto t = p.value("t", int64_t{0});
        if (t <= last || t + step > now - grace)
          continue;
        if (first && t != newest)
          continue;
        if (opts_.json) {
          json row{{"t", t}, {"tags", tags}};
          for (auto& a : aggs)
            row[a.get<std::string>()] = p.value(a.get<std::string>(), json{});
          lines.emplace_back(t, row.dump());
        } else {
          std::string text = cli::format_iso8601(t, false);
          for (auto& g : group_by) {
            auto v = tags.contains(g.get<std::string>())
                       ? cell(tags[g.get<std::string>()])
                       : "-";
            text += "  " + v + std::string(v.size() < 12 ? 12 - v.size() : 0, ' ');
          }
          for (auto& a : aggs) {
            auto v = cell(p.value(a.get<std::string>(), json{}));
            text += "  " + std::string(v.size() < 12 ? 12 - v.size() : 0, ' ')
                    + v;
          }
          lines.emplace_back(t, text);
        }
        last = std::max(last, t);
      }
    }
    std::stable_sort(lines.begin(), lines.end(),
                     [](auto& x, auto& y) { return x.first < y.first; });
    for (auto& [t, text] : lines) {
      out_ << text << '\n';
      ++rows;
    }
    out_ << std::flush;
    first = false;
    if (polls != 0 && !sleep_interruptible(opts_.watch_interval))
      break;
  }
  if (interrupted()) {
    clear_interrupt();
    if (!opts_.json)
      out_ << "\nwatch stopped (" << rows << " rows)" << std::endl;
  }
  return exit_code::ok;
}

int shell::cmd_breakers(const std::string&,
                          const std::vector<std::string>& w) {
  if (w.size() > 1)
    return fail("breakers takes no arguments");
  auto reply = checked({{"cmd", "breakers"}}, true);
  if (!reply)
    return last_status_;
  auto& list = (*reply)["breakers"];
  if (list.empty()) {
    if (reply->contains("note"))
      out_ << (*reply)["note"].get<std::string>() << std::endl;
    else
      out_ << "no circuit breakers" << std::endl;
    return exit_code::ok;
  }
  text_table t;
  t.add_column("PEER");
  t.add_column("ADDRESS");
  t.add_column("STATE");
  t.add_column("FAILURES", align::right);
  t.add_column("OPENED", align::right);
  t.add_column("REJECTED", align::right);
  t.add_column("REOPEN_IN");
  for (auto& b : list)
    t.add_row({b.value("peer", std::string{}), b.value("address", std::string{}),
               b.value("state", std::string{}),
               cell(b.value("consecutive_failures", json{})),
               cell(b.value("opened", json{})), cell(b.value("rejected", json{})),
               b.contains("reopen_in_ms")
                 ? cell(b["reopen_in_ms"]) + "ms"
                 : std::string{"-"}});
  t.print(out_);
  out_ << std::flush;
  return exit_code::ok;
}

int shell::cmd_snapshot(const std::string&,
                          const std::vector<std::string>& w) {
  if (w.size() != 2)
    return fail("usage: snapshot PARTITION|all (e.g. snapshot p3)");
  auto reply = checked({{"cmd", "snapshot"}, {"partition", w[1]}}, true);
  if (!reply)
    return last_status_;
  text_table t;
  t.add_column("PARTITION");
  t.add_column("COVERED_SEQ", align::right);
  t.add_column("WRITTEN");
  t.add_column("TOOK", align::right);
  t.add_column("NOTE");
  size_t empty = 0;
  for (auto& s : (*reply)["snapshots"]) {
    if (w[1] == "all" && s.value("covered_seq", 0) == 0
        && !s.contains("error")) {
      ++empty;
      continue;
    }
    t.add_row({"p" + cell(s.value("partition", json{})),
               cell(s.value("covered_seq", json{})),
               s.value("written", false) ? "yes" : "no",
               s.contains("took_ms") ? cell(s["took_ms"]) + "ms" : "-",
               s.value("note", s.value("error", std::string{}))});
  }
  if (!t.empty())
    t.print(out_);
  if (empty > 0)
    out_ << empty << " empty partitions skipped (nothing to snapshot)\n";
  out_ << std::flush;
  return exit_code::ok;
}

int shell::cmd_stats(const std::string&, const std::vector<std::string>& w) {
  if (w.size() > 1)
    return fail("stats takes no arguments");
  auto reply = checked({{"cmd", "stats"}}, true);
  if (!reply)
    return last_status_;
  print_tree(out_, *reply, 0);
  out_ << std::flush;
  return exit_code::ok;
}

int shell::cmd_ping(const std::string&, const std::vector<std::string>&) {
  auto start = std::chrono::steady_clock::now();
  auto reply = request({{"cmd", "ping"}}, true);
  if (!reply)
    return last_status_;
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(
              std::chrono::steady_clock::now() - start)
              .count();
  if (opts_.json) {
    (*reply)["rtt_us"] = us;
    out_ << reply->dump() << std::endl;
    return exit_code::ok;
  }
  out_ << reply->value("node", std::string{}) << " "
       << reply->value("version", std::string{}) << " "
       << reply->value("status", std::string{}) << " at " << link_.address()
       << ", round trip " << us / 1000.0 << " ms" << std::endl;
  return exit_code::ok;
}

int shell::cmd_quit(const std::string&, const std::vector<std::string>&) {
  done_ = true;
  return exit_code::ok;
}

} // namespace cairn::console
