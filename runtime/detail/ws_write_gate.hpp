// ws_write_gate: the stream under a server's beast::websocket::stream that
// lets the session write ready-made frames to the socket itself, between
// the frames Beast writes (docs/architecture.md, "Live subscriptions").
//
// Why: a live update goes to thousands of clients; Beast's write path (a
// composed operation per frame, the tcp_stream's timer bookkeeping, a
// posted completion) costs more CPU per write than the socket write itself.
// A server frame is unmasked, so the session can frame a message (2-10
// header bytes) and hand header, per-client head and shared body to one
// sendmsg. What stays with Beast: reading, the handshake, and the control
// frames it writes on its own (pings when idle, pongs, the close
// handshake). The gate keeps the two writers from interleaving bytes:
//   - while a write of Beast's is in flight (lower_busy()), the session
//     does not write; it asks to be told (notify_idle) and is called back
//     once Beast's write completed;
//   - while the session's own write is in flight (raw_begin .. raw_end,
//     i.e. the kernel took part of it and the rest is pending), a write
//     Beast starts waits and is started by raw_end.
// Beast writes one frame with one composed write (auto_fragment off), and
// a composed write starts its next write_some from the completion of the
// previous one, so "no write_some of Beast's in flight" is a frame boundary.
//
// Threading: every member on the session's strand, as the stream below.
#pragma once

// Boost 1.74 asio/awaitable.hpp uses std::exchange without <utility> in C++20.
#include <utility>

#include <boost/asio/bind_executor.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/websocket/teardown.hpp>
#include <boost/system/error_code.hpp>

#include <functional>
#include <memory>
#include <type_traits>

namespace cairn::runtime::detail {

template <class NextLayer>
class ws_write_gate {
public:
  using next_layer_type = NextLayer;
  using executor_type = typename NextLayer::executor_type;

  explicit ws_write_gate(NextLayer next)
    : next_(std::move(next)), st_(std::make_shared<state>()) {
  }

  ws_write_gate(ws_write_gate&&) = default;
  ws_write_gate& operator=(ws_write_gate&&) = default;

  // -- properties -------------------------------------------------------------

  executor_type get_executor() noexcept { return next_.get_executor(); }

  NextLayer& next_layer() noexcept { return next_; }

  /// True while a write_some of the layer above (Beast) is in flight: the
  /// session must not write now.
  bool lower_busy() const noexcept { return st_->lower_busy; }

  // -- the session's own writes -----------------------------------------------

  /// Calls `f` once (on the strand, from the completion of Beast's write)
  /// when lower_busy() is false again; replaces an earlier request.
  void notify_idle(std::function<void()> f) { st_->on_idle = std::move(f); }

  /// A write of the session's is in flight: Beast's writes wait.
  void raw_begin() noexcept { st_->raw_busy = true; }

  /// The session's write completed: starts a write of Beast's that waited.
  void raw_end() {
    st_->raw_busy = false;
    if (auto deferred = std::move(st_->deferred)) {
      st_->deferred = nullptr;
      deferred();
    }
  }

  // -- AsyncStream ------------------------------------------------------------

  template <class MutableBufferSequence, class ReadHandler>
  void async_read_some(const MutableBufferSequence& buffers,
                       ReadHandler&& handler) {
    next_.async_read_some(buffers, std::forward<ReadHandler>(handler));
  }

  template <class ConstBufferSequence, class WriteHandler>
  void async_write_some(const ConstBufferSequence& buffers,
                        WriteHandler&& handler) {
    if (!st_->raw_busy)
      return start_lower(buffers, std::forward<WriteHandler>(handler));
    // The session's frame is half written: this one starts after it. The
    // buffers stay valid (Beast's own until its handler runs).
    auto h = std::make_shared<std::decay_t<WriteHandler>>(
      std::forward<WriteHandler>(handler));
    st_->lower_busy = true;
    st_->deferred = [this, buffers, h] { start_lower(buffers, std::move(*h)); };
  }

private:
  struct state {
    bool lower_busy = false;
    bool raw_busy = false;
    std::function<void()> deferred;  ///< Beast's write waiting for raw_end
    std::function<void()> on_idle;   ///< the session waiting for Beast's
  };

  template <class ConstBufferSequence, class WriteHandler>
  void start_lower(const ConstBufferSequence& buffers, WriteHandler&& handler) {
    st_->lower_busy = true;
    // The completion runs on the stream's executor (the session's strand),
    // as Beast's handler would. `st` (not `this`) after the handler: it
    // may have released the last reference to the session.
    next_.async_write_some(
      buffers,
      boost::asio::bind_executor(
        next_.get_executor(),
        [st = st_, h = std::forward<WriteHandler>(handler)](
          boost::system::error_code ec, std::size_t n) mutable {
          st->lower_busy = false;
          std::move(h)(ec, n);
          if (!st->lower_busy && st->on_idle) {
            auto f = std::move(st->on_idle);
            st->on_idle = nullptr;
            f();
          }
        }));
  }

  NextLayer next_;
  std::shared_ptr<state> st_;
};

// -- WebSocket teardown hooks (found by ADL) -----------------------------------

template <class NextLayer>
void teardown(boost::beast::role_type role, ws_write_gate<NextLayer>& s,
              boost::system::error_code& ec) {
  teardown(role, s.next_layer(), ec);
}

template <class NextLayer, class TeardownHandler>
void async_teardown(boost::beast::role_type role, ws_write_gate<NextLayer>& s,
                    TeardownHandler&& handler) {
  async_teardown(role, s.next_layer(), std::forward<TeardownHandler>(handler));
}

} // namespace cairn::runtime::detail
