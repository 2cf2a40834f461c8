// maybe_tls_stream: one stream type for a server session that speaks either
// plain TCP or TLS, decided per server at start (runtime/tls_options.hpp).
//
// The sessions of tcp_server and http_server (and the WebSocket sessions
// upgraded from HTTP) are written once against this type instead of being
// templated over the stream: it is an AsyncStream (async_read_some,
// async_write_some, get_executor) that forwards to either the `NextLayer`
// itself (tcp::socket, beast::tcp_stream) or a beast::ssl_stream over it.
// `next_layer()` is the NextLayer in both cases, so
// beast::get_lowest_layer() finds the socket (and a tcp_stream's timeouts)
// either way, and teardown/async_teardown below let a
// beast::websocket::stream run on top of it.
//
// Threading: as the wrapped stream (one strand per session).
#pragma once

// Boost 1.74 asio/awaitable.hpp uses std::exchange without <utility> in C++20.
#include <utility>

#include <boost/asio/ssl.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/teardown.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <variant>

namespace cairn::runtime::detail {

template <class NextLayer>
class maybe_tls_stream {
public:
  using next_layer_type = NextLayer;
  using tls_type = boost::beast::ssl_stream<NextLayer>;
  using executor_type = typename NextLayer::executor_type;

  /// Plain TCP.
  explicit maybe_tls_stream(NextLayer next)
    : s_(std::in_place_index<0>, std::move(next)) {
  }

  /// TLS with `ctx` (which must outlive the stream); the session runs the
  /// server handshake on `tls_stream()` before anything else.
  maybe_tls_stream(NextLayer next, boost::asio::ssl::context& ctx)
    : s_(std::in_place_index<1>, std::move(next), ctx) {
  }

  maybe_tls_stream(maybe_tls_stream&&) = default;
  maybe_tls_stream& operator=(maybe_tls_stream&&) = default;

  // -- properties -------------------------------------------------------------

  bool tls() const noexcept { return s_.index() == 1; }

  /// The TLS layer. Only if tls().
  tls_type& tls_stream() noexcept { return std::get<1>(s_); }

  executor_type get_executor() noexcept {
    return tls() ? std::get<1>(s_).get_executor()
                 : std::get<0>(s_).get_executor();
  }

  NextLayer& next_layer() noexcept {
    return tls() ? std::get<1>(s_).next_layer() : std::get<0>(s_);
  }

  // -- AsyncStream ------------------------------------------------------------

  template <class MutableBufferSequence, class ReadHandler>
  void async_read_some(const MutableBufferSequence& buffers,
                       ReadHandler&& handler) {
    if (tls())
      std::get<1>(s_).async_read_some(buffers,
                                      std::forward<ReadHandler>(handler));
    else
      std::get<0>(s_).async_read_some(buffers,
                                      std::forward<ReadHandler>(handler));
  }

  template <class ConstBufferSequence, class WriteHandler>
  void async_write_some(const ConstBufferSequence& buffers,
                        WriteHandler&& handler) {
    if (tls())
      std::get<1>(s_).async_write_some(buffers,
                                       std::forward<WriteHandler>(handler));
    else
      std::get<0>(s_).async_write_some(buffers,
                                       std::forward<WriteHandler>(handler));
  }

private:
  std::variant<NextLayer, tls_type> s_;
};

// -- WebSocket teardown hooks (found by ADL) -----------------------------------

template <class NextLayer>
void teardown(boost::beast::role_type role, maybe_tls_stream<NextLayer>& s,
              boost::system::error_code& ec) {
  using boost::beast::websocket::teardown;
  if (s.tls())
    teardown(role, s.tls_stream(), ec);
  else
    teardown(role, s.next_layer(), ec);
}

template <class NextLayer, class TeardownHandler>
void async_teardown(boost::beast::role_type role,
                    maybe_tls_stream<NextLayer>& s, TeardownHandler&& handler) {
  using boost::beast::websocket::async_teardown;
  if (s.tls())
    async_teardown(role, s.tls_stream(),
                   std::forward<TeardownHandler>(handler));
  else
    async_teardown(role, s.next_layer(),
                   std::forward<TeardownHandler>(handler));
}

} // namespace cairn::runtime::detail

namespace cairn::runtime::detail {

/// Answers a connection the server will not serve (too many connections)
/// with `text`, then closes it: plain, or after a TLS handshake with `ctx`
/// (a raw line would only confuse a TLS client). The whole exchange must end
/// within `deadline`, else the socket is closed anyway. Any thread.
inline void
async_refuse(boost::asio::ip::tcp::socket socket,
             const std::shared_ptr<boost::asio::ssl::context>& ctx,
             const std::string& text, std::chrono::milliseconds deadline) {
  namespace asio = boost::asio;
  using error_code = boost::system::error_code;
  using stream = maybe_tls_stream<asio::ip::tcp::socket>;
  struct refusal {
    stream s;
    asio::steady_timer timer;
    std::shared_ptr<asio::ssl::context> keep;  ///< outlives the stream
    std::string text;
    refusal(stream st, std::shared_ptr<asio::ssl::context> k, std::string t)
      : s(std::move(st)), timer(s.get_executor()), keep(std::move(k)),
        text(std::move(t)) {
    }
    void close() {
      error_code ignored;
      timer.cancel();
      s.next_layer().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
      s.next_layer().close(ignored);
    }
    static void write(const std::shared_ptr<refusal>& r) {
      asio::async_write(r->s, asio::buffer(r->text),
                        [r](error_code, size_t) { r->close(); });
    }
  };
  auto r = ctx ? std::make_shared<refusal>(stream{std::move(socket), *ctx},
                                           ctx, text)
               : std::make_shared<refusal>(stream{std::move(socket)}, nullptr,
                                           text);
  r->timer.expires_after(deadline);
  r->timer.async_wait([r](error_code ec) {
    if (!ec)
      r->close();
  });
  if (!r->s.tls())
    return refusal::write(r);
  r->s.tls_stream().async_handshake(asio::ssl::stream_base::server,
                                    [r](error_code ec) {
                                      if (ec)
                                        return r->close();
                                      refusal::write(r);
                                    });
}

} // namespace cairn::runtime::detail
