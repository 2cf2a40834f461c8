#include "alerts/rule.hpp"

#include "runtime/time.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace cairn::alerts {

using nlohmann::json;

std::string_view to_string(comparator c) noexcept {
  switch (c) {
    case comparator::gt:
      return ">";
    case comparator::ge:
      return ">=";
    case comparator::lt:
      return "<";
    case comparator::le:
      return "<=";
    case comparator::eq:
      return "==";
    case comparator::ne:
      return "!=";
  }
  return "?";
}

bool holds(comparator c, double v, double t) noexcept {
  if (std::isnan(v))
    return false;
  switch (c) {
    case comparator::gt:
      return v > t;
    case comparator::ge:
      return v >= t;
    case comparator::lt:
      return v < t;
    case comparator::le:
      return v <= t;
    case comparator::eq:
      return v == t;
    case comparator::ne:
      return v != t;
  }
  return false;
}

std::string_view to_string(no_data_policy p) noexcept {
  switch (p) {
    case no_data_policy::ok:
      return "ok";
    case no_data_policy::alerting:
      return "alerting";
    case no_data_policy::keep:
      return "keep";
  }
  return "?";
}

namespace {

constexpr size_t max_name = 128;
constexpr size_t max_text = 4096;
constexpr size_t max_receivers = 16;

/// Validation of one rule: the first problem wins, named by its field.
struct reader {
  const json& j;
  std::string error;

  bool fail(std::string field, std::string what) {
    if (error.empty())
      error = "rule." + field + ": " + what;
    return false;
  }

  const json* find(const char* key) const {
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  }

  bool text(const char* key, std::string& out, bool required,
            size_t max_len = max_name) {
    auto* v = find(key);
    if (!v)
      return required ? fail(key, "is required") : true;
    if (!v->is_string())
      return fail(key, "must be a string");
    out = v->get<std::string>();
    if (required && out.empty())
      return fail(key, "must not be empty");
    if (out.size() > max_len)
      return fail(key, "is longer than " + std::to_string(max_len) + " bytes");
    return true;
  }

  bool duration(const char* key, millis& out, bool required) {
    auto* v = find(key);
    if (!v)
      return required ? fail(key, "is required") : true;
    std::optional<millis> d;
    if (v->is_string())
      d = runtime::parse_duration(v->get<std::string>());
    else if (v->is_number_unsigned())
      d = static_cast<millis>(v->get<uint64_t>());
    if (!d)
      return fail(key, "must be a duration such as \"5m\"");
    out = *d;
    return true;
  }

  bool string_map(const char* key, std::map<std::string, std::string>& out) {
    auto* v = find(key);
    if (!v)
      return true;
    if (!v->is_object())
      return fail(key, "must be an object of strings");
    for (auto& [k, x] : v->items()) {
      if (!x.is_string())
        return fail(std::string{key} + "." + k, "must be a string");
      if (k.empty() || k.size() > max_name)
        return fail(key, "keys must be 1 to 128 bytes");
      auto s = x.get<std::string>();
      if (s.size() > max_text)
        return fail(std::string{key} + "." + k, "is longer than 4096 bytes");
      out[k] = std::move(s);
    }
    return true;
  }
};

bool valid_url(const std::string& url) {
  return (url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0)
         && url.size() > 8 && url.size() <= 2048
         && url.find_first_of(" \r\n\t") == std::string::npos;
}

} // namespace

