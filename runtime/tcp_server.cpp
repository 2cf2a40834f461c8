// tcp_server: NDJSON gateway on Boost.Asio, in the shape of Beast's
// chat-multi example: a `listener` accepts, one `tcp_session` per connection
// (all its handlers on one strand), and a `shared_state` holding what the
// sessions share (options, chunk handler, stats, the session registry and the
// io_context itself, so that a session can never outlive its executor).
//
// Per connection, the session keeps three queues, all touched on its strand:
//  - `ready_`: chunks cut from the bytes read, not yet handed to the handler;
//  - `slots_`: one entry per reply position, in line order: a dispatched
//    chunk waiting for `complete`, or a locally answered slot (too_large);
//  - `out_pending_` / `out_writing_`: reply bytes queued / being written.
// The socket is read only while `ready_` is empty, the window has room, no
// barrier is in flight and the output queue is small: a slow processing side
// or a client that does not read its replies stops the reading, and TCP
// pushes back on the client.
#include "runtime/tcp_server.hpp"

#include "runtime/detail/maybe_tls_stream.hpp"
#include "runtime/detail/server_lifecycle.hpp"
#include "runtime/detail/session_registry.hpp"
#include "runtime/detail/tls_context.hpp"
#include "runtime/log.hpp"

// Boost 1.74 asio/awaitable.hpp uses std::exchange without <utility> in C++20.
#include <utility>

#include <boost/asio.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <vector>

namespace cairn::runtime {

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
namespace ssl = asio::ssl;
/// Plain TCP or TLS over it, per server (runtime/detail/maybe_tls_stream).
using stream_type = detail::maybe_tls_stream<tcp::socket>;

/// Bytes per socket read.
constexpr size_t read_size = 64 * 1024;

/// Above this many queued reply bytes the session stops reading.
constexpr size_t output_limit = 1 << 20;
/// Messages a connection's stream (live subscriptions) may hold waiting
/// (runtime/stream_sink.hpp); a client letting more pile up is closed.
constexpr size_t stream_backlog = 4096;

const std::string refusal_line
  = R"({"ok":false,"error":{"code":"unavailable","message":"too many connections"}})"
    "\n";

/// Logs a failed operation; aborts are a normal part of shutdown.
void fail(error_code ec, const char* what) {
  if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor)
    return;
  if (ec == asio::error::eof || ec == asio::error::connection_reset
      || ec == asio::error::broken_pipe) {
    spdlog::debug("tcp: {}: {}", what, ec.message());
    return;
  }
  spdlog::warn("tcp: {}: {}", what, ec.message());
}

class tcp_session;

// -- shared state ---------------------------------------------------------------

struct shared_state {
  tcp_server_options opts;
  tcp_server::chunk_handler on_chunk;
  asio::io_context ioc;

  std::atomic<uint64_t> connections_accepted{0};
  std::atomic<uint64_t> connections_open{0};
  std::atomic<uint64_t> connections_refused{0};
  std::atomic<uint64_t> lines_too_large{0};
  std::atomic<uint64_t> bytes_read{0};
  std::atomic<uint64_t> lines_read{0};
  std::atomic<uint64_t> connections_timed_out{0};
  std::atomic<uint64_t> tls_failed{0};
  /// Set when opts.tls is enabled; shared by every session.
  std::shared_ptr<ssl::context> tls;

  /// Live sessions; late completions are dropped once the I/O threads are
  /// gone instead of being queued on a dead io_context.
  detail::session_registry<tcp_session> sessions;
  /// Set by stop(): sessions stop reading new bytes.
  std::atomic<bool> draining{false};

  shared_state(tcp_server_options o, tcp_server::chunk_handler h)
    : opts(std::move(o)), on_chunk(std::move(h)), ioc(static_cast<int>(
                                                    std::max<size_t>(
                                                      opts.io_threads, 1))) {
  }
};

// -- session --------------------------------------------------------------------

class tcp_session : public std::enable_shared_from_this<tcp_session> {
public:
  using clock = std::chrono::steady_clock;

  tcp_session(stream_type socket, std::shared_ptr<shared_state> state,
              uint64_t id, std::string peer)
    : socket_(std::move(socket)), state_(std::move(state)), id_(id),
      peer_(std::move(peer)), timer_(socket_.get_executor()),
      read_buf_(read_size) {
  }

