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

// -- watch ----------------------------------------------------------------------

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

} // namespace cairn::console