std::variant<rule, cqrs::problem> parse_rule(const json& j,
                                             millis finest_resolution) {
  auto bad = [](std::string msg) -> std::variant<rule, cqrs::problem> {
    return cqrs::problem{cqrs::error_code::bad_request, std::move(msg)};
  };
  if (!j.is_object())
    return bad("\"rule\" must be an object");
  rule r;
  reader rd{j, {}};
  rd.text("name", r.name, true);
  rd.text("metric", r.metric, true);
  if (rd.error.empty()
      && r.name.find_first_of("\r\n\t/") != std::string::npos)
    rd.fail("name", "must not contain '/', tabs or line breaks");
  // where: exact matches, like queries (docs/protocol.md).
  if (auto* w = rd.find("where")) {
    if (!w->is_object()) {
      rd.fail("where", "must be an object of strings");
    } else {
      for (auto& [k, v] : w->items()) {
        if (!v.is_string()) {
          rd.fail("where." + k, "must be a string");
          break;
        }
        r.where.emplace_back(k, v.get<std::string>());
      }
      std::sort(r.where.begin(), r.where.end());
    }
  }
  if (auto* g = rd.find("group_by")) {
    if (!g->is_array() || g->size() > 8) {
      rd.fail("group_by", "must be an array of at most 8 tag keys");
    } else {
      for (auto& k : *g) {
        if (!k.is_string() || k.get<std::string>().empty()) {
          rd.fail("group_by", "must be an array of non-empty strings");
          break;
        }
        r.group_by.push_back(k.get<std::string>());
      }
      std::sort(r.group_by.begin(), r.group_by.end());
      r.group_by.erase(std::unique(r.group_by.begin(), r.group_by.end()),
                       r.group_by.end());
    }
  }
  std::string agg_text;
  if (rd.text("agg", agg_text, true)) {
    if (auto a = cqrs::parse_agg(agg_text))
      r.agg = *a;
    else
      rd.fail("agg", "must be count, sum, min, max, avg, last, rate or pNN");
  }
  if (rd.duration("window", r.window, true)
      && (r.window <= 0 || r.window % finest_resolution != 0
          || r.window > 24LL * 3600 * 1000))
    rd.fail("window", "must be a positive multiple of the finest tier's "
                      "resolution ("
                        + runtime::format_duration(finest_resolution)
                        + "), at most 1d");
  std::string op = ">";
  if (rd.text("op", op, false)) {
    static const std::pair<const char*, comparator> ops[] = {
      {">", comparator::gt},  {">=", comparator::ge}, {"<", comparator::lt},
      {"<=", comparator::le}, {"==", comparator::eq}, {"!=", comparator::ne}};
    bool found = false;
    for (auto& [s, c] : ops)
      if (op == s) {
        r.op = c;
        found = true;
      }
    if (!found)
      rd.fail("op", "must be one of >, >=, <, <=, ==, !=");
  }
  if (auto* t = rd.find("threshold"); !t)
    rd.fail("threshold", "is required");
  else if (!t->is_number() || !std::isfinite(t->get<double>()))
    rd.fail("threshold", "must be a finite number");
  else
    r.threshold = t->get<double>();
  rd.duration("for", r.for_ms, false);
  rd.duration("keep_firing_for", r.keep_firing_for, false);
  rd.duration("group_wait", r.group_wait, false);
  if (rd.duration("repeat_interval", r.repeat_interval, false)
      && r.repeat_interval < 1000)
    rd.fail("repeat_interval", "must be at least 1s");
  std::string nd = "ok";
  if (rd.text("no_data", nd, false)) {
    if (nd == "ok")
      r.no_data = no_data_policy::ok;
    else if (nd == "alerting")
      r.no_data = no_data_policy::alerting;
    else if (nd == "keep")
      r.no_data = no_data_policy::keep;
    else
      rd.fail("no_data", "must be ok, alerting or keep");
  }
  rd.string_map("labels", r.labels);
  rd.string_map("annotations", r.annotations);
  rd.text("severity", r.severity, false);
  if (auto* rs = rd.find("receivers")) {
    if (!rs->is_array() || rs->size() > max_receivers) {
      rd.fail("receivers", "must be an array of at most 16 receivers");
    } else {
      size_t i = 0;
      for (auto& x : *rs) {
        auto field = "receivers[" + std::to_string(i++) + "]";
        if (!x.is_object()) {
          rd.fail(field, "must be an object with \"url\"");
          break;
        }
        receiver rc;
        reader sub{x, {}};
        sub.text("url", rc.url, true, 2048);
        if (sub.error.empty() && !valid_url(rc.url))
          sub.fail("url", "must be an http:// or https:// URL");
        sub.string_map("headers", rc.headers);
        sub.text("secret", rc.secret, false, 1024);
        if (!sub.error.empty()) {
          // "rule.url: ..." -> "rule.receivers[0].url: ..."
          rd.fail(field + "." + sub.error.substr(5), "");
          rd.error.resize(rd.error.size() - 2);
          break;
        }
        r.receivers.push_back(std::move(rc));
      }
    }
  }
  if (!rd.error.empty())
    return bad(std::move(rd.error));
  return r;
}