  ~tcp_session() {
    spdlog::debug("tcp: connection {} ({}) gone", id_, peer_);
  }

  /// Runs `run` on the session's strand. Called once, after accept.
  void start() {
    asio::dispatch(socket_.get_executor(),
                   [self = shared_from_this()] { self->run(); });
  }

  /// Builds the connection context and starts reading.
  void run() {
    std::weak_ptr<tcp_session> weak = shared_from_this();
    auto st = state_;
    ctx_ = std::make_shared<connection_context>(
      id_, peer_, [weak, st](uint64_t seq, std::string text) {
        // Any thread. The session may be gone, or the server stopped: then
        // the text is dropped.
        auto self = weak.lock();
        if (!self)
          return;
        st->sessions.post_if_running([&] {
          asio::post(self->socket_.get_executor(),
                     [self, seq, text = std::move(text)]() mutable {
                       self->on_complete(seq, std::move(text));
                     });
        });
      });
    // The stream of live subscriptions (docs/protocol.md): pushed messages
    // join the output between chunk replies.
    ctx_->set_stream(std::make_shared<stream_sink>(
      id_, stream_backlog, [weak, st] {
        auto self = weak.lock();
        if (!self)
          return;
        st->sessions.post_if_running([&] {
          asio::post(self->socket_.get_executor(),
                     [self] { self->pull_stream(); });
        });
      }));
    spdlog::debug("tcp: connection {} from {}", id_, peer_);
    last_activity_ = clock::now();
    if (socket_.tls()) {
      // The handshake has a deadline of its own (see deadline()); reading
      // starts once it is done.
      handshaking_ = true;
      auto t = state_->opts.line_timeout;
      handshake_deadline_ = last_activity_
                            + (t.count() > 0 ? t : std::chrono::seconds{30});
      socket_.tls_stream().async_handshake(
        ssl::stream_base::server,
        boost::beast::bind_front_handler(&tcp_session::on_handshake,
                                         shared_from_this()));
    }
    arm_timer(last_activity_);
    maybe_read();
  }

  /// True while chunks are in flight or replies wait to be written.
  bool busy() const noexcept {
    return busy_.load(std::memory_order_acquire);
  }

  /// Closes the connection from outside (stop). Any thread.
  void post_close() {
    asio::post(socket_.get_executor(),
               [self = shared_from_this()] { self->close(); });
  }

private:
  struct slot {
    uint64_t seq = 0;      ///< chunk seq (unused for local slots)
    bool local = false;    ///< answered by the server itself
    bool barrier = false;  ///< a barrier chunk
    bool done = false;
    std::string text;
  };

  // -- TLS ----------------------------------------------------------------------

  void on_handshake(error_code ec) {
    if (closed_)
      return;
    handshaking_ = false;
    if (ec) {
      state_->tls_failed.fetch_add(1, std::memory_order_relaxed);
      log_limited(spdlog::level::info, "tcp:tls-failed", std::chrono::seconds{10},
                  fmt::format("tcp: connection {} ({}): TLS handshake failed: {}",
                              id_, peer_, ec.message()));
      return close();
    }
    last_activity_ = clock::now();
    maybe_read();
  }

  // -- reading ------------------------------------------------------------------

  void maybe_read() {
    if (reading_ || eof_ || closed_ || handshaking_ || state_->draining.load())
      return;
    if (!ready_.empty() || barrier_in_flight_
        || in_flight_ >= state_->opts.window
        || out_pending_.size() + out_writing_.size() > output_limit) {
      // Backpressure: a partial line cannot progress while we do not read,
      // so its line timeout stands still until reading resumes.
      if (!paused_) {
        paused_ = true;
        paused_at_ = clock::now();
      }
      return;
    }
    if (paused_) {
      paused_ = false;
      line_started_ += clock::now() - paused_at_;
    }
    reading_ = true;
    socket_.async_read_some(
      asio::buffer(read_buf_),
      boost::beast::bind_front_handler(&tcp_session::on_read,
                                       shared_from_this()));
  }

