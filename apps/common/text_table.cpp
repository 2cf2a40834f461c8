#include "text_table.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>

namespace cairn::cli {

// -- text_table -----------------------------------------------------------------

void text_table::add_column(std::string header, align a) {
  headers_.push_back(std::move(header));
  aligns_.push_back(a);
}

void text_table::add_row(std::vector<std::string> cells) {
  cells.resize(std::max(cells.size(), headers_.size()));
  rows_.push_back(std::move(cells));
}

void text_table::print(std::ostream& out) const {
  std::vector<size_t> width(headers_.size(), 0);
  for (size_t i = 0; i < headers_.size(); ++i)
    width[i] = headers_[i].size();
  for (const auto& row : rows_)
    for (size_t i = 0; i < width.size(); ++i)
      width[i] = std::max(width[i], row[i].size());
  auto print_row = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t i = 0; i < width.size(); ++i) {
      if (i > 0)
        line += "  ";
      auto pad = width[i] - cells[i].size();
      bool last = i + 1 == width.size();
      if (aligns_[i] == align::right) {
        line.append(pad, ' ');
        line += cells[i];
      } else {
        line += cells[i];
        if (!last)
          line.append(pad, ' ');
      }
    }
    out << line << '\n';
  };
  print_row(headers_);
  for (const auto& row : rows_)
    print_row(row);
}

// -- formatting ---------------------------------------------------------------

std::string format_iso8601(int64_t epoch_ms, bool with_millis) {
  auto secs = epoch_ms / 1000;
  auto ms = epoch_ms % 1000;
  if (ms < 0) {
    ms += 1000;
    --secs;
  }
  auto t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  auto n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out(buf, n);
  if (with_millis) {
    std::snprintf(buf, sizeof(buf), ".%03d", static_cast<int>(ms));
    out += buf;
  }
  out += 'Z';
  return out;
}

std::string format_cell(const json& value) {
  if (value.is_null())
    return "-";
  if (value.is_string())
    return value.get<std::string>();
  if (value.is_number_integer() || value.is_number_unsigned() || value.is_boolean())
    return value.dump();
  if (value.is_number_float()) {
    auto v = value.get<double>();
    if (!std::isfinite(v))
      return value.dump();
    char buf[64];
    auto mag = std::fabs(v);
    if (v != 0 && (mag < 1e-3 || mag >= 1e15)) {
      std::snprintf(buf, sizeof(buf), "%.6g", v);
      return buf;
    }
    std::snprintf(buf, sizeof(buf), "%.6f", v);
    std::string s = buf;
    s.erase(s.find_last_not_of('0') + 1);
    if (s.back() == '.')
      s.pop_back();
    if (s == "-0")
      s = "0";
    return s;
  }
  return value.dump();
}

std::string format_tags(const json& tags) {
  if (!tags.is_object() || tags.empty())
    return "(all)";
  std::string out;
  for (const auto& [key, val] : tags.items()) {
    if (!out.empty())
      out += ' ';
    out += key;
    out += '=';
    out += val.is_string() ? val.get<std::string>() : val.dump();
  }
  return out;
}

} // namespace cairn::cli