json to_json(const rule& r) {
  json where = json::object();
  for (auto& [k, v] : r.where)
    where[k] = v;
  json receivers = json::array();
  for (auto& rc : r.receivers) {
    json x{{"url", rc.url}};
    if (!rc.headers.empty())
      x["headers"] = rc.headers;
    if (!rc.secret.empty())
      x["secret"] = rc.secret;
    receivers.push_back(std::move(x));
  }
  return json{{"name", r.name},
              {"metric", r.metric},
              {"where", where},
              {"group_by", r.group_by},
              {"agg", r.agg.name},
              {"window", runtime::format_duration(r.window)},
              {"op", std::string{to_string(r.op)}},
              {"threshold", r.threshold},
              {"for", runtime::format_duration(r.for_ms)},
              {"keep_firing_for", runtime::format_duration(r.keep_firing_for)},
              {"no_data", std::string{to_string(r.no_data)}},
              {"labels", r.labels},
              {"annotations", r.annotations},
              {"severity", r.severity},
              {"receivers", receivers},
              {"group_wait", runtime::format_duration(r.group_wait)},
              {"repeat_interval", runtime::format_duration(r.repeat_interval)},
              {"version", r.version}};
}

bool matches(const rule& r, const std::vector<cqrs::tag>& tags) {
  // Both sorted by key: one merge walk.
  auto it = tags.begin();
  for (auto& [k, v] : r.where) {
    while (it != tags.end() && it->first < k)
      ++it;
    if (it == tags.end() || it->first != k || it->second != v)
      return false;
  }
  return true;
}

std::vector<cqrs::tag> group_of(const rule& r,
                                const std::vector<cqrs::tag>& tags) {
  std::vector<cqrs::tag> out;
  out.reserve(r.group_by.size());
  for (auto& k : r.group_by) {
    auto it = std::lower_bound(
      tags.begin(), tags.end(), k,
      [](const cqrs::tag& t, const std::string& key) { return t.first < key; });
    out.emplace_back(k, it != tags.end() && it->first == k ? it->second
                                                           : std::string{});
  }
  return out;
}

std::string group_key(const std::vector<cqrs::tag>& group) {
  std::string out;
  auto put = [&out](const std::string& s) {
    for (char c : s) {
      if (c == ',' || c == '=' || c == '\\')
        out += '\\';
      out += c;
    }
  };
  for (auto& [k, v] : group) {
    if (!out.empty())
      out += ',';
    put(k);
    out += '=';
    put(v);
  }
  return out;
}

std::string render_template(std::string_view text, const rule& r,
                            double value,
                            const std::vector<cqrs::tag>& group) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    auto open = text.find("{{", pos);
    if (open == std::string_view::npos) {
      out.append(text.substr(pos));
      break;
    }
    auto close = text.find("}}", open + 2);
    if (close == std::string_view::npos) {
      out.append(text.substr(pos));
      break;
    }
    out.append(text.substr(pos, open - pos));
    auto name = text.substr(open + 2, close - open - 2);
    while (!name.empty() && name.front() == ' ')
      name.remove_prefix(1);
    while (!name.empty() && name.back() == ' ')
      name.remove_suffix(1);
    if (name.rfind("labels.", 0) == 0)
      name.remove_prefix(7);
    bool done = false;
    if (name == "value") {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.6g", value);
      out += buf;
      done = true;
    } else if (name == "name") {
      out += r.name;
      done = true;
    } else {
      for (auto& [k, v] : group)
        if (k == name) {
          out += v;
          done = true;
          break;
        }
    }
    if (!done)
      out.append(text.substr(open, close + 2 - open));
    pos = close + 2;
  }
  return out;
}

} // namespace cairn::alerts