  void on_read(error_code ec, size_t n) {
    reading_ = false;
    if (closed_)
      return;
    if (closing_) {
      // Timed out: bytes after that are not read any more.
      check_done();
      return;
    }
    // A TLS client closing without close_notify is an end of input too.
    if (ec == asio::error::eof || ec == ssl::error::stream_truncated) {
      eof_ = true;
      truncated_ = ec == ssl::error::stream_truncated;
      // A final unterminated line is still a line (complete lines may wait
      // in pending_ too, see defer_cut).
      if (!skipping_) {
        cut_lines();
        if (!skipping_ && !pending_.empty()) {
          pending_ += '\n';
          cut_lines();
        }
      }
      pending_.clear();
      dispatch();
      flush();
      update_busy();
      check_done();
      return;
    }
    if (ec) {
      fail(ec, "read");
      close();
      return;
    }
    state_->bytes_read.fetch_add(n, std::memory_order_relaxed);
    auto now = clock::now();
    last_activity_ = now;
    auto lines_before = next_line_;
    bool skipping_before = skipping_;
    consume(read_buf_.data(), n);
    state_->lines_read.fetch_add(next_line_ - lines_before,
                                 std::memory_order_relaxed);
    // A line ended in these bytes if a line number was used up or an
    // oversized line's skip ended.
    bool saw_newline = next_line_ != lines_before
                       || (skipping_before && !skipping_);
    // The line timeout runs from the first byte of the partial last line.
    if (!pending_.empty() || skipping_) {
      if (!line_open_ || saw_newline)
        line_started_ = now;
      line_open_ = true;
    } else {
      line_open_ = false;
    }
    dispatch();
    flush();
    update_busy();
    maybe_read();
  }

  /// Appends freshly read bytes and cuts them into chunks.
  void consume(const char* data, size_t n) {
    if (skipping_) {
      // Inside an oversized line: drop bytes up to its newline unbuffered.
      auto nl = static_cast<const char*>(std::memchr(data, '\n', n));
      if (nl == nullptr)
        return;
      skipping_ = false;
      auto skip = static_cast<size_t>(nl - data) + 1;
      data += skip;
      n -= skip;
    }
    pending_.append(data, n);
    if (defer_cut())
      return;
    cut_lines();
  }

  /// TLS hands over at most one record (16 KiB) per read, a quarter of a
  /// plain read: while more ciphertext waits in the socket, gather up to a
  /// chunk before cutting, so that chunks (one parser message each) stay as
  /// large as with plain TCP. The next read follows at once (maybe_read).
  bool defer_cut() {
    if (!socket_.tls() || pending_.size() >= state_->opts.max_chunk)
      return false;
    error_code ec;
    auto waiting = socket_.next_layer().available(ec);
    return !ec && waiting > 0;
  }

  /// Cuts the complete lines of `pending_` into chunks (consecutive lines
  /// with the same barrier-ness, at most max_chunk bytes) and local slots for
  /// oversized lines; leaves the partial last line in `pending_`.
  void cut_lines() {
    const auto& opts = state_->opts;
    size_t start = 0;         // start of the current line
    size_t chunk_begin = 0;   // start of the chunk being built
    size_t chunk_end = 0;     // end of the chunk being built (exclusive)
    uint64_t chunk_first = 0; // first line number of that chunk
    bool chunk_barrier = false;
    auto emit_chunk = [&] {
      if (chunk_end > chunk_begin)
        push_chunk(pending_.substr(chunk_begin, chunk_end - chunk_begin),
                   chunk_first, chunk_barrier);
      chunk_begin = chunk_end = 0;
    };
    // Only NDJSON has requests; a line-protocol field may contain "op".
    // Where the next `"op"` is: one search over the buffer, not one per line.
    bool ndjson = opts.format == chunk_format::ndjson;
    auto find_op = [&](size_t from) {
      auto p = static_cast<const char*>(
        ::memmem(pending_.data() + from, pending_.size() - from, "\"op\"", 4));
      return p ? static_cast<size_t>(p - pending_.data()) : std::string::npos;
    };
    size_t next_op = ndjson ? find_op(start) : std::string::npos;
    for (;;) {
      auto nl = pending_.find('\n', std::max(start, scan_from_));
      if (nl == std::string::npos)
        break;
      auto len = nl - start;
      auto line_no = next_line_++;
      if (len > opts.max_line) {
        emit_chunk();
        push_too_large(line_no);
      } else {
        if (next_op < start)
          next_op = find_op(start);
        bool barrier = next_op < nl;
        bool empty = chunk_end == chunk_begin;
        if (!empty
            && (barrier != chunk_barrier
                || chunk_end - chunk_begin + len + 1 > opts.max_chunk))
          emit_chunk();
        if (chunk_end == chunk_begin) {
          chunk_begin = start;
          chunk_first = line_no;
          chunk_barrier = barrier;
        }
        chunk_end = nl + 1;
      }
      start = nl + 1;
    }
    emit_chunk();
    pending_.erase(0, start);
    scan_from_ = pending_.size();
    // A partial line already longer than the limit will never fit: answer it
    // now and skip the rest of it without buffering.
    if (pending_.size() > opts.max_line) {
      push_too_large(next_line_++);
      pending_.clear();
      scan_from_ = 0;
      skipping_ = true;
    }
  }

