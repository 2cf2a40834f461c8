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
  std::lock_guard<std::mutex> guard{clocks_mtx_};
  for (auto& t : threads_) {
    clockid_t id{};
    if (pthread_getcpuclockid(t.native_handle(), &id) == 0)
      clocks_.push_back(id);
  }
}

namespace {

int64_t clock_ns(clockid_t id) {
  timespec ts{};
  if (clock_gettime(id, &ts) != 0)
    return 0;
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

} // namespace

int64_t io_threads::cpu_ns() const {
  std::lock_guard<std::mutex> guard{clocks_mtx_};
  auto total = joined_ns_;
  for (auto id : clocks_)
    total += clock_ns(id);
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
  {
    // A joined thread's clock is gone: keep what it had used.
    std::lock_guard<std::mutex> guard{clocks_mtx_};
    for (auto id : clocks_)
      joined_ns_ += clock_ns(id);
    clocks_.clear();
  }
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
