// io_threads: the I/O threads that run a server's io_context, shared by
// tcp_server and http_server.
//
// `start` keeps the io_context busy with a work guard and runs it on `n`
// threads (an exception escaping a handler is logged and the thread goes on
// running). `run_out` releases the guard, gives the handlers still queued a
// short time to finish, stops the io_context and joins the threads; `drain`
// then runs, on the calling thread, whatever was queued after that, so that
// no handler is left holding a session.
//
// Threading: every member is called by the thread that starts and stops the
// server, never from an I/O thread. The io_context must outlive the threads,
// i.e. `run_out` must be called before it goes.
#pragma once

// Boost 1.74 asio/awaitable.hpp uses std::exchange without <utility> in C++20.
#include <utility>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace cairn::runtime::detail {

class io_threads {
public:
  /// Starts `n` (at least one) threads running `ioc`; `tag` prefixes their
  /// log lines. Call once.
  void start(boost::asio::io_context& ioc, size_t n, std::string_view tag);

  /// Lets the io_context run out of work (for at most `limit`), stops it and
  /// joins the threads. Does nothing before `start`.
  void run_out(std::chrono::milliseconds limit = std::chrono::milliseconds{500});

  /// Runs the handlers queued since `run_out` on the calling thread until
  /// none is left. Does nothing before `start`.
  void drain();

  /// CPU time the threads have used so far, in nanoseconds (any thread may
  /// ask, also while they run or after they were joined).
  int64_t cpu_ns() const;

private:
  using work_guard
    = boost::asio::executor_work_guard<boost::asio::io_context::executor_type>;

  boost::asio::io_context* ioc_ = nullptr;
  std::optional<work_guard> work_;
  std::vector<std::thread> threads_;
  /// Per thread: its CPU clock while it runs, its total once it ended
  /// (the clock of a thread that exited cannot be read any more).
  struct cpu_slot {
    std::atomic<bool> started{false};
    std::atomic<bool> done{false};
    clockid_t id{};
    std::atomic<int64_t> final_ns{0};
  };
  mutable std::mutex slots_mtx_;
  std::vector<std::unique_ptr<cpu_slot>> slots_;
};

} // namespace cairn::runtime::detail