  void push_chunk(std::string data, uint64_t first_line, bool barrier) {
    chunk c;
    c.conn = ctx_;
    c.seq = next_seq_++;
    c.first_line = first_line;
    c.data = std::move(data);
    c.barrier = barrier;
    c.format = state_->opts.format;
    c.replies = state_->opts.replies;
    slots_.push_back(slot{c.seq, false, barrier, false, {}});
    ready_.push_back(std::move(c));
  }

  void push_too_large(uint64_t line_no) {
    state_->lines_too_large.fetch_add(1, std::memory_order_relaxed);
    if (!state_->opts.replies)
      log_limited(spdlog::level::warn, "tcp:line-too-large",
                  std::chrono::seconds{10},
                  fmt::format("{}: connection {} ({}): line {} exceeds {} "
                              "bytes, skipped",
                              state_->opts.option, id_, peer_, line_no,
                              state_->opts.max_line));
    slot s;
    s.local = true;
    s.done = true;
    s.text = R"({"ok":false,"line":)" + std::to_string(line_no)
             + R"(,"error":{"code":"too_large","message":"line exceeds )"
             + std::to_string(state_->opts.max_line) + " bytes\"}}\n";
    slots_.push_back(std::move(s));
  }

  // -- dispatching --------------------------------------------------------------

  /// Hands ready chunks to the processing side, honoring the window and
  /// barriers.
  void dispatch() {
    while (!ready_.empty() && !closed_) {
      if (barrier_in_flight_)
        return;
      auto& next = ready_.front();
      if (next.barrier ? in_flight_ > 0 : in_flight_ >= state_->opts.window)
        return;
      auto c = std::move(next);
      ready_.pop_front();
      ++in_flight_;
      if (c.barrier)
        barrier_in_flight_ = true;
      auto seq = c.seq;
      try {
        state_->on_chunk(std::move(c));
      } catch (const std::exception& e) {
        spdlog::error("tcp: chunk handler threw: {}", e.what());
        on_complete(seq, R"({"ok":false,"error":{"code":"internal","message":"chunk handler failed"}})"
                         "\n");
      }
    }
  }

  void on_complete(uint64_t seq, std::string text) {
    if (closed_)
      return;
    auto i = std::find_if(slots_.begin(), slots_.end(), [seq](const slot& s) {
      return !s.local && s.seq == seq;
    });
    if (i == slots_.end() || i->done) {
      spdlog::warn("tcp: connection {}: unexpected completion of chunk {}", id_,
                   seq);
      return;
    }
    i->done = true;
    i->text = std::move(text);
    --in_flight_;
    if (i->barrier)
      barrier_in_flight_ = false;
    // An unauthenticated client (docs/protocol.md, "Authentication"):
    // its replies are written, nothing more is read.
    if (ctx_->close_requested() && !closing_)
      return begin_close(clock::now());
    flush();
    dispatch();
    update_busy();
    maybe_read();
    check_done();
  }

  // -- writing ------------------------------------------------------------------

  /// Moves the answered slots at the front, in order, into the output.
  void flush() {
    while (!slots_.empty() && slots_.front().done) {
      if (state_->opts.replies)
        out_pending_ += slots_.front().text;
      slots_.pop_front();
    }
    if (!writing_ && !out_pending_.empty())
      write();
  }

  /// Moves the stream's queued messages into the output (when not writing:
  /// while a write is in flight they wait, so updates coalesce).
  void pull_stream() {
    if (closed_ || writing_)
      return;
    auto sink = ctx_ ? ctx_->stream_if_open() : nullptr;
    if (!sink)
      return;
    if (sink->closed()) {
      close();
      return;
    }
    std::string msg;
    while (sink->next(msg)) {
      out_pending_ += msg;
      out_pending_ += '\n';
    }
    if (!out_pending_.empty())
      write();
    update_busy();
  }

  void write() {
    writing_ = true;
    out_writing_.swap(out_pending_);
    out_pending_.clear();
    asio::async_write(socket_, asio::buffer(out_writing_),
                      boost::beast::bind_front_handler(&tcp_session::on_write,
                                                       shared_from_this()));
  }

  void on_write(error_code ec, size_t) {
    writing_ = false;
    out_writing_.clear();
    if (closed_)
      return;
    if (ec) {
      fail(ec, "write");
      close();
      return;
    }
    last_activity_ = clock::now();
    if (!out_pending_.empty())
      write();
    else
      pull_stream();
    update_busy();
    maybe_read();
    check_done();
  }

  // -- timeouts -----------------------------------------------------------------

  /// The earliest deadline that applies now (time_point::max() if none).
  clock::time_point deadline() const {
    const auto& opts = state_->opts;
    auto d = clock::time_point::max();
    // Idle: nothing read or written for idle_timeout and nothing of the
    // connection in the processing side (its events are all acknowledged).
    // A connection that subscribed (a stream) is never idle.
    if (opts.idle_timeout.count() > 0 && in_flight_ == 0 && ready_.empty()
        && !(ctx_ && ctx_->streaming()))
      d = std::min(d, last_activity_ + opts.idle_timeout);
    if (opts.line_timeout.count() > 0 && line_open_ && !eof_ && !paused_)
      d = std::min(d, line_started_ + opts.line_timeout);
    if (closing_)
      d = std::min(d, close_deadline_);
    if (handshaking_)
      d = std::min(d, handshake_deadline_);
    return d;
  }

  /// Arms the timer for the current deadline. Activity only moves the time
  /// stamps; the timer re-reads them when it fires.
  void arm_timer(clock::time_point now) {
    auto d = deadline();
    bool timeouts = state_->opts.idle_timeout.count() > 0
                    || state_->opts.line_timeout.count() > 0;
    if (!timeouts && !closing_ && !handshaking_)
      return; // both disabled: no timer at all
    if (d == clock::time_point::max()) {
      // Nothing applies right now (work in flight): look again later.
      auto opts_min = std::chrono::milliseconds{1000};
      for (auto t : {state_->opts.idle_timeout, state_->opts.line_timeout})
        if (t.count() > 0)
          opts_min = std::min(opts_min, t);
      d = now + opts_min;
    }
    timer_.expires_at(d);
    timer_.async_wait(boost::beast::bind_front_handler(&tcp_session::on_timer,
                                                       shared_from_this()));
  }

  void on_timer(error_code ec) {
    if (ec || closed_)
      return;
    auto now = clock::now();
    const auto& opts = state_->opts;
    if (handshaking_ && now >= handshake_deadline_) {
      state_->tls_failed.fetch_add(1, std::memory_order_relaxed);
      log_limited(spdlog::level::info, "tcp:tls-timeout", std::chrono::seconds{10},
                  fmt::format("tcp: connection {} ({}): no TLS handshake "
                              "within the deadline, closing",
                              id_, peer_));
      close();
      return;
    }
    if (closing_ && now >= close_deadline_) {
      // The client does not read the replies to its last lines.
      close();
      return;
    }
    if (!closing_ && opts.line_timeout.count() > 0 && line_open_ && !eof_
        && !paused_ && now >= line_started_ + opts.line_timeout) {
      state_->connections_timed_out.fetch_add(1, std::memory_order_relaxed);
      log_limited(spdlog::level::info, "tcp:line-timeout", std::chrono::seconds{10},
                  fmt::format("tcp: connection {} ({}): line not complete "
                              "within {} ms, closing",
                              id_, peer_, opts.line_timeout.count()));
      slot s;
      s.local = true;
      s.done = true;
      s.text = R"({"ok":false,"line":)" + std::to_string(next_line_)
               + R"(,"error":{"code":"timeout","message":"line not complete within )"
               + std::to_string(opts.line_timeout.count()) + " ms\"}}\n";
      slots_.push_back(std::move(s));
      begin_close(now);
    } else if (opts.idle_timeout.count() > 0 && in_flight_ == 0
               && ready_.empty() && !(ctx_ && ctx_->streaming())
               && now >= last_activity_ + opts.idle_timeout) {
      state_->connections_timed_out.fetch_add(1, std::memory_order_relaxed);
      log_limited(spdlog::level::info, "tcp:idle-timeout", std::chrono::seconds{10},
                  fmt::format("tcp: connection {} ({}) idle for {} ms, closing",
                              id_, peer_, opts.idle_timeout.count()));
      close();
      return;
    }
    if (!closed_)
      arm_timer(now);
  }

  /// Stops reading; the complete lines already read are still processed and
  /// answered, then the connection closes (check_done). A client that does
  /// not read those replies is cut off after a grace period.
  void begin_close(clock::time_point now) {
    closing_ = true;
    eof_ = true;
    line_open_ = false;
    // Complete lines gathered by defer_cut are still processed.
    if (!skipping_)
      cut_lines();
    skipping_ = false;
    pending_.clear();
    scan_from_ = 0;
    close_deadline_ = now + std::max<std::chrono::milliseconds>(
                              state_->opts.line_timeout, std::chrono::seconds{5});
    dispatch();
    flush();
    update_busy();
    check_done();
  }

  // -- closing ------------------------------------------------------------------

  /// After EOF: close once every reply has been written.
  void check_done() {
    if (!eof_ || closed_)
      return;
    if (ready_.empty() && in_flight_ == 0 && slots_.empty() && !writing_
        && out_pending_.empty()) {
      if (socket_.tls() && !truncated_) {
        // TLS: answer the client's close_notify with ours (bounded by the
        // close deadline), then close.
        if (tls_shutdown_)
          return;
        tls_shutdown_ = true;
        if (!closing_) {
          closing_ = true;
          close_deadline_ = clock::now() + std::chrono::seconds{5};
          arm_timer(clock::now());
        }
        socket_.tls_stream().async_shutdown(
          [self = shared_from_this()](error_code) { self->close(); });
        return;
      }
      error_code ignored;
      socket_.next_layer().shutdown(tcp::socket::shutdown_send, ignored);
      close();
    }
  }

  void close() {
    if (closed_)
      return;
    closed_ = true;
    timer_.cancel();
    ready_.clear();
    slots_.clear();
    in_flight_ = 0;
    busy_.store(false, std::memory_order_release);
    error_code ignored;
    socket_.next_layer().shutdown(tcp::socket::shutdown_both, ignored);
    socket_.next_layer().close(ignored);
    state_->connections_open.fetch_sub(1, std::memory_order_relaxed);
    if (auto sink = ctx_ ? ctx_->stream_if_open() : nullptr)
      sink->mark_closed();
    state_->sessions.remove(id_);
  }

  void update_busy() {
    busy_.store(in_flight_ > 0 || writing_ || !out_pending_.empty(),
                std::memory_order_release);
  }

  // -- member variables ---------------------------------------------------------

  stream_type socket_;
  std::shared_ptr<shared_state> state_;
  uint64_t id_;
  std::string peer_;
  std::shared_ptr<connection_context> ctx_;

  asio::steady_timer timer_;           ///< idle / line / close deadline
  clock::time_point last_activity_;    ///< last read or write completion
  clock::time_point line_started_;     ///< first byte of the partial line
  clock::time_point close_deadline_;   ///< hard close once closing_
  bool line_open_ = false;             ///< a partial line is buffered
  bool closing_ = false;               ///< timed out: finishing, no reads
  bool paused_ = false;                ///< not reading: backpressure
  clock::time_point paused_at_;        ///< since when
  bool handshaking_ = false;           ///< TLS handshake not done yet
  clock::time_point handshake_deadline_;
  bool truncated_ = false;             ///< TLS input ended without close_notify
  bool tls_shutdown_ = false;          ///< our close_notify is on its way

  std::vector<char> read_buf_;
  std::string pending_;      ///< unprocessed bytes: the partial last line
  size_t scan_from_ = 0;     ///< where to resume looking for '\n' in pending_
  bool skipping_ = false;    ///< inside an oversized line
  uint64_t next_line_ = 1;
  uint64_t next_seq_ = 0;

  std::deque<chunk> ready_;
  std::deque<slot> slots_;
  size_t in_flight_ = 0;
  bool barrier_in_flight_ = false;

  std::string out_pending_;
  std::string out_writing_;
  bool writing_ = false;

  bool reading_ = false;
  bool eof_ = false;
  bool closed_ = false;
  std::atomic<bool> busy_{false};
};

