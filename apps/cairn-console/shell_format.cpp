#include "shell_format.hpp"

#include "interrupt.hpp"
#include "runtime/time.hpp"

#include "../common/text_table.hpp"

#include <algorithm>
#include <thread>
#include <vector>

namespace cairn::console::detail {

using nlohmann::json;
using cli::align;
using cli::text_table;
using namespace std::chrono_literals;

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
std::string summary(const json& obj, size_t max) {
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


} // namespace cairn::console::detail
