#include "runtime/detail/io_threads.hpp"

#include <spdlog/spdlog.h>

#include <pthread.h>

#include <algorithm>
#include <exception>

namespace cairn::runtime::detail {

void io_threads::start(boost::asio::io_context& ioc, size_t n,
                       std::string_view tag) {
  ioc_ = &ioc;
  work_.emplace(ioc.get_executor());
  n = std::max<size_t>(n, 1);
  for (size_t i = 0; i < n; ++i)
    threads_.emplace_back([&ioc, tag = std::string{tag}] {
      // "cairn.http.io" / "cairn.tcp.io" in top -H, perf and /proc (at
      // most 15 characters).
      auto name = ("cairn." + tag + ".io").substr(0, 15);
      pthread_setname_np(pthread_self(), name.c_str());
      for (;;) {
        try {
          ioc.run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("{}: I/O thread caught: {}", tag, e.what());
        }
      }
    });
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