// -- accepting ------------------------------------------------------------------

/// Answers a connection beyond `max_connections` with one error line and
/// closes it.
void refuse(shared_state& state, tcp::socket socket, const std::string& peer) {
  state.connections_refused.fetch_add(1, std::memory_order_relaxed);
  log_limited(spdlog::level::warn, "tcp:refuse", std::chrono::seconds{10},
              fmt::format("tcp: refusing {}: too many connections ({})", peer,
                          state.opts.max_connections));
  detail::async_refuse(std::move(socket), state.tls, refusal_line,
                       std::chrono::seconds{5});
}

/// Starts a session for an accepted socket, or refuses it.
void on_accept(const std::shared_ptr<shared_state>& state, tcp::socket socket) {
  error_code pec;
  auto remote = socket.remote_endpoint(pec);
  std::string peer = pec ? std::string{"?"}
                         : remote.address().to_string() + ":"
                             + std::to_string(remote.port());
  socket.set_option(tcp::no_delay(true), pec);
  if (state->connections_open.load() >= state->opts.max_connections) {
    refuse(*state, std::move(socket), peer);
    return;
  }
  state->connections_accepted.fetch_add(1, std::memory_order_relaxed);
  state->connections_open.fetch_add(1, std::memory_order_relaxed);
  auto id = state->sessions.next_id();
  auto stream = state->tls ? stream_type{std::move(socket), *state->tls}
                           : stream_type{std::move(socket)};
  auto session = std::make_shared<tcp_session>(std::move(stream), state, id,
                                               std::move(peer));
  state->sessions.add(id, session);
  session->start();
}

} // namespace

