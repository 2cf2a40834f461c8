// cluster_gate: one `gate_session` per accepted connection, templated on the
// client and the upstream stream (plain tcp::socket or
// ssl::stream<tcp::socket>: TLS server side for the public gate, TLS client
// side for an outbound tunnel), all its handlers on the strand of its socket. The listener, the session registry
// and the stop sequence are the ones tcp_server and http_server use.
//
// Per session: `pending_` holds the client's bytes until its first frame
// (the client handshake) is complete; then the upstream connection (CAF's
// internal port, or the peer's gate with TLS) is opened, `pending_` written,
// and two pumps run: client -> checker ->
// upstream, and upstream -> client. Each pump has one read or one write
// outstanding, so a slow reader on either side stops the other side's
// reading and TCP pushes back. Whatever fails, `close` ends both sockets of
// this session only.
#include "runtime/cluster_gate.hpp"

#include "runtime/basp_frame_checker.hpp"
#include "runtime/detail/server_lifecycle.hpp"
#include "runtime/detail/session_registry.hpp"

// Boost 1.74 asio/awaitable.hpp uses std::exchange without <utility> in C++20.
#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <spdlog/spdlog.h>

#include <pthread.h>

#include <array>
#include <atomic>
#include <optional>
#include <vector>

namespace cairn::runtime {

namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

/// Bytes per socket read, each direction.
constexpr size_t read_size = 64 * 1024;

/// Largest first frame (a client handshake carries one CAF node id).
constexpr uint32_t max_handshake_payload = 64 * 1024;

/// How long a TLS close_notify may take after the upstream side closed.
constexpr auto shutdown_grace = std::chrono::seconds{1};

/// At most `per_second` warnings a second: a loop of bad connections must
/// not flood the log.
class log_budget {
public:
  explicit log_budget(uint32_t per_second) : per_second_(per_second) {
  }

  bool take() noexcept {
    auto now = std::chrono::duration_cast<std::chrono::seconds>(
                 std::chrono::steady_clock::now().time_since_epoch())
                 .count();
    auto sec = second_.load(std::memory_order_relaxed);
    if (sec != now && second_.compare_exchange_strong(sec, now))
      used_.store(0, std::memory_order_relaxed);
    return used_.fetch_add(1, std::memory_order_relaxed) < per_second_;
  }

private:
  uint32_t per_second_;
  std::atomic<int64_t> second_{0};
  std::atomic<uint32_t> used_{0};
};

class session_base;

struct shared_state {
  cluster_gate_options opts;
  asio::io_context ioc{1};
  std::optional<ssl::context> tls;
  /// "host:port" of the upstream, for messages.
  std::string upstream_name;
  detail::session_registry<session_base> sessions;
  log_budget warnings{10};

  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> relayed{0};
  std::atomic<uint64_t> open{0};
  std::atomic<uint64_t> pending{0};
  std::atomic<uint64_t> tls_failed{0};
  std::atomic<uint64_t> handshake_timeouts{0};
  std::atomic<uint64_t> frames_rejected{0};
  std::atomic<uint64_t> refused{0};

