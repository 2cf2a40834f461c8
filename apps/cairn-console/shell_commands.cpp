#include "shell.hpp"
#include "shell_format.hpp"

#include "interrupt.hpp"
#include "query_syntax.hpp"
#include "runtime/time.hpp"

#include "../common/text_table.hpp"

#include <algorithm>
#include <cstdio>
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

int shell::cmd_map(const std::string& line,
                   const std::vector<std::string>& w) {
  json req{{"cmd", "map.get"}};
  if (w.size() >= 3 && w[1] == "adopt") {
    auto toks = std::get<std::vector<token>>(tokenize(line));
    auto text = rest_of_line(line, toks, 2);
    auto m = json::parse(text, nullptr, false);
    if (m.is_discarded() || !m.is_object())
      return fail_syntax(line, toks[2].pos, text.size(),
                         "the map must be a JSON object");
    req = {{"cmd", "map.adopt"}, {"map", std::move(m)}};
  } else if (w.size() != 1) {
    return fail("usage: map, or map adopt {\"version\":2,...}");
  }
  auto reply = checked(req, w.size() == 1);
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

int shell::cmd_alerts(const std::string&, const std::vector<std::string>& w) {
  json req{{"cmd", "alerts"}};
  if (w.size() == 1) {
    req["op"] = "alert.list";
  } else if (w[1] == "get" && w.size() == 3) {
    req["op"] = "alert.get";
    req["name"] = w[2];
  } else if (w[1] == "history" && w.size() <= 3) {
    req["op"] = "alert.history";
    if (w.size() == 3)
      req["rule"] = w[2];
  } else {
    return fail("usage: alerts [get RULE | history [RULE]]");
  }
  auto reply = checked(req, true);
  if (!reply)
    return last_status_;
  auto op = req["op"].get<std::string>();
  auto text = [](const json& j, const char* k) {
    auto it = j.find(k);
    if (it == j.end() || it->is_null())
      return std::string{"-"};
    return it->is_string() ? it->get<std::string>() : it->dump();
  };
  auto when = [](const json& j, const char* k) {
    auto t = j.value(k, int64_t{0});
    if (t <= 0)
      return std::string{"-"};
    auto ago = runtime::wall_clock_now() - t;
    return runtime::format_duration(std::max<int64_t>(0, ago / 1000 * 1000))
           + " ago";
  };
  if (op == "alert.list") {
    auto& rules = (*reply)["rules"];
    if (rules.empty()) {
      out_ << "no alert rules" << std::endl;
      return exit_code::ok;
    }
    text_table t;
    for (auto* c : {"RULE", "CONDITION", "WINDOW", "FOR", "SEVERITY"})
      t.add_column(c);
    for (auto* c : {"FIRING", "PENDING", "RESOLVED", "INACTIVE"})
      t.add_column(c, align::right);
    // In a cluster: the member that evaluates each rule (docs/alerting.md).
    bool owners = rules[0].contains("owner");
    if (owners)
      t.add_column("OWNER");
    for (auto& r : rules) {
      auto& n = r["instances"];
      std::vector<std::string> row{
        text(r, "name"),
        text(r, "agg") + "(" + text(r, "metric") + ") " + text(r, "op") + " "
          + text(r, "threshold"),
        text(r, "window"), text(r, "for"), text(r, "severity"),
        text(n, "firing"), text(n, "pending"), text(n, "resolved"),
        text(n, "inactive")};
      if (owners)
        row.push_back(text(r, "owner"));
      t.add_row(row);
    }
    t.print(out_);
  } else if (op == "alert.get") {
    auto& inst = (*reply)["instances"];
    out_ << text((*reply)["rule"], "name") << ": " << inst.size()
         << " instance(s)";
    if (reply->contains("owner"))
      out_ << ", evaluated by " << text(*reply, "owner");
    out_ << "\n";
    text_table t;
    for (auto* c : {"GROUP", "STATE", "VALUE", "ACTIVE_SINCE", "FIRED"})
      t.add_column(c);
    for (auto& x : inst)
      t.add_row({x.value("group", std::string{}).empty() ? "(all)" : text(x, "group"),
                 text(x, "state"), text(x, "value"), when(x, "active_since"),
                 when(x, "fired_at")});
    t.print(out_);
  } else {
    text_table t;
    for (auto* c : {"WHEN", "RULE", "GROUP", "KIND", "WHAT"})
      t.add_column(c);
    for (auto& h : (*reply)["history"]) {
      auto kind = text(h, "kind");
      std::string what;
      if (kind == "state")
        what = text(h, "from") + " -> " + text(h, "to") + " (value "
               + text(h, "value") + ")";
      else if (kind == "delivery")
        what = text(h, "status") + " to " + text(h, "receiver") + ": "
               + text(h, "outcome") + " (HTTP " + text(h, "http_status")
               + ", attempt " + text(h, "attempts") + ")"
               + (h.contains("error") ? " " + text(h, "error") : "");
      else
        what = text(h, "event");
      t.add_row({when(h, "at"), text(h, "rule"), text(h, "group"), kind, what});
    }
    t.print(out_);
    auto& dead = (*reply)["dead_letters"];
    if (!dead.empty()) {
      out_ << dead.size() << " dead letter(s):\n";
      for (auto& d : dead)
        out_ << "  " << text(d, "rule") << " " << text(d, "status") << " key "
             << text(d, "key") << ": " << text(d, "last_error") << '\n';
    }
  }
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

// -- membership sagas (docs/sagas.md) -------------------------------------------

namespace {

/// 1.5 MiB, 812 KiB, 300 B.
std::string format_bytes(uint64_t n) {
  char buf[32];
  if (n >= (1u << 20))
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(n) / (1 << 20));
  else if (n >= 1024)
    std::snprintf(buf, sizeof buf, "%.0f KiB", static_cast<double>(n) / 1024);
  else
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  return buf;
}

std::string saga_progress(const json& s) {
  auto& p = s.contains("progress") ? s["progress"] : json::object();
  std::string out;
  if (p.contains("partitions_total") && p["partitions_total"].get<int64_t>() > 0)
    out += std::to_string(p.value("partitions_done", 0)) + "/"
           + std::to_string(p.value("partitions_total", 0)) + " partitions";
  auto bytes = p.value("bytes_moved", uint64_t{0});
  auto total = p.value("bytes_total", uint64_t{0});
  if (bytes > 0 || total > 0) {
    if (!out.empty())
      out += ", ";
    out += format_bytes(bytes);
    if (total > 0 && total != bytes)
      out += " of " + format_bytes(total);
  }
  return out.empty() ? "-" : out;
}

} // namespace

int shell::cmd_sagas(const std::string&, const std::vector<std::string>& w) {
  json req{{"cmd", "sagas"}};
  if (w.size() == 1 && w[0] == "sagas") {
    req["op"] = "saga.list";
  } else if (w.size() == 2) {
    req["op"] = "saga.get";
    req["id"] = w[1];
  } else {
    return fail("usage: sagas [ID] | saga ID");
  }
  auto reply = checked(req, true);
  if (!reply)
    return last_status_;
  auto text = [](const json& j, const char* k) {
    auto it = j.find(k);
    if (it == j.end() || it->is_null()
        || (it->is_string() && it->get<std::string>().empty()))
      return std::string{"-"};
    return it->is_string() ? it->get<std::string>() : it->dump();
  };
  auto ago = [](const json& j, const char* k) {
    auto t = j.value(k, int64_t{0});
    if (t <= 0)
      return std::string{"-"};
    auto d = wall_clock_now() - t;
    return runtime::format_duration(std::max<int64_t>(0, d / 1000 * 1000))
           + " ago";
  };
  if (req["op"] == "saga.list") {
    auto& sagas = (*reply)["sagas"];
    out_ << "leader: " << text(*reply, "leader") << ", "
         << reply->value("active", 0) << " running\n";
    if (sagas.empty()) {
      out_ << "no sagas" << std::endl;
      return exit_code::ok;
    }
    text_table t;
    for (auto* c : {"ID", "TYPE", "PARAMS", "PHASE", "STEP", "PROGRESS", "STARTED"})
      t.add_column(c);
    for (auto& s : sagas)
      t.add_row({text(s, "id"), text(s, "type"),
                 s.contains("params") ? s["params"].dump() : "-",
                 text(s, "phase"),
                 text(s, "step") + (s.value("attempts", 0) > 1
                                      ? " (attempt " + text(s, "attempts") + ")"
                                      : std::string{}),
                 saga_progress(s), ago(s, "started_at")});
    t.print(out_);
    out_ << std::flush;
    return exit_code::ok;
  }
  auto& s = (*reply)["saga"];
  out_ << text(s, "id") << " (" << text(s, "type") << " "
       << (s.contains("params") ? s["params"].dump() : "") << "): "
       << text(s, "phase") << ", step " << text(s, "step") << ", "
       << saga_progress(s) << "\n";
  if (!s.value("error", std::string{}).empty())
    out_ << "error: " << text(s, "error") << "\n";
  text_table t;
  for (auto* c : {"WHEN", "RECORD", "STEP", "ATTEMPT", "DETAIL"})
    t.add_column(c);
  for (auto& r : s.value("records", json::array()))
    t.add_row({ago(r, "at"), text(r, "kind"), text(r, "step"),
               text(r, "attempt"), text(r, "detail")});
  t.print(out_);
  auto& children = s["children"];
  if (children.is_array() && !children.empty()) {
    out_ << "moves:\n";
    text_table c;
    for (auto* h : {"ID", "PARAMS", "PHASE", "STEP", "PROGRESS"})
      c.add_column(h);
    for (auto& x : children)
      c.add_row({text(x, "id"), x.contains("params") ? x["params"].dump() : "-",
                 text(x, "phase"), text(x, "step"), saga_progress(x)});
    c.print(out_);
  }
  out_ << std::flush;
  return exit_code::ok;
}

int shell::cmd_saga_start(const std::string&, const std::vector<std::string>& w) {
  json req{{"cmd", "sagas"}};
  auto& what = w[0];
  if (what == "move" && w.size() == 3) {
    uint32_t p = 0;
    auto text = w[1];
    if (!text.empty() && text[0] == 'p')
      text.erase(0, 1);
    try {
      size_t used = 0;
      p = static_cast<uint32_t>(std::stoul(text, &used));
      if (used != text.size())
        throw std::invalid_argument{"trailing"};
    } catch (const std::exception&) {
      return fail("move: PARTITION must be a number (or pN), not '" + w[1] + "'");
    }
    req["op"] = "saga.move";
    req["partition"] = p;
    req["node"] = w[2];
  } else if ((what == "decommission" || what == "join" || what == "evict")
             && w.size() == 2) {
    req["op"] = "saga." + what;
    req["node"] = w[1];
  } else if (what == "rebalance" && w.size() == 1) {
    req["op"] = "saga.rebalance";
  } else if (what == "abort" && w.size() == 2) {
    req["op"] = "saga.abort";
    req["id"] = w[1];
  } else {
    auto* c = find(what);
    return fail("usage: " + (c ? c->usage : what));
  }
  auto reply = checked(req, false);
  if (!reply)
    return last_status_;
  if (what == "abort")
    out_ << "saga " << reply->value("id", std::string{}) << " is compensating"
         << std::endl;
  else
    out_ << "saga " << reply->value("id", std::string{}) << " started (leader "
         << reply->value("leader", std::string{}) << "); follow it with 'sagas "
         << reply->value("id", std::string{}) << "'" << std::endl;
  return exit_code::ok;
}

} // namespace cairn::console
