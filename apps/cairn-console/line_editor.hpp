// line_editor: GNU readline for cairn-console's interactive mode.
//
// History is loaded from and appended to a file (default
// ~/.cairn_console_history, at most 1000 entries). Tab completes through a
// callback (commands, actor names, metric names). Ctrl-C at the prompt
// clears the line and shows a fresh prompt (it never leaves); Ctrl-D on an
// empty line ends input.
//
// Readline is a process-wide singleton: create one line_editor, on the main
// thread.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace cairn::console {

class line_editor {
public:
  /// Returns the candidates for the word being completed, given the words
  /// before it on the line.
  using completer = std::function<std::vector<std::string>(
    const std::vector<std::string>& before, const std::string& prefix)>;

  /// `history_file` empty = no persistent history.
  line_editor(std::string history_file, completer complete);
  ~line_editor();

  line_editor(const line_editor&) = delete;
  line_editor& operator=(const line_editor&) = delete;

  /// Reads one line; nullopt at end of input (Ctrl-D).
  std::optional<std::string> read(const std::string& prompt);

  /// Adds a line to the history (and to the history file).
  void remember(const std::string& line);

private:
  std::string history_file_;
};

/// The default history file: $HOME/.cairn_console_history ("" without HOME).
std::string default_history_file();

} // namespace cairn::console
