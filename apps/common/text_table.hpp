// Plain-text output helpers for cairn-cli: an aligned table and the value
// formatting every command shares (ISO-8601 times, numbers, tag sets).
//
// Pure functions and a value type; safe to use from any thread.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cairn::cli {

using json = nlohmann::ordered_json;

/// Column alignment in a `text_table`.
enum class align : uint8_t {
  /// Text columns.
  left,
  /// Number columns.
  right,
};

/// A table of strings printed with columns padded to their widest cell and
/// separated by two spaces. Rows shorter than the header are padded.
class text_table {
public:
  /// Adds a column with a header and an alignment.
  void add_column(std::string header, align a = align::left);

  /// Appends a row; cell i belongs to column i.
  void add_row(std::vector<std::string> cells);

  /// Returns whether no rows were added.
  bool empty() const noexcept {
    return rows_.empty();
  }

  /// Writes header and rows to `out`, one line each.
  void print(std::ostream& out) const;

private:
  std::vector<std::string> headers_;
  std::vector<align> aligns_;
  std::vector<std::vector<std::string>> rows_;
};

/// Formats epoch milliseconds as ISO-8601 UTC, e.g. "2025-11-26T20:46:40Z",
/// with ".123" milliseconds when `with_millis` is true.
std::string format_iso8601(int64_t epoch_ms, bool with_millis);

/// Formats a JSON scalar for a table cell: integers as integers, other
/// numbers with up to six decimals (trailing zeros trimmed), strings
/// unquoted, null as "-", anything else as compact JSON.
std::string format_cell(const json& value);

/// Formats a tag object as "k1=v1 k2=v2"; an empty object as "(all)".
std::string format_tags(const json& tags);

} // namespace cairn::cli