// -- tcp_server -------------------------------------------------------------------

struct tcp_server::impl {
  std::shared_ptr<shared_state> state;
  detail::server_lifecycle lifecycle{"tcp"};
};

tcp_server::tcp_server(tcp_server_options opts, chunk_handler on_chunk)
  : impl_(std::make_unique<impl>()) {
  if (opts.window == 0)
    opts.window = 1;
  if (opts.max_chunk == 0)
    opts.max_chunk = 1;
  impl_->state = std::make_shared<shared_state>(std::move(opts),
                                                std::move(on_chunk));
  if (impl_->state->opts.tls.enabled())
    impl_->state->tls = detail::make_server_tls_context(impl_->state->opts.tls);
}

tcp_server::~tcp_server() {
  stop();
}

void tcp_server::bind() {
  auto& st = *impl_->state;
  impl_->lifecycle.bind(st.ioc, st.opts.host, st.opts.port, st.opts.option,
                        [state = impl_->state](tcp::socket socket) {
                          on_accept(state, std::move(socket));
                        });
}

void tcp_server::start() {
  auto& st = *impl_->state;
  impl_->lifecycle.start(st.ioc, st.opts.host, st.opts.port, st.opts.option,
                         st.opts.io_threads,
                         [state = impl_->state](tcp::socket socket) {
                           on_accept(state, std::move(socket));
                         });
}

uint16_t tcp_server::port() const noexcept {
  return impl_->lifecycle.port();
}

void tcp_server::stop(std::chrono::milliseconds grace) {
  // Sessions stop reading new bytes before the shared stop sequence.
  auto& st = *impl_->state;
  impl_->lifecycle.stop(st.sessions, grace,
                        [&st] { st.draining.store(true); });
}

tcp_server_stats tcp_server::stats() const {
  auto& st = *impl_->state;
  tcp_server_stats out;
  out.connections_accepted = st.connections_accepted.load();
  out.connections_open = st.connections_open.load();
  out.connections_refused = st.connections_refused.load();
  out.lines_too_large = st.lines_too_large.load();
  out.bytes_read = st.bytes_read.load();
  out.lines_read = st.lines_read.load();
  out.io_cpu_ns = impl_->lifecycle.io_cpu_ns();
  out.connections_timed_out = st.connections_timed_out.load();
  out.tls_failed = st.tls_failed.load();
  return out;
}

} // namespace cairn::runtime
