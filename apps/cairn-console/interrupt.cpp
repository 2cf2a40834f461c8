#include "interrupt.hpp"

#include <atomic>
#include <csignal>

namespace cairn::console {

namespace {

std::atomic<bool> flag{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void on_sigint(int) {
  flag.store(true);
}

} // namespace

void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocking read returns with EINTR
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

bool interrupted() noexcept {
  return flag.load();
}

void clear_interrupt() noexcept {
  flag.store(false);
}

} // namespace cairn::console
