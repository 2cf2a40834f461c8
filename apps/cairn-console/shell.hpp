// shell: the commands of cairn-console (docs/console.md).
//
// `execute(line)` runs one command line against the node behind a
// node_link and prints the result: aligned tables for people, or one JSON
// object per command with --json. Every error is one readable line on the
// error stream (unknown command with a suggestion, bad syntax with a caret
// under the token, unreachable node); nothing a user types crashes it.
// A command that finds the connection broken prints one line, waits for the
// link to reconnect (Ctrl-C stops waiting) and retries once when that is
// safe (reads, or a request that was never sent).
//
// Files: shell.cpp (dispatch, requests, errors), shell_commands.cpp (the
// commands), shell_watch.cpp (watch), shell_completion.cpp (Tab completion),
// shell_format.* (formatting shared by them).
//
// Threading: the main thread only (it blocks on replies).
#pragma once

#include "node_link.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace cairn::console {

/// Exit statuses of --exec.
namespace exit_code {
constexpr int ok = 0;
/// The command failed: bad syntax, unknown command, an error reply.
constexpr int failed = 1;
/// The node could not be reached.
constexpr int transport = 2;
/// Bad command-line options.
constexpr int usage = 64;
} // namespace exit_code

struct console_options {
  bool json = false;
  /// Reply timeout of one request.
  std::chrono::milliseconds timeout{10000};
  /// How long a command waits for a lost connection to come back.
  std::chrono::milliseconds reconnect_wait{30000};
  /// Poll interval of `watch`.
  std::chrono::milliseconds watch_interval{1000};
};

class shell {
public:
  shell(node_link& link, console_options opts, std::ostream& out,
          std::ostream& err);

  /// Runs one command line; returns its exit status (exit_code::*). Blank
  /// lines and lines starting with '#' succeed without doing anything.
  int execute(const std::string& line);

  /// True after `quit`/`exit`.
  bool done() const noexcept {
    return done_;
  }

  /// The prompt: "cairn n1> ", or "cairn (disconnected)> ".
  std::string prompt();

  // -- completion data (cached, refreshed at most every few seconds) ---------

  std::vector<std::string> command_names() const;
  std::vector<std::string> actor_names();
  std::vector<std::string> metric_names();
  std::vector<std::string> node_names();

  /// Candidates for the word being completed, given the words before it.
  std::vector<std::string> complete(const std::vector<std::string>& before,
                                    const std::string& prefix);

private:
  struct command {
    std::string name;
    std::string usage;
    std::string summary;
    std::string details;
    int (shell::*run)(const std::string& line,
                        const std::vector<std::string>& words);
  };

  // -- requests ---------------------------------------------------------------

  /// Sends `request`; on a transport failure prints one line, waits for the
  /// reconnect and retries once if `retry_safe` or the request was never
  /// sent. Returns the reply (which may say "ok": false) or nullopt after
  /// printing why there is none (last_status_ says which exit status).
  std::optional<nlohmann::json> request(const nlohmann::json& request,
                                        bool retry_safe);

  /// request() + error reply check; prints the raw reply with --json.
  /// Returns the reply only if it is ok and the caller must render it.
  std::optional<nlohmann::json> checked(const nlohmann::json& req,
                                        bool retry_safe);

  /// The request of a read command (series/query/topk/watch text) without
  /// "op"; nullopt after printing a syntax error with a caret.
  std::optional<nlohmann::json> parse_request(const std::string& line);

  /// parse_request + checked() of {"cmd": cmd, "request": req}; `req` gets
  /// the parsed request (the renderers need it).
  std::optional<nlohmann::json> read_command(const std::string& cmd,
                                             const std::string& line,
                                             nlohmann::json& req);

  int fail(const std::string& message, int status = exit_code::failed);
  int fail_syntax(const std::string& line, size_t pos, size_t len,
                  const std::string& message);
  void note_connection();

  // -- commands ---------------------------------------------------------------

  int cmd_help(const std::string&, const std::vector<std::string>&);
  int cmd_nodes(const std::string&, const std::vector<std::string>&);
  int cmd_actors(const std::string&, const std::vector<std::string>&);
  int cmd_inspect(const std::string&, const std::vector<std::string>&);
  int cmd_send(const std::string&, const std::vector<std::string>&);
  int cmd_map(const std::string&, const std::vector<std::string>&);
  int cmd_metrics(const std::string&, const std::vector<std::string>&);
  int cmd_series(const std::string&, const std::vector<std::string>&);
  int cmd_query(const std::string&, const std::vector<std::string>&);
  int cmd_topk(const std::string&, const std::vector<std::string>&);
  int cmd_ingest(const std::string&, const std::vector<std::string>&);
  int cmd_watch(const std::string&, const std::vector<std::string>&);
  int cmd_breakers(const std::string&, const std::vector<std::string>&);
  int cmd_alerts(const std::string&, const std::vector<std::string>&);
  int cmd_sagas(const std::string&, const std::vector<std::string>&);
  int cmd_saga_start(const std::string&, const std::vector<std::string>&);
  int cmd_snapshot(const std::string&, const std::vector<std::string>&);
  int cmd_stats(const std::string&, const std::vector<std::string>&);
  int cmd_ping(const std::string&, const std::vector<std::string>&);
  int cmd_quit(const std::string&, const std::vector<std::string>&);

  const command* find(const std::string& name) const;

  node_link& link_;
  console_options opts_;
  std::ostream& out_;
  std::ostream& err_;
  std::vector<command> commands_;
  bool done_ = false;
  int last_status_ = exit_code::ok;
  uint64_t seen_generation_ = 0;
  std::string node_name_;

  struct cache {
    std::vector<std::string> values;
    std::chrono::steady_clock::time_point fetched;
    bool valid = false;
  };
  cache actors_;
  cache metrics_;
  cache nodes_;
  std::vector<std::string> cached(cache& c,
                                  const std::function<std::vector<std::string>()>& fetch);
};

/// The command name closest to `word` (edit distance ≤ 2 or a prefix), or ""
/// if none is close.
std::string suggest(const std::string& word,
                    const std::vector<std::string>& names);

/// Splits --exec text into commands at ';' outside quotes, braces and
/// brackets (so JSON arguments may contain ';').
std::vector<std::string> split_commands(const std::string& text);

} // namespace cairn::console
