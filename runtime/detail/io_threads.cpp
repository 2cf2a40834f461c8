#include "runtime/detail/io_threads.hpp"

#include <spdlog/spdlog.h>

#include <pthread.h>

#include <algorithm>
#include <exception>

namespace cairn::runtime::detail {

namespace {

/// The calling thread's CPU clock, or the clock `id`; false if it cannot
/// be read (a thread that exited).
bool clock_ns(clockid_t id, int64_t& out) {
  timespec ts{};
  if (clock_gettime(id, &ts) != 0)
    return false;
  out = static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  return true;
}

} // namespace

void io_threads::start(boost::asio::io_context& ioc, size_t n,
                       std::string_view tag) {
  ioc_ = &ioc;
  work_.emplace(ioc.get_executor());
  n = std::max<size_t>(n, 1);
  std::lock_guard<std::mutex> guard{slots_mtx_};
  for (size_t i = 0; i < n; ++i) {
    auto* slot = slots_.emplace_back(std::make_unique<cpu_slot>()).get();
    threads_.emplace_back([&ioc, slot, tag = std::string{tag}] {
      if (pthread_getcpuclockid(pthread_self(), &slot->id) == 0)
        slot->started.store(true, std::memory_order_release);
      // "cairn.http.io" / "cairn.tcp.io" in top -H, perf and /proc (at
      // most 15 characters).
      auto name = ("cairn." + tag + ".io").substr(0, 15);
      pthread_setname_np(pthread_self(), name.c_str());
      for (;;) {
        try {
          ioc.run();
          break;
        } catch (const std::exception& e) {
          spdlog::error("{}: I/O thread caught: {}", tag, e.what());
        }
      }
      // The clock goes with the thread: its total stays here.
      int64_t total = 0;
      if (clock_ns(CLOCK_THREAD_CPUTIME_ID, total))
        slot->final_ns.store(total, std::memory_order_relaxed);
      slot->done.store(true, std::memory_order_release);
    });
  }
}

int64_t io_threads::cpu_ns() const {
  std::lock_guard<std::mutex> guard{slots_mtx_};
  int64_t total = 0;
  for (auto& slot : slots_) {
    if (!slot->started.load(std::memory_order_acquire))
      continue;
    int64_t now = 0;
    if (!slot->done.load(std::memory_order_acquire) && clock_ns(slot->id, now))
      total += now;
    else if (slot->done.load(std::memory_order_acquire))
      total += slot->final_ns.load(std::memory_order_relaxed);
  }
  return total;
}

void io_threads::run_out(std::chrono::milliseconds limit) {
  if (ioc_ == nullptr)
    return;
  using clock = std::chrono::steady_clock;
  work_.reset();
  auto deadline = clock::now() + limit;
  while (!ioc_->stopped() && clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds{2});
  ioc_->stop();
  for (auto& t : threads_)
    if (t.joinable())
      t.join();
  threads_.clear();
}

void io_threads::drain() {
  if (ioc_ == nullptr)
    return;
  ioc_->restart();
  while (ioc_->poll() > 0) {
  }
}

} // namespace cairn::runtime::detail
