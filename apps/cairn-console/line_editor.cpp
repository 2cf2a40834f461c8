#include "line_editor.hpp"

#include "interrupt.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <readline/history.h>
#include <readline/readline.h>

namespace cairn::console {

namespace {

constexpr int max_history = 1000;

line_editor::completer* active_completer = nullptr;
std::vector<std::string> candidates;

char* next_candidate(const char*, int state) {
  static size_t index = 0;
  if (state == 0)
    index = 0;
  if (index < candidates.size())
    return strdup(candidates[index++].c_str());
  return nullptr;
}

char** complete(const char* text, int start, int) {
  rl_attempted_completion_over = 1;  // never fall back to file names
  candidates.clear();
  if (active_completer == nullptr)
    return nullptr;
  std::vector<std::string> before;
  std::string head{rl_line_buffer, static_cast<size_t>(start)};
  size_t i = 0;
  while (i < head.size()) {
    while (i < head.size() && head[i] == ' ')
      ++i;
    auto j = head.find(' ', i);
    if (j == std::string::npos)
      j = head.size();
    if (j > i)
      before.push_back(head.substr(i, j - i));
    i = j;
  }
  try {
    candidates = (*active_completer)(before, text);
  } catch (...) {
    candidates.clear();
  }
  // JSON arguments must not get a trailing space appended mid-object.
  rl_completion_append_character = ' ';
  return rl_completion_matches(text, next_candidate);
}

/// Readline calls this after it handled a signal (and passed it on to our
/// SIGINT handler). Ctrl-C at the prompt: drop the line, fresh prompt.
int on_signal() {
  if (interrupted()) {
    clear_interrupt();
    rl_replace_line("", 0);
    rl_point = rl_end = 0;
    std::fputs("\n", rl_outstream ? rl_outstream : stdout);
    rl_on_new_line();
    rl_redisplay();
  }
  return 0;
}

} // namespace

std::string default_history_file() {
  auto home = std::getenv("HOME");
  if (home == nullptr || *home == '\0')
    return {};
  return std::string{home} + "/.cairn_console_history";
}

line_editor::line_editor(std::string history_file, completer complete_fn)
  : history_file_(std::move(history_file)) {
  static completer storage;
  storage = std::move(complete_fn);
  active_completer = &storage;
  rl_readline_name = "cairn-console";
  rl_attempted_completion_function = complete;
  rl_basic_word_break_characters = const_cast<char*>(" \t\n");
  rl_signal_event_hook = on_signal;
  rl_catch_signals = 1;
  using_history();
  stifle_history(max_history);
  if (!history_file_.empty())
    read_history(history_file_.c_str());
}

line_editor::~line_editor() {
  if (!history_file_.empty())
    history_truncate_file(history_file_.c_str(), max_history);
  active_completer = nullptr;
}

std::optional<std::string> line_editor::read(const std::string& prompt) {
  clear_interrupt();
  char* raw = readline(prompt.c_str());
  if (raw == nullptr)
    return std::nullopt;
  std::string line{raw};
  std::free(raw);
  return line;
}

void line_editor::remember(const std::string& line) {
  if (line.find_first_not_of(" \t") == std::string::npos)
    return;
  auto* last = history_length > 0 ? history_get(history_base + history_length - 1)
                                  : nullptr;
  if (last != nullptr && line == last->line)
    return;
  add_history(line.c_str());
  if (!history_file_.empty()) {
    // Append one entry at a time so that a killed console keeps its history.
    if (append_history(1, history_file_.c_str()) != 0)
      write_history(history_file_.c_str());
  }
}

} // namespace cairn::console
