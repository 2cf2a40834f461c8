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

} // namespace cairn::console
