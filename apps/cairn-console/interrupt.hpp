// interrupt: Ctrl-C handling of cairn-console.
//
// SIGINT never terminates the console: the handler only sets a flag. A
// running command (a `watch`, a reconnect wait) polls `interrupted()` and
// stops; at the prompt the line editor clears the current line. The flag is
// a lock-free atomic, so the handler is async-signal-safe.
#pragma once

namespace cairn::console {

/// Installs the SIGINT handler (no SA_RESTART, so blocking reads return).
void install_interrupt_handler();

/// True if Ctrl-C was pressed since the last `clear_interrupt`.
bool interrupted() noexcept;

void clear_interrupt() noexcept;

} // namespace cairn::console
