// listener: the accepting side shared by tcp_server and http_server, after
// the `listener` of Beast's chat-multi example. It resolves the bind address,
// opens, binds (SO_REUSEADDR) and listens, then accepts on its own strand and
// hands every accepted socket, already on a strand of its own, to a callback.
//
// A failed accept (typically EMFILE: out of file descriptors) is retried
// after a backoff that starts at 10 ms and doubles up to 1 s, reset by the
// next successful accept: the pending connection stays in the kernel's
// backlog, so retrying at once would spin at 100 % CPU. The failure is
// logged at most once per 10 s with the number of repeats in between.
//
// Threading: construct and `run()` from the thread that starts the server;
// `post_close()` from any thread. The accept handler runs on the I/O threads.
// The io_context must outlive the listener; the server keeps it alive by
// letting `on_accept` own the server's shared state (declared first below, so
// it goes last).
#pragma once

// Boost 1.74 asio/awaitable.hpp uses std::exchange without <utility> in C++20.
#include <utility>

#include <boost/asio.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace cairn::runtime::detail {

/// Resolves `host` (a literal address or a host name) and `port` to the
/// endpoint to bind. Throws std::runtime_error ("cannot resolve ... for
/// <option>") if the name does not resolve.
[[nodiscard]] boost::asio::ip::tcp::endpoint
resolve_endpoint(boost::asio::io_context& ioc, const std::string& host,
                 uint16_t port, std::string_view option);

class listener : public std::enable_shared_from_this<listener> {
public:
  using tcp = boost::asio::ip::tcp;
  using error_code = boost::system::error_code;

  /// Takes each accepted socket. Called on an I/O thread.
  using accept_handler = std::function<void(tcp::socket)>;

  /// Opens, binds and listens on `ep`. Throws std::runtime_error
  /// ("cannot listen on host:port (<option>): <reason>") if that fails.
  /// `tag` ("tcp", "http") prefixes log lines.
  listener(boost::asio::io_context& ioc, const tcp::endpoint& ep,
           std::string_view option, std::string_view tag,
           accept_handler on_accept);

  /// The bound port (the real one when `ep` asked for port 0).
  uint16_t port() const noexcept { return port_; }

  /// Starts accepting. Call once.
  void run() { do_accept(); }

  /// Stops accepting. Any thread.
  void post_close();

private:
  void do_accept();
  void on_accept(error_code ec, tcp::socket socket);
  void on_backoff(error_code ec);

  // -- member variables -------------------------------------------------------

  accept_handler on_accept_;  ///< first: may own the io_context's owner
  boost::asio::io_context& ioc_;
  tcp::acceptor acceptor_;
  boost::asio::steady_timer backoff_timer_;  ///< on the acceptor's strand
  std::chrono::milliseconds backoff_{0};     ///< 0 after a success
  std::string tag_;
  uint16_t port_ = 0;
};

} // namespace cairn::runtime::detail
