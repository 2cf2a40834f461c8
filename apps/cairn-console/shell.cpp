#include "shell.hpp"
#include "shell_format.hpp"

#include "interrupt.hpp"
#include "query_syntax.hpp"
#include "runtime/time.hpp"

#include "../common/text_table.hpp"

#include <algorithm>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

namespace cairn::console {

using nlohmann::json;
using cli::align;
using cli::text_table;
using namespace std::chrono_literals;
using namespace detail;
using runtime::wall_clock_now;

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
    {"alerts", "alerts [get RULE | history [RULE]]",
     "alert rules and their instances by state, one rule, or the history",
     "Without arguments: every rule with its instance counts by state.\n"
     "get RULE: the rule's instances (state, value, since). history [RULE]:\n"
     "the newest state changes and deliveries, and the dead letters.",
     &shell::cmd_alerts},
    {"sagas", "sagas [ID]",
     "membership sagas (moves, decommissions, rebalances, joins) and their progress",
     "Without an argument: the newest sagas with type, phase, current step and\n"
     "progress (partitions done/total, bytes moved). With ID: every step of\n"
     "that saga with its attempts and errors, and its child moves.",
     &shell::cmd_sagas},
    {"saga", "saga ID", "one saga in detail (same as 'sagas ID')", "",
     &shell::cmd_sagas},
    {"move", "move PARTITION NODE", "move a partition to another member",
     "Starts a move saga: freeze the partition at its owner (writes wait),\n"
     "ship its snapshot to NODE, switch the partition map, drop the old\n"
     "copy. Prints the saga id; follow it with 'sagas ID'.",
     &shell::cmd_saga_start},
    {"decommission", "decommission NODE",
     "move every partition away from NODE; then it leaves and can be stopped",
     "Starts a decommission saga. When it succeeded NODE owns nothing, holds\n"
     "no hinted writes and is marked as left in the partition map.",
     &shell::cmd_saga_start},
    {"evict", "evict NODE",
     "remove a member that is gone for good (down, its disk lost)",
     "Starts an evict saga: NODE must be down. Its partitions go to the other\n"
     "members empty, it is marked left, and the writes it held (its\n"
     "partitions, and what it hinted for others) are marked lost: answers\n"
     "over earlier times say partial, with \"lost_partitions\". Hinted writes\n"
     "the others held for it are delivered to the new owners. A member that\n"
     "is up is decommissioned instead, which loses nothing.",
     &shell::cmd_saga_start},
    {"rebalance", "rebalance", "spread the partitions evenly over the members",
     "Starts a rebalance saga (at most cairn.cluster.rebalance-concurrency\n"
     "moves at a time, paced by cairn.cluster.rebalance-bytes-per-second).",
     &shell::cmd_saga_start},
    {"join", "join NODE", "bring a member that left back and give it partitions",
     "Starts a join saga for a member of cairn.cluster.nodes that was\n"
     "decommissioned: it is no longer marked as left, then a rebalance gives\n"
     "it its share.",
     &shell::cmd_saga_start},
    {"abort", "abort ID", "abort a running saga (before its point of no return)",
     "The saga undoes what it did (a move thaws its partition at the old\n"
     "owner). A saga past its pivot step can only finish.",
     &shell::cmd_saga_start},
    {"snapshot", "snapshot PARTITION|all", "take a snapshot of a partition now",
     "PARTITION is p3 or 3. Answers once the snapshot is written, with the\n"
     "journal sequence it covers.",
     &shell::cmd_snapshot},
    {"map", "map [adopt JSON]", "the node's partition map, or adopt a new one",
     "Without arguments: the node's current partition map (version, owners,\n"
     "members that left). adopt JSON: persist the map and use it if its\n"
     "version is higher (docs/cluster.md, \"Partition map\"); the other\n"
     "members pick it up at their next ping.",
     &shell::cmd_map},
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

} // namespace cairn::console
