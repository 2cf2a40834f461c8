// shell_format: the console's formatting and small helpers, shared by the
// shell's files (shell.cpp, shell_commands.cpp, shell_watch.cpp,
// shell_completion.cpp). Internal to cairn-console.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>

namespace cairn::console::detail {

/// "10s" -> 10000; 0 if malformed (runtime/time's one duration syntax).
int64_t duration_ms(const std::string& s);

/// True if the reply has "ok": true.
bool is_ok(const nlohmann::json& reply);

/// The error of a reply as one line: "code: message" or the message.
std::string error_text(const nlohmann::json& reply);

/// A JSON value as a table cell (cli::format_cell).
std::string cell(const nlohmann::json& v);

/// {"k":"v",...} as "k=v ...".
std::string tags_text(const nlohmann::json& tags);

/// An object's scalar fields as one line of "key: value" pairs, at most
/// `max` characters.
std::string summary(const nlohmann::json& obj, size_t max = 70);

/// An object as an indented tree of "key: value" lines.
void print_tree(std::ostream& out, const nlohmann::json& obj, int indent);

/// Levenshtein distance (for "did you mean").
size_t edit_distance(const std::string& a, const std::string& b);

/// Sleeps `d` in small steps; returns false if interrupted (Ctrl-C).
bool sleep_interruptible(std::chrono::milliseconds d);

/// "warning: partial result, missing partitions [..]" or empty.
std::string partial_warning(const nlohmann::json& reply);

} // namespace cairn::console::detail
