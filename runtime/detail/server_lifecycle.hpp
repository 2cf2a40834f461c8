// server_lifecycle: starting and stopping a server, once each; shared by
// tcp_server and http_server.
//
// `bind` resolves the bind address and opens the listener (so that a node
// can hold every port before it starts anything else); `start` binds if that
// was not done yet, accepts and runs the I/O threads; `stop` runs the session
// registry's graceful stop. Log lines start with the server's `tag` ("tcp",
// "http"); bind errors name the `option` the port comes from.
//
// Threading: `bind`, `start` and `stop` may be called from any thread but
// never from an I/O thread; they are serialized. `port` is valid after
// `bind`.
#pragma once

#include "runtime/detail/io_threads.hpp"
#include "runtime/detail/listener.hpp"
#include "runtime/detail/session_registry.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace cairn::runtime::detail {

class server_lifecycle {
public:
  explicit server_lifecycle(std::string tag) : tag_(std::move(tag)) {
  }

  /// Resolves and binds `host`:`port` and listens, without accepting yet.
  /// Throws std::logic_error when called twice and std::runtime_error
  /// ("cannot listen on H:P (<option>): <reason>") if the address cannot be
  /// resolved or bound.
  void bind(boost::asio::io_context& ioc, const std::string& host,
            uint16_t port, const std::string& option,
            listener::accept_handler on_accept);

  /// Binds as `bind` does unless that was done, starts accepting into
  /// `on_accept` and runs `ioc` on `io_threads` threads. Throws
  /// std::logic_error when called twice and what `bind` throws.
  void start(boost::asio::io_context& ioc, const std::string& host,
             uint16_t port, const std::string& option, size_t io_threads,
             listener::accept_handler on_accept);

  /// The bound port (useful with port 0). Valid after bind() / start().
  uint16_t port() const noexcept { return port_; }

  /// CPU time of the I/O threads so far (io_threads::cpu_ns).
  int64_t io_cpu_ns() const { return threads_.cpu_ns(); }

  /// The first call after start() calls `before` (if any), then stops as
  /// session_registry::graceful_stop describes; any other call only marks
  /// the server stopped. Idempotent.
  template <class Session>
  void stop(session_registry<Session>& sessions,
            std::chrono::milliseconds grace,
            const std::function<void()>& before = {}) {
    std::lock_guard<std::mutex> guard{mtx_};
    if (!started_ || stopped_) {
      stopped_ = true;
      acceptor_.reset(); // bound but never started: just close the port
      return;
    }
    stopped_ = true;
    if (before)
      before();
    sessions.graceful_stop(acceptor_, threads_, grace);
    spdlog::info("{}: stopped", tag_);
  }

private:
  void bind_locked(boost::asio::io_context& ioc, const std::string& host,
                   uint16_t port, const std::string& option,
                   listener::accept_handler on_accept);

  std::string tag_;
  std::mutex mtx_;  ///< serializes start / stop
  bool started_ = false;
  bool stopped_ = false;
  uint16_t port_ = 0;
  std::string address_;  ///< the bound address, for the log
  std::shared_ptr<listener> acceptor_;
  io_threads threads_;
};

} // namespace cairn::runtime::detail