  explicit shared_state(cluster_gate_options o) : opts(std::move(o)) {
  }
};

/// What the registry needs of a session, whatever its stream type.
class session_base {
public:
  virtual ~session_base() = default;
  bool busy() const noexcept { return false; }
  virtual void post_close() = 0;
};

// -- session --------------------------------------------------------------------

template <class Stream>
inline constexpr bool is_tls_stream = !std::is_same_v<Stream, tcp::socket>;

/// A TCP socket, or a TLS client stream over one, on executor `ex`.
template <class Stream>
Stream make_stream(const tcp::socket::executor_type& ex, shared_state& st) {
  if constexpr (is_tls_stream<Stream>)
    return Stream{tcp::socket{ex}, *st.tls};
  else
    return Stream{ex};
}

template <class Client, class Upstream>
class gate_session
  : public session_base,
    public std::enable_shared_from_this<gate_session<Client, Upstream>> {
public:
  static constexpr bool is_tls = is_tls_stream<Client>;
  static constexpr bool upstream_tls = is_tls_stream<Upstream>;

  gate_session(Client client, std::shared_ptr<shared_state> state, uint64_t id,
               std::string peer)
    : client_(std::move(client)),
      upstream_(make_stream<Upstream>(client_.get_executor(), *state)),
      timer_(client_.get_executor()), state_(std::move(state)), id_(id),
      peer_(std::move(peer)),
      checker_(state_->opts.max_frame, max_handshake_payload) {
  }

  ~gate_session() override {
    spdlog::debug("cluster gate: connection {} ({}) gone", id_, peer_);
  }

  void start() {
    asio::dispatch(client_.get_executor(),
                   [self = this->shared_from_this()] { self->run(); });
  }

  void post_close() override {
    asio::post(client_.get_executor(), [self = this->shared_from_this()] {
      self->close();
    });
  }

private:
  // -- handshake ----------------------------------------------------------------

  void run() {
    timer_.expires_after(state_->opts.handshake_timeout);
    timer_.async_wait([self = this->shared_from_this()](error_code ec) {
      self->on_handshake_timer(ec);
    });
    if constexpr (is_tls) {
      client_.async_handshake(ssl::stream_base::server,
                              [self = this->shared_from_this()](error_code ec) {
                                self->on_tls_handshake(ec);
                              });
    } else {
      read_client();
    }
  }

  void on_handshake_timer(error_code ec) {
    if (ec || closed_ || established_)
      return;
    state_->handshake_timeouts.fetch_add(1, std::memory_order_relaxed);
    warn("no complete handshake within {} ms",
         state_->opts.handshake_timeout.count());
    close();
  }

  void on_tls_handshake(error_code ec) {
    if (closed_)
      return;
    if (ec) {
      state_->tls_failed.fetch_add(1, std::memory_order_relaxed);
      warn("TLS handshake failed: {}", ec.message());
      close();
      return;
    }
    read_client();
  }

  /// Resolves the upstream for every connection (a peer's name may not
  /// resolve yet when this node starts, e.g. a pod not scheduled yet), then
  /// connects to the first address that answers.
  void connect_upstream() {
    auto resolver = std::make_shared<tcp::resolver>(client_.get_executor());
    resolver->async_resolve(
      state_->opts.upstream_host, std::to_string(state_->opts.upstream_port),
      [self = this->shared_from_this(), resolver](
        error_code ec, tcp::resolver::results_type results) {
        if (self->closed_)
          return;
        if (ec) {
          self->on_upstream_connect(ec);
          return;
        }
        asio::async_connect(self->upstream_.lowest_layer(), results,
                            [self](error_code ec, const tcp::endpoint&) {
                              self->on_upstream_connect(ec);
                            });
      });
  }

  void on_upstream_connect(error_code ec) {
    if (closed_)
      return;
    if (ec) {
      if (state_->warnings.take())
        spdlog::warn("{}: cannot reach {}: {}", state_->opts.name,
                     state_->upstream_name, ec.message());
      close();
      return;
    }
    error_code ignored;
    upstream_.lowest_layer().set_option(tcp::no_delay(true), ignored);
    if constexpr (upstream_tls) {
      upstream_.async_handshake(
        ssl::stream_base::client,
        [self = this->shared_from_this()](error_code ec) {
          if (self->closed_)
            return;
          if (ec) {
            self->state_->tls_failed.fetch_add(1, std::memory_order_relaxed);
            self->warn("TLS handshake with {} failed: {}",
                       self->state_->upstream_name, ec.message());
            self->close();
            return;
          }
          self->on_upstream_ready();
        });
    } else {
      on_upstream_ready();
    }
  }

  void on_upstream_ready() {
    established_ = true;
    state_->pending.fetch_sub(1, std::memory_order_relaxed);
    state_->relayed.fetch_add(1, std::memory_order_relaxed);
    timer_.cancel();
    spdlog::debug("cluster gate: connection {} from {} relayed", id_, peer_);
    read_upstream();
    // The bytes read so far (the first frame and maybe more) go first.
    writing_up_ = true;
    asio::async_write(upstream_, asio::buffer(pending_),
                      [self = this->shared_from_this()](error_code ec,
                                                        size_t) {
                        self->pending_.clear();
                        self->pending_.shrink_to_fit();
                        self->on_upstream_written(ec);
                      });
  }

  // -- client -> upstream ---------------------------------------------------------

  void read_client() {
    client_.async_read_some(asio::buffer(up_buf_),
                            [self = this->shared_from_this()](error_code ec,
                                                              size_t n) {
                              self->on_client_read(ec, n);
                            });
  }

  void on_client_read(error_code ec, size_t n) {
    if (closed_)
      return;
    if (ec) {
      if (!established_ && ec != asio::error::operation_aborted)
        spdlog::debug("cluster gate: {} closed before its handshake: {}",
                      peer_, ec.message());
      close();
      return;
    }
    auto bytes = std::span<const uint8_t>{up_buf_.data(), n};
    if (auto err = checker_.feed(bytes); err != basp_frame_error::none) {
      state_->frames_rejected.fetch_add(1, std::memory_order_relaxed);
      auto& hdr = checker_.last_header();
      warn("rejected BASP frame ({}): operation {}, payload length {}",
           to_string(err), hdr.operation, hdr.payload_len);
      close();
      return;
    }
    if (!established_) {
      pending_.insert(pending_.end(), bytes.begin(), bytes.end());
      if (checker_.handshake_done())
        connect_upstream(); // reading resumes once pending_ is written
      else
        read_client();
      return;
    }
    writing_up_ = true;
    asio::async_write(upstream_, asio::buffer(up_buf_.data(), n),
                      [self = this->shared_from_this()](error_code ec,
                                                        size_t) {
                        self->on_upstream_written(ec);
                      });
  }

  void on_upstream_written(error_code ec) {
    writing_up_ = false;
    if (closed_)
      return;
    if (ec) {
      close();
      return;
    }
    read_client();
  }

  // -- upstream -> client ---------------------------------------------------------

  void read_upstream() {
    upstream_.async_read_some(asio::buffer(down_buf_),
                              [self = this->shared_from_this()](error_code ec,
                                                                size_t n) {
                                self->on_upstream_read(ec, n);
                              });
  }

  void on_upstream_read(error_code ec, size_t n) {
    if (closed_)
      return;
    if (ec) {
      // CAF closed the connection (redundant, shutdown, dropped peer).
      close_client_gracefully();
      return;
    }
    asio::async_write(client_, asio::buffer(down_buf_.data(), n),
                      [self = this->shared_from_this()](error_code ec,
                                                        size_t) {
                        if (self->closed_)
                          return;
                        if (ec) {
                          self->close();
                          return;
                        }
                        self->read_upstream();
                      });
  }

  /// TLS: sends close_notify (bounded by shutdown_grace) so that the peer's
  /// OpenSSL sees an orderly close rather than an unexpected EOF; plain:
  /// closes at once.
  void close_client_gracefully() {
    if constexpr (is_tls) {
      if (writing_up_ || shutting_down_) {
        close();
        return;
      }
      shutting_down_ = true;
      error_code ignored;
      upstream_.lowest_layer().close(ignored);
      timer_.expires_after(shutdown_grace);
      timer_.async_wait([self = this->shared_from_this()](error_code ec) {
        if (!ec)
          self->close();
      });
      client_.async_shutdown([self = this->shared_from_this()](error_code) {
        self->close();
      });
    } else {
      close();
    }
  }

  // -- closing --------------------------------------------------------------------

  void close() {
    if (closed_)
      return;
    closed_ = true;
    if (!established_)
      state_->pending.fetch_sub(1, std::memory_order_relaxed);
    state_->open.fetch_sub(1, std::memory_order_relaxed);
    error_code ignored;
    timer_.cancel();
    client_.lowest_layer().shutdown(tcp::socket::shutdown_both, ignored);
    client_.lowest_layer().close(ignored);
    upstream_.lowest_layer().close(ignored);
    state_->sessions.remove(id_);
  }

  template <class... Ts>
  void warn(fmt::format_string<Ts...> fmt, Ts&&... xs) {
    if (state_->warnings.take())
      spdlog::warn("{}: {}: {}", state_->opts.name, peer_,
                   fmt::format(fmt, std::forward<Ts>(xs)...));
  }

  // -- member variables -------------------------------------------------------

  Client client_;
  Upstream upstream_;
  asio::steady_timer timer_;
  std::shared_ptr<shared_state> state_;
  uint64_t id_;
  std::string peer_;
  basp_frame_checker checker_;
  std::vector<uint8_t> pending_;
  std::array<uint8_t, read_size> up_buf_;
  std::array<uint8_t, read_size> down_buf_;
  bool established_ = false;
  bool writing_up_ = false;
  bool shutting_down_ = false;
  bool closed_ = false;
};

// -- accepting ------------------------------------------------------------------

template <class Client, class Upstream = tcp::socket>
void launch(const std::shared_ptr<shared_state>& state, Client stream,
            std::string peer) {
  auto id = state->sessions.next_id();
  auto session = std::make_shared<gate_session<Client, Upstream>>(
    std::move(stream), state, id, std::move(peer));
  state->sessions.add(id, session);
  session->start();
}

void on_accept(const std::shared_ptr<shared_state>& state, tcp::socket socket) {
  error_code ec;
  auto remote = socket.remote_endpoint(ec);
  std::string peer = ec ? std::string{"?"}
                        : remote.address().to_string() + ":"
                            + std::to_string(remote.port());
  socket.set_option(tcp::no_delay(true), ec);
  state->accepted.fetch_add(1, std::memory_order_relaxed);
  if (state->pending.load() >= state->opts.max_pending) {
    state->refused.fetch_add(1, std::memory_order_relaxed);
    if (state->warnings.take())
      spdlog::warn("{}: {}: refused, {} connections in their handshake",
                   state->opts.name, peer, state->opts.max_pending);
    socket.close(ec);
    return;
  }
  state->pending.fetch_add(1, std::memory_order_relaxed);
  state->open.fetch_add(1, std::memory_order_relaxed);
  if (state->tls && state->opts.tls_upstream)
    launch<tcp::socket, ssl::stream<tcp::socket>>(state, std::move(socket),
                                                  std::move(peer));
  else if (state->tls)
    launch(state, ssl::stream<tcp::socket>{std::move(socket), *state->tls},
           std::move(peer));
  else
    launch(state, std::move(socket), std::move(peer));
}

/// Either side of the mutual TLS that CAF's openssl module speaks.
ssl::context make_tls_context(const cluster_gate_options& opts) {
  ssl::context ctx{opts.tls_upstream ? ssl::context::tls_client
                                     : ssl::context::tls_server};
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2
                  | ssl::context::no_sslv3 | ssl::context::single_dh_use);
  auto load = [](const char* what, const std::string& path, auto&& f) {
    error_code ec;
    f(ec);
    if (ec)
      throw std::runtime_error("cluster gate: cannot load " + std::string{what}
                               + " '" + path + "': " + ec.message());
  };
  load("certificate", opts.tls_certificate, [&](error_code& ec) {
    ctx.use_certificate_chain_file(opts.tls_certificate, ec);
  });
  load("key", opts.tls_key, [&](error_code& ec) {
    ctx.use_private_key_file(opts.tls_key, ssl::context::pem, ec);
  });
  load("CA file", opts.tls_ca_file, [&](error_code& ec) {
    ctx.load_verify_file(opts.tls_ca_file, ec);
  });
  // Chain verification only, no host name check (as CAF's openssl module).
  ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  // The cipher list CAF 0.17's openssl module sets on both ends.
  if (SSL_CTX_set_cipher_list(ctx.native_handle(), "HIGH:!aNULL:!MD5") != 1)
    throw std::runtime_error("cluster gate: cannot set the cipher list");
  return ctx;
}

} // namespace

