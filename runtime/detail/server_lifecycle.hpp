// server_lifecycle: starting and stopping a server, once each; shared by
// tcp_server and http_server.
//
// `start` resolves the bind address, opens the listener and runs the I/O
// threads; `stop` runs the session registry's graceful stop. Log lines start
// with the server's `tag` ("tcp", "http"); exceptions with "<tag>_server".
//
// Threading: `start` and `stop` may be called from any thread but never from
// an I/O thread; they are serialized. `port` is valid after `start`.
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

  /// Binds `host`:`port`, starts accepting into `on_accept` and runs `ioc`
  /// on `io_threads` threads. Throws std::logic_error when called twice and
  /// std::runtime_error if the address cannot be resolved or bound.
  void start(boost::asio::io_context& ioc, const std::string& host,
             uint16_t port, size_t io_threads, listener::fail_handler fail,
             listener::accept_handler on_accept);

  /// The bound port (useful with port 0). Valid after start().
  uint16_t port() const noexcept { return port_; }

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
      return;
    }
    stopped_ = true;
    if (before)
      before();
    sessions.graceful_stop(acceptor_, threads_, grace);
    spdlog::info("{}: stopped", tag_);
  }

private:
  std::string tag_;
  std::mutex mtx_;  ///< serializes start / stop
  bool started_ = false;
  bool stopped_ = false;
  uint16_t port_ = 0;
  std::shared_ptr<listener> acceptor_;
  io_threads threads_;
};

} // namespace cairn::runtime::detail