// -- cluster_gate -----------------------------------------------------------------

struct cluster_gate::impl {
  std::shared_ptr<shared_state> state;
  detail::server_lifecycle lifecycle{"cluster gate"};
};

cluster_gate::cluster_gate(cluster_gate_options opts)
  : impl_(std::make_unique<impl>()) {
  impl_->state = std::make_shared<shared_state>(std::move(opts));
}

cluster_gate::~cluster_gate() {
  stop();
}

void cluster_gate::start() {
  auto& st = *impl_->state;
  if (!st.opts.tls_certificate.empty())
    st.tls.emplace(make_tls_context(st.opts));
  st.upstream_name = st.opts.upstream_host + ":"
                     + std::to_string(st.opts.upstream_port);
  impl_->lifecycle.start(st.ioc, st.opts.host, st.opts.port,
                         st.opts.tls_upstream ? st.opts.name
                                              : std::string{"cairn.cluster.port"},
                         1,
                         [state = impl_->state](tcp::socket socket) {
                           on_accept(state, std::move(socket));
                         });
  // A name for top -H and /proc/PID/task/*/comm: the relay's CPU is visible.
  asio::post(st.ioc, [name = st.opts.tls_upstream ? "cluster-tunnel"
                                                  : "cluster-gate"] {
    pthread_setname_np(pthread_self(), name);
  });
  spdlog::info("{}: {} on {}:{} -> {}{}:{}, max frame {} bytes",
               st.opts.name, st.tls && !st.opts.tls_upstream ? "mutual TLS"
                                                             : "plain",
               st.opts.host, port(), st.opts.tls_upstream ? "mutual TLS to " : "",
               st.opts.upstream_host, st.opts.upstream_port, st.opts.max_frame);
}

uint16_t cluster_gate::port() const noexcept {
  return impl_->lifecycle.port();
}

void cluster_gate::stop() {
  impl_->lifecycle.stop(impl_->state->sessions, std::chrono::milliseconds{0});
}

cluster_gate_stats cluster_gate::stats() const {
  auto& st = *impl_->state;
  cluster_gate_stats out;
  out.accepted = st.accepted.load();
  out.relayed = st.relayed.load();
  out.open = st.open.load();
  out.tls_failed = st.tls_failed.load();
  out.handshake_timeouts = st.handshake_timeouts.load();
  out.frames_rejected = st.frames_rejected.load();
  out.refused = st.refused.load();
  return out;
}

} // namespace cairn::runtime
