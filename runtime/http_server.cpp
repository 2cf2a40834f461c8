// http_server on Boost.Beast, after Beast's chat-multi example: `listener`,
// `http_session`, and a `shared_state` that owns the io_context (so that a
// session, and a pending API reply holding it, never outlive their executor).
#include "runtime/http_server.hpp"

#include "runtime/detail/maybe_tls_stream.hpp"
#include "runtime/detail/server_lifecycle.hpp"
#include "runtime/detail/session_registry.hpp"
#include "runtime/detail/tls_context.hpp"
#include "runtime/detail/ws_write_gate.hpp"
#include "runtime/log.hpp"

// Boost 1.74 asio/awaitable.hpp uses std::exchange without <utility> in C++20.
#include <utility>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/version.hpp>
#include <boost/beast/websocket.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>

#include <sys/socket.h>
#include <sys/uio.h>

namespace cairn::runtime {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
namespace ssl = asio::ssl;
/// Plain TCP or TLS over it, per server (runtime/detail/maybe_tls_stream);
/// the tcp_stream underneath carries the timeouts either way.
using stream_type = detail::maybe_tls_stream<beast::tcp_stream>;

void fail(error_code ec, const char* what) {
  if (ec == asio::error::operation_aborted || ec == http::error::end_of_stream
      || ec == asio::error::eof || ec == beast::error::timeout
      || ec == asio::error::connection_reset
      || ec == ssl::error::stream_truncated)
    return;
  spdlog::warn("http: {}: {}", what, ec.message());
}

/// The body of a 503 for too many connections (JSON, like every error of
/// POST /api: clients read error bodies on any status).
constexpr std::string_view too_many_connections_json
  = R"({"ok":false,"error":{"code":"unavailable","message":"too many connections"}})";

std::string_view mime_type(std::string_view path) {
  auto dot = path.rfind('.');
  auto ext = dot == std::string_view::npos ? std::string_view{}
                                           : path.substr(dot);
  if (ext == ".html" || ext == ".htm")
    return "text/html; charset=utf-8";
  if (ext == ".css")
    return "text/css; charset=utf-8";
  if (ext == ".js" || ext == ".mjs")
    return "application/javascript; charset=utf-8";
  if (ext == ".json")
    return "application/json";
  if (ext == ".svg")
    return "image/svg+xml";
  if (ext == ".png")
    return "image/png";
  if (ext == ".jpg" || ext == ".jpeg")
    return "image/jpeg";
  if (ext == ".ico")
    return "image/x-icon";
  if (ext == ".txt")
    return "text/plain; charset=utf-8";
  if (ext == ".wasm")
    return "application/wasm";
  return "application/octet-stream";
}

/// Maps a request target to a file below `root`, or nullopt if the target is
/// unsafe or the file does not exist.
std::optional<fs::path> resolve_static(const std::string& root,
                                       std::string_view target) {
  if (root.empty())
    return std::nullopt;
  auto q = target.find_first_of("?#");
  if (q != std::string_view::npos)
    target = target.substr(0, q);
  if (target.empty() || target.front() != '/')
    return std::nullopt;
  if (target.find('\\') != std::string_view::npos
      || target.find('\0') != std::string_view::npos
      || target.find('%') != std::string_view::npos)
    return std::nullopt;
  // Refuse any ".." segment outright.
  size_t pos = 0;
  while (pos <= target.size()) {
    auto next = target.find('/', pos);
    auto seg = target.substr(pos, next == std::string_view::npos
                                    ? std::string_view::npos
                                    : next - pos);
    if (seg == "..")
      return std::nullopt;
    if (next == std::string_view::npos)
      break;
    pos = next + 1;
  }
  std::string rel{target.substr(1)};
  if (rel.empty() || rel.back() == '/')
    rel += "index.html";
  std::error_code ec;
  auto base = fs::canonical(root, ec);
  if (ec)
    return std::nullopt;
  auto file = fs::weakly_canonical(base / rel, ec);
  if (ec)
    return std::nullopt;
  // Still below the root after resolving symlinks?
  auto mismatch = std::mismatch(base.begin(), base.end(), file.begin(),
                                file.end());
  if (mismatch.first != base.end())
    return std::nullopt;
  if (fs::is_directory(file, ec))
    file /= "index.html";
  if (!fs::is_regular_file(file, ec))
    return std::nullopt;
  return file;
}

namespace websocket = beast::websocket;

/// What the session registry needs of a session (HTTP or WebSocket).
class server_session {
public:
  virtual ~server_session() = default;
  virtual bool busy() const noexcept = 0;
  virtual void post_close() = 0;
};

class http_session;
class websocket_session;

// -- shared state ---------------------------------------------------------------

/// The WebSockets whose sinks have something new, collected on the
/// producers' threads and pumped by one handler per shard on an I/O thread.
/// A live update fanned out to 10,000 clients (docs/architecture.md, "Live
/// subscriptions") then costs its producer one push under a lock per
/// client and one post per shard — not one post, and one wake-up of an I/O
/// thread, per client. One shard per I/O thread (session id modulo), each
/// posted on its own, so the writes spread over the I/O threads.
struct ws_wake_queue {
  struct shard {
    std::mutex mtx;
    std::vector<std::weak_ptr<websocket_session>> pending;
    bool posted = false;
  };
  std::vector<std::unique_ptr<shard>> shards;

  explicit ws_wake_queue(size_t n) {
    for (size_t i = 0; i < std::max<size_t>(n, 1); ++i)
      shards.push_back(std::make_unique<shard>());
  }
};

struct route_entry {
  std::string path;
  bool prefix;
  http_server::route_handler handler;

  bool matches(std::string_view p) const noexcept {
    return prefix ? p.substr(0, path.size()) == path : p == path;
  }
};

/// The whole seconds of an error body's `"retry_after_ms"`, rounded up.
std::optional<int64_t> retry_after_seconds(std::string_view body) {
  constexpr std::string_view key = "\"retry_after_ms\":";
  auto at = body.find(key);
  if (at == std::string_view::npos)
    return std::nullopt;
  auto digits = body.substr(at + key.size());
  int64_t ms = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), ms);
  if (ec != std::errc{} || ms < 0)
    return std::nullopt;
  return (ms + 999) / 1000;
}

struct shared_state {
  http_server_options opts;
  metrics_registry& metrics;
  http_server::api_handler on_api;
  std::vector<route_entry> routes;  ///< fixed once started
  /// WebSocket paths (fixed once started).
  std::vector<std::pair<std::string, http_server::websocket_handler>> websockets;
  std::atomic<size_t> ws_open{0};
  http_server::route_handler api_route;  ///< POST /api through on_api
  /// Set when opts.tls is enabled; shared by every session.
  std::shared_ptr<ssl::context> tls;
  std::atomic<uint64_t> tls_failed{0};
  http_server::principal_api_handler on_api_principal;  ///< replaces on_api
  http_server::guard_fn guard;  ///< fixed once started; may be empty
  asio::io_context ioc;

  /// Live sessions; late API replies are dropped once the I/O threads are
  /// gone.
  detail::session_registry<server_session> sessions;
  std::atomic<size_t> open{0};  ///< sessions not closed yet
  ws_wake_queue ws_wakes;

  shared_state(http_server_options o, metrics_registry& m,
               http_server::api_handler h)
    : opts(std::move(o)), metrics(m), on_api(std::move(h)),
      ioc(static_cast<int>(std::max<size_t>(opts.io_threads, 1))),
      ws_wakes(opts.io_threads) {
    api_route = [this](http_request req, http_server::response_fn reply) {
      auto answer = [reply = std::move(reply)](int status, std::string json) {
        http_response res{status, "application/json", std::move(json), {}};
        // A rate-limited request (docs/protocol.md, "Rate limits") says when
        // to come back in its body; HTTP clients read Retry-After.
        if (status == 429)
          if (auto after = retry_after_seconds(res.body))
            res.headers.emplace_back("Retry-After", std::to_string(*after));
        reply(std::move(res));
      };
      if (on_api_principal)
        on_api_principal(std::move(req.body), std::move(req.principal),
                         std::move(answer));
      else
        on_api(std::move(req.body), std::move(answer));
    };
  }
};

// -- session --------------------------------------------------------------------

void start_websocket(const std::shared_ptr<shared_state>& state,
                     stream_type stream,
                     http::request<http::string_body> req,
                     const http_server::websocket_handler& handler,
                     http_server::guard_decision access);

class http_session : public server_session,
                     public std::enable_shared_from_this<http_session> {
public:
  using response = http::response<http::string_body>;

  http_session(stream_type stream, std::shared_ptr<shared_state> state,
               uint64_t id)
    : stream_(std::move(stream)), state_(std::move(state)), id_(id) {
  }

  void start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      if (!self->stream_.tls())
        return self->do_read();
      // TLS: the handshake must complete within the read timeout.
      self->expire(self->state_->opts.read_timeout.count() > 0
                     ? self->state_->opts.read_timeout
                     : std::chrono::seconds{30});
      self->stream_.tls_stream().async_handshake(
        ssl::stream_base::server,
        beast::bind_front_handler(&http_session::on_handshake, self));
    });
  }

  bool busy() const noexcept override { return busy_.load(); }

  void post_close() override {
    asio::post(stream_.get_executor(),
               [self = shared_from_this()] { self->close(); });
  }

private:
  void on_handshake(error_code ec) {
    if (closed_)
      return;
    if (ec) {
      state_->tls_failed.fetch_add(1, std::memory_order_relaxed);
      log_limited(spdlog::level::info, "http:tls-failed",
                  std::chrono::seconds{10},
                  fmt::format("http: TLS handshake failed: {}", ec.message()));
      return close();
    }
    do_read();
  }

  /// The socket under the (maybe TLS) stream.
  tcp::socket& socket() noexcept {
    return beast::get_lowest_layer(stream_).socket();
  }

  void do_read() {
    if (closed_)
      return;
    parser_.emplace();
    parser_->body_limit(state_->opts.max_body);
    if (buffer_.size() > 0)
      return read_request();
    // Between requests: wait for the first byte under the idle timeout.
    expire(state_->opts.idle_timeout);
    stream_.async_read_some(buffer_.prepare(4096),
                            beast::bind_front_handler(
                              &http_session::on_first_bytes,
                              shared_from_this()));
  }

  void on_first_bytes(error_code ec, size_t n) {
    if (closed_)
      return;
    if (ec) {
      fail(ec, "read");
      close();
      return;
    }
    buffer_.commit(n);
    read_request();
  }

  /// Header and body must be complete within the read timeout.
  void read_request() {
    expire(state_->opts.read_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&http_session::on_read,
                                               shared_from_this()));
  }

  void expire(std::chrono::milliseconds t) {
    if (t.count() > 0)
      beast::get_lowest_layer(stream_).expires_after(t);
    else
      beast::get_lowest_layer(stream_).expires_never();
  }

  void on_read(error_code ec, size_t) {
    if (closed_)
      return;
    if (ec == http::error::body_limit) {
      keep_alive_ = false;
      send(make_text(http::status::payload_too_large,
                     R"({"ok":false,"error":{"code":"too_large","message":"request body exceeds )"
                       + std::to_string(state_->opts.max_body) + " bytes\"}}",
                     11, false, "application/json"));
      return;
    }
    if (ec) {
      fail(ec, "read");
      close();
      return;
    }
    beast::get_lowest_layer(stream_).expires_never();
    handle(parser_->release());
  }

  response make_text(http::status status, std::string body, unsigned version,
                     bool keep_alive,
                     std::string_view type = "text/plain; charset=utf-8") {
    response res{status, version};
    res.set(http::field::server, "cairn");
    res.set(http::field::content_type, beast::string_view{type.data(), type.size()});
    // Defence in depth for the dashboard: only our own scripts run (no
    // inline handlers even if markup were injected), nothing is sniffed
    // into another type, and no other site may frame the page.
    res.set("Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self' "
            "'unsafe-inline'; img-src 'self' data:; object-src 'none'; "
            "base-uri 'none'; frame-ancestors 'none'");
    res.set("X-Content-Type-Options", "nosniff");
    res.keep_alive(keep_alive);
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
  }

  /// 405 naming the methods `allow`ed (in the Allow header and the body).
  response not_allowed(const char* allow, unsigned version, bool keep) {
    auto res = make_text(http::status::method_not_allowed,
                         std::string{"method not allowed; use "} + allow + "\n",
                         version, keep);
    res.set(http::field::allow, allow);
    return res;
  }

  void handle(http::request<http::string_body> req) {
    auto version = req.version();
    auto keep = req.keep_alive();
    keep_alive_ = keep;
    std::string target{req.target()};
    auto path = std::string_view{target}.substr(
      0, std::min(target.find('?'), target.size()));
    auto method = req.method();
    bool get_or_head = method == http::verb::get || method == http::verb::head;
    // The access check (docs/protocol.md, "Authentication"); /healthz and
    // /readyz are always open: probes and load balancers carry no token.
    http_server::guard_decision access;
    if (state_->guard && path != "/healthz" && path != "/readyz") {
      access = state_->guard(head_of(req));
      if (access.refuse) {
        auto& r = *access.refuse;
        auto res = make_text(static_cast<http::status>(r.status), std::move(r.body),
                             version, keep, r.content_type);
        for (auto& [k, v] : r.headers)
          res.set(k, v);
        return send(std::move(res));
      }
    }
    if (path == "/metrics") {
      if (!get_or_head)
        return send(not_allowed("GET, HEAD", version, keep));
      auto res = make_text(http::status::ok,
                           state_->metrics.render_prometheus(), version, keep,
                           "text/plain; version=0.0.4; charset=utf-8");
      if (method == http::verb::head)
        res.body().clear();
      return send(std::move(res));
    }
    // Liveness: the process answers. Readiness: the node serves reads and
    // writes (docs/protocol.md, "Health and readiness").
    if (path == "/healthz" || path == "/readyz") {
      if (!get_or_head)
        return send(not_allowed("GET, HEAD", version, keep));
      std::string why;
      if (path == "/readyz" && state_->opts.readiness)
        why = state_->opts.readiness();
      auto res = why.empty()
                   ? make_text(http::status::ok, "ok", version, keep)
                   : make_text(http::status::service_unavailable, why + "\n",
                               version, keep);
      if (!why.empty())
        res.set(http::field::retry_after, "1");
      if (method == http::verb::head) {
        auto size = res.body().size();
        res.body().clear();
        res.content_length(size);
      }
      return send(std::move(res));
    }
    for (auto& [ws_path, handler] : state_->websockets)
      if (path == ws_path) {
        if (websocket::is_upgrade(req))
          return upgrade(std::move(req), handler, std::move(access));
        if (method != http::verb::get)
          return send(not_allowed("GET", version, keep));
        auto res = make_text(http::status::upgrade_required,
                             "a WebSocket upgrade is required\n", version,
                             keep);
        res.set(http::field::upgrade, "websocket");
        return send(std::move(res));
      }
    if (state_->open.load() > state_->opts.max_connections) {
      keep_alive_ = false;
      return send(make_text(http::status::service_unavailable,
                            std::string{too_many_connections_json}, version,
                            false, "application/json"));
    }
    if (path == "/api") {
      if (method != http::verb::post) {
        auto res = make_text(
          http::status::method_not_allowed,
          R"({"ok":false,"error":{"code":"bad_request","message":"use POST"}})",
          version, keep, "application/json");
        res.set(http::field::allow, "POST");
        return send(std::move(res));
      }
      return call_route(state_->api_route, std::move(req), version, keep,
                        std::move(access.principal));
    }
    for (auto& r : state_->routes)
      if (r.matches(path))
        return call_route(r.handler, std::move(req), version, keep,
                          std::move(access.principal));
    if (!get_or_head && resolve_static(state_->opts.web_root, target))
      return send(not_allowed("GET, HEAD", version, keep));
    if (get_or_head) {
      if (auto file = resolve_static(state_->opts.web_root, target)) {
        std::ifstream in{*file, std::ios::binary};
        if (in) {
          std::ostringstream body;
          body << in.rdbuf();
          auto res = make_text(http::status::ok, body.str(), version, keep,
                               mime_type(file->string()));
          if (method == http::verb::head) {
            auto size = res.body().size();
            res.body().clear();
            res.content_length(size);
          }
          return send(std::move(res));
        }
      }
    }
    send(make_text(http::status::not_found, "not found\n", version, keep));
  }

  /// Hands the connection to a WebSocket session (this session ends without
  /// closing the socket), or answers 503 beyond max_websockets.
  void upgrade(http::request<http::string_body> req,
               const http_server::websocket_handler& handler,
               http_server::guard_decision access) {
    auto& st = *state_;
    if (st.ws_open.load() >= st.opts.max_websockets) {
      log_limited(spdlog::level::warn, "http:ws-refuse",
                  std::chrono::seconds{10},
                  fmt::format("http: refusing a WebSocket: too many "
                              "WebSockets ({}, cairn.http.max-websockets)",
                              st.opts.max_websockets));
      keep_alive_ = false;
      return send(make_text(http::status::service_unavailable,
                            R"({"ok":false,"error":{"code":"unavailable","message":"too many websockets"}})",
                            req.version(), false, "application/json"));
    }
    closed_ = true;
    state_->open.fetch_sub(1);
    auto st_ptr = state_;
    auto id = id_;
    start_websocket(st_ptr, std::move(stream_), std::move(req), handler,
                    std::move(access));
    st_ptr->sessions.remove(id);  // may destroy this session
  }

  /// Hands the request to a route handler; the reply comes back from any
  /// thread and is posted to this session's strand.
  /// The request without its body, as route handlers and the guard see it.
  http_request head_of(const http::request<http::string_body>& req) {
    http_request in;
    in.method = std::string{req.method_string()};
    std::string target{req.target()};
    auto q = target.find('?');
    in.path = target.substr(0, q);
    if (q != std::string::npos)
      in.query = target.substr(q + 1);
    for (auto& field : req) {
      std::string name{field.name_string()};
      std::transform(name.begin(), name.end(), name.begin(), [](char c) {
        return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      });
      in.headers.emplace_back(std::move(name), std::string{field.value()});
    }
    error_code ec;
    auto ep = socket().remote_endpoint(ec);
    if (!ec)
      in.remote = ep.address().to_string() + ":" + std::to_string(ep.port());
    return in;
  }

  void call_route(const http_server::route_handler& handler,
                  http::request<http::string_body> req, unsigned version,
                  bool keep,
                  std::shared_ptr<const auth::principal> who = nullptr) {
    auto in = head_of(req);
    in.body = std::move(req.body());
    in.principal = std::move(who);
    busy_.store(true);
    auto self = shared_from_this();
    auto st = state_;
    auto answered = std::make_shared<std::atomic<bool>>(false);
    http_server::response_fn reply = [self, st, answered, version,
                                      keep](http_response out) {
      if (answered->exchange(true))
        return;  // exactly once
      st->sessions.post_if_running([&] {
        asio::post(self->stream_.get_executor(),
                   [self, version, keep, out = std::move(out)]() mutable {
                     self->busy_.store(false);
                     if (self->closed_)
                       return;
                     auto code = static_cast<http::status>(out.status);
                     if (http::to_status_class(code)
                         == http::status_class::unknown)
                       code = http::status::internal_server_error;
                     auto res = self->make_text(code, std::move(out.body),
                                                version, keep,
                                                out.content_type);
                     for (auto& [k, v] : out.headers)
                       res.set(k, v);
                     self->send(std::move(res));
                   });
      });
    };
    try {
      // A copy: if the handler throws after moving its `reply` away, this
      // one still answers (`answered` keeps it to one answer).
      handler(std::move(in), reply);
    } catch (const std::exception& e) {
      spdlog::error("http: route handler threw: {}", e.what());
      http_response err;
      err.status = 500;
      err.body = R"({"ok":false,"error":{"code":"internal","message":"handler failed"}})";
      reply(std::move(err));
    }
  }

  void send(response res) {
    // A client that does not read its response is cut off like an idle one.
    expire(state_->opts.idle_timeout);
    res_ = std::make_shared<response>(std::move(res));
    http::async_write(stream_, *res_,
                      beast::bind_front_handler(&http_session::on_write,
                                                shared_from_this(),
                                                res_->need_eof()));
  }

  void on_write(bool close_after, error_code ec, size_t) {
    res_.reset();
    if (closed_)
      return;
    if (ec) {
      fail(ec, "write");
      close();
      return;
    }
    if (close_after || !keep_alive_) {
      error_code ignored;
      socket().shutdown(tcp::socket::shutdown_send, ignored);
      close();
      return;
    }
    do_read();
  }

  void close() {
    if (closed_)
      return;
    closed_ = true;
    busy_.store(false);
    error_code ignored;
    socket().shutdown(tcp::socket::shutdown_both, ignored);
    socket().close(ignored);
    state_->open.fetch_sub(1);
    state_->sessions.remove(id_);
  }

  stream_type stream_;
  std::shared_ptr<shared_state> state_;
  uint64_t id_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<response> res_;
  bool keep_alive_ = true;
  bool closed_ = false;
  std::atomic<bool> busy_{false};
};

// -- websocket session ------------------------------------------------------------

/// A WebSocket of a websocket() path: reads text messages into the handler
/// and writes what the connection's stream_sink holds, one write in flight
/// at a time (a slow reader lets updates coalesce in the sink): on plain
/// TCP the frames it builds itself, several messages per sendmsg (pump_raw);
/// on TLS through Beast, one message per write.
class websocket_session : public server_session,
                          public std::enable_shared_from_this<websocket_session> {
public:
  websocket_session(stream_type stream,
                    std::shared_ptr<shared_state> state, uint64_t id,
                    http_server::websocket_handler handler)
    : ws_(std::move(stream)), strand_(typed_strand(ws_.get_executor())),
      state_(std::move(state)), id_(id), handler_(std::move(handler)) {
  }

  ~websocket_session() override {
    if (sink_)
      sink_->mark_closed();
  }

  /// Builds the sink, then accepts the upgrade `req` (already read).
  void start(http::request<http::string_body> req,
             http_server::guard_decision access) {
    std::weak_ptr<websocket_session> weak = shared_from_this();
    auto st = state_;
    std::weak_ptr<shared_state> weak_state = state_;
    auto shard = id_ % st->ws_wakes.shards.size();
    sink_ = std::make_shared<stream_sink>(
      id_, st->opts.ws_max_backlog,
      [weak, weak_state, shard] { wake(weak_state, shard, weak); });
    beast::get_lowest_layer(ws_).expires_never();
    websocket::stream_base::timeout opt{};
    opt.handshake_timeout = std::chrono::seconds{30};
    auto ping = st->opts.ws_ping_interval;
    if (ping.count() > 0) {
      // Beast pings after half the idle timeout without traffic and closes
      // after the whole of it.
      opt.idle_timeout = 2 * ping;
      opt.keep_alive_pings = true;
    } else {
      opt.idle_timeout = websocket::stream_base::none();
      opt.keep_alive_pings = false;
    }
    ws_.set_option(opt);
    ws_.read_message_max(st->opts.ws_max_message);
    ws_.text(true);
    // One frame per message, so that a write of Beast's ends on a frame
    // boundary (runtime/detail/ws_write_gate.hpp); no permessage-deflate is
    // offered, so frames the session builds itself are valid.
    ws_.auto_fragment(false);
    raw_ = !ws_.next_layer().next_layer().tls();
    sink_->set_principal(std::move(access.principal));
    ws_.set_option(websocket::stream_base::decorator(
      [protocol = std::move(access.ws_protocol)](websocket::response_type& res) {
        res.set(http::field::server, "cairn");
        if (!protocol.empty())
          res.set(http::field::sec_websocket_protocol, protocol);
      }));
    ws_.async_accept(req, beast::bind_front_handler(
                            &websocket_session::on_accept, shared_from_this()));
  }

  bool busy() const noexcept override { return false; }

  void post_close() override {
    asio::post(ws_.get_executor(),
               [self = shared_from_this()] { self->close(); });
  }

  /// The sink's wake (any thread): queues `session` on its shard and posts
  /// the shard's pump unless one is posted and has not started yet.
  static void wake(const std::weak_ptr<shared_state>& weak_state,
                   size_t shard_index,
                   const std::weak_ptr<websocket_session>& session) {
    auto st = weak_state.lock();
    if (!st)
      return;
    auto& shard = *st->ws_wakes.shards[shard_index];
    {
      std::lock_guard<std::mutex> guard{shard.mtx};
      shard.pending.push_back(session);
      if (shard.posted)
        return;
      shard.posted = true;
    }
    st->sessions.post_if_running([&] {
      asio::post(st->ioc, [weak_state, shard_index] {
        pump_shard(weak_state, shard_index);
      });
    });
  }

  /// On an I/O thread: pumps every session of the shard on its strand.
  static void pump_shard(const std::weak_ptr<shared_state>& weak_state,
                         size_t shard_index) {
    auto st = weak_state.lock();
    if (!st)
      return;
    auto& shard = *st->ws_wakes.shards[shard_index];
    std::vector<std::weak_ptr<websocket_session>> batch;
    {
      std::lock_guard<std::mutex> guard{shard.mtx};
      batch.swap(shard.pending);
      shard.posted = false;
    }
    // With one I/O thread every handler of every session runs on this
    // thread, one at a time, so pumping here is what the session's strand
    // would do, without a strand operation and a scheduler post per
    // session (a fan-out wakes thousands; docs/benchmarks.md, "Live
    // subscriptions"). With more, each pump goes through its strand.
    bool inline_pump = st->opts.io_threads <= 1;
    for (auto& weak : batch)
      if (auto self = weak.lock()) {
        if (inline_pump)
          self->pump();
        else {
          // Named first: the lambda below takes `self` away (argument
          // evaluation order is unspecified); the session outlives it.
          auto& strand = self->strand_;
          asio::dispatch(strand, [self = std::move(self)] { self->pump(); });
        }
      }
  }

private:
  void on_accept(error_code ec) {
    if (ec) {
      fail(ec, "websocket accept");
      return close();
    }
    accepted_ = true;
    do_read();
    pump();
  }

  void do_read() {
    if (closed_)
      return;
    ws_.async_read(buffer_, beast::bind_front_handler(
                              &websocket_session::on_read, shared_from_this()));
  }

  void on_read(error_code ec, size_t) {
    if (closed_)
      return;
    if (ec) {
      if (ec != websocket::error::closed)
        fail(ec, "websocket read");
      return close();
    }
    std::string text = beast::buffers_to_string(buffer_.data());
    buffer_.consume(buffer_.size());
    try {
      handler_(sink_, std::move(text));
    } catch (const std::exception& e) {
      spdlog::error("http: websocket handler threw: {}", e.what());
    }
    do_read();
  }

  /// Writes what the sink holds, if not writing already. Nothing once a
  /// close frame went either way (ours, or Beast's echo of the client's):
  /// no data frame may follow it.
  void pump() {
    if (closed_ || !accepted_ || writing_ || closing_)
      return;
    if (sink_->closed())
      return close_gracefully();
    if (!ws_.is_open())
      return;
    if (raw_)
      return pump_raw();
    if (!sink_->next(out_)) {
      if (sink_->finishing())
        close_gracefully();
      return;
    }
    writing_ = true;
    // Head and shared body as one frame, gathered (the body is not copied).
    std::array<asio::const_buffer, 2> bufs{
      asio::buffer(out_.head),
      out_.body ? asio::buffer(*out_.body) : asio::const_buffer{}};
    ws_.async_write(bufs, beast::bind_front_handler(&websocket_session::on_write,
                                                    shared_from_this()));
  }

  /// Plain TCP: takes up to max_gather messages (max_gather_bytes) of the
  /// sink, frames each (RFC 6455 5.2: FIN + text, no mask from a server)
  /// and writes them with one sendmsg: header, head and the shared body of
  /// each, not copied. What the kernel does not take at once is written by
  /// asio::async_write; Beast's own frames (pings, pongs, close) wait for it
  /// in the gate, and this waits for theirs.
  void pump_raw() {
    static constexpr size_t max_gather = 64;
    static constexpr size_t max_gather_bytes = 256 * 1024;
    auto& gate = ws_.next_layer();
    if (gate.lower_busy()) {
      std::weak_ptr<websocket_session> weak = shared_from_this();
      gate.notify_idle([weak] {
        if (auto self = weak.lock())
          self->pump();
      });
      return;
    }
    batch_.clear();
    size_t bytes = 0;
    stream_message msg;
    while (batch_.size() < max_gather && bytes < max_gather_bytes
           && sink_->next(msg)) {
      bytes += msg.size();
      batch_.push_back(std::move(msg));
      msg = stream_message{};
    }
    if (batch_.empty()) {
      if (sink_->finishing())
        close_gracefully();
      return;
    }
    frame_heads_.resize(batch_.size());
    rest_.clear();
    size_t total = 0;
    for (size_t i = 0; i < batch_.size(); ++i) {
      auto& m = batch_[i];
      auto& fh = frame_heads_[i];
      uint64_t n = m.size();
      size_t len = 2;
      fh[0] = 0x81;
      if (n < 126) {
        fh[1] = static_cast<unsigned char>(n);
      } else if (n < 65536) {
        fh[1] = 126;
        fh[2] = static_cast<unsigned char>(n >> 8);
        fh[3] = static_cast<unsigned char>(n);
        len = 4;
      } else {
        fh[1] = 127;
        for (int k = 0; k < 8; ++k)
          fh[2 + k] = static_cast<unsigned char>(n >> (8 * (7 - k)));
        len = 10;
      }
      rest_.emplace_back(fh.data(), len);
      total += len + n;
      if (!m.head.empty())
        rest_.emplace_back(m.head.data(), m.head.size());
      if (m.body && !m.body->empty())
        rest_.emplace_back(m.body->data(), m.body->size());
    }
    // One attempt now: on loopback and on an idle connection the kernel
    // takes it all, and nothing else (no handler, no timer) is needed.
    std::array<iovec, 3 * max_gather> iov;
    for (size_t i = 0; i < rest_.size(); ++i)
      iov[i] = iovec{const_cast<void*>(rest_[i].data()), rest_[i].size()};
    msghdr mh{};
    mh.msg_iov = iov.data();
    mh.msg_iovlen = rest_.size();
    auto& sock = beast::get_lowest_layer(ws_).socket();
    ssize_t sent;
    do
      sent = ::sendmsg(sock.native_handle(), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (sent < 0 && errno == EINTR);
    if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      fail(error_code{errno, boost::system::system_category()},
           "websocket write");
      return close();
    }
    size_t done = sent < 0 ? 0 : static_cast<size_t>(sent);
    if (done == total) {
      // Again while the sink has more (its wake is not armed until it
      // was drained).
      batch_.clear();
      return pump();
    }
    // The rest when the socket can take it.
    size_t skip = done;
    auto first = rest_.begin();
    while (skip >= first->size()) {
      skip -= first->size();
      ++first;
    }
    *first += skip;
    rest_.erase(rest_.begin(), first);
    writing_ = true;
    gate.raw_begin();
    asio::async_write(sock, rest_,
                      beast::bind_front_handler(&websocket_session::on_write_raw,
                                                shared_from_this()));
  }

  void on_write_raw(error_code ec, size_t) {
    writing_ = false;
    batch_.clear();
    rest_.clear();
    ws_.next_layer().raw_end();
    if (closed_)
      return;
    if (ec) {
      fail(ec, "websocket write");
      return close();
    }
    pump();
  }

  void on_write(error_code ec, size_t) {
    writing_ = false;
    out_.head.clear();
    out_.body = nullptr;
    if (closed_)
      return;
    if (ec) {
      fail(ec, "websocket write");
      return close();
    }
    pump();
  }

  /// The sink was closed (by the application, or a backlog overflow):
  /// a close frame, then the socket.
  void close_gracefully() {
    if (closing_)
      return;
    closing_ = true;
    ws_.async_close(websocket::close_code::policy_error,
                    [self = shared_from_this()](error_code) { self->close(); });
  }

  void close() {
    if (closed_)
      return;
    closed_ = true;
    error_code ignored;
    auto& sock = beast::get_lowest_layer(ws_).socket();
    sock.shutdown(tcp::socket::shutdown_both, ignored);
    sock.close(ignored);
    state_->ws_open.fetch_sub(1);
    if (sink_)
      sink_->mark_closed();
    state_->sessions.remove(id_);
  }

  using strand_type = asio::strand<asio::io_context::executor_type>;

  /// The strand the listener made for the socket (runtime/detail/listener),
  /// typed: a wake then dispatches without the type-erased executor's
  /// copies and queries.
  static strand_type typed_strand(const asio::any_io_executor& ex) {
    if (auto* s = ex.target<strand_type>())
      return *s;
    throw std::logic_error{"http: a WebSocket's executor is not a strand"};
  }

  websocket::stream<detail::ws_write_gate<stream_type>> ws_;
  strand_type strand_;  ///< the socket's executor, typed
  std::shared_ptr<shared_state> state_;
  uint64_t id_;
  http_server::websocket_handler handler_;
  std::shared_ptr<stream_sink> sink_;
  beast::flat_buffer buffer_;
  stream_message out_;  ///< being written (buffers must outlive the write)
  /// Plain TCP: updates are framed here and written straight to the socket
  /// (write_raw); TLS: through Beast, one message per write.
  bool raw_ = false;
  /// The messages of the raw write in flight, their frame headers, and the
  /// part of the gathered buffers not written yet.
  std::vector<stream_message> batch_;
  std::vector<std::array<unsigned char, 10>> frame_heads_;
  std::vector<asio::const_buffer> rest_;
  bool accepted_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool closed_ = false;
};

void start_websocket(const std::shared_ptr<shared_state>& state,
                     stream_type stream,
                     http::request<http::string_body> req,
                     const http_server::websocket_handler& handler,
                     http_server::guard_decision access) {
  state->ws_open.fetch_add(1);
  auto id = state->sessions.next_id();
  auto session = std::make_shared<websocket_session>(std::move(stream), state,
                                                     id, handler);
  state->sessions.add(id, session);
  session->start(std::move(req), std::move(access));
}

// -- accepting ------------------------------------------------------------------

const std::string busy_response
  = "HTTP/1.1 503 Service Unavailable\r\nServer: cairn\r\n"
    "Content-Type: application/json\r\nContent-Length: "
    + std::to_string(too_many_connections_json.size())
    + "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    + std::string{too_many_connections_json};

/// Starts a session for an accepted socket, or answers 503 beyond
/// max_connections.
void on_accept(const std::shared_ptr<shared_state>& state, tcp::socket socket) {
  // A connection may become a WebSocket: until its request is read it is
  // admitted against both budgets; a plain request beyond max_connections
  // gets 503 then (http_session::handle).
  auto ws_room = state->websockets.empty()
                   ? size_t{0}
                   : state->opts.max_websockets
                       - std::min(state->ws_open.load(),
                                  state->opts.max_websockets);
  if (state->open.load() >= state->opts.max_connections + ws_room) {
    log_limited(spdlog::level::warn, "http:refuse", std::chrono::seconds{10},
                fmt::format("http: refusing a connection: too many "
                            "connections ({})",
                            state->opts.max_connections));
    detail::async_refuse(std::move(socket), state->tls, busy_response,
                         std::chrono::seconds{5});
    return;
  }
  // Responses are written whole (header and body in one write): nothing
  // to coalesce, so Nagle could only hold back the last segment of a large
  // body until the client's delayed ACK.
  error_code nd;
  socket.set_option(tcp::no_delay(true), nd);
  state->open.fetch_add(1);
  auto id = state->sessions.next_id();
  auto stream = state->tls
                  ? stream_type{beast::tcp_stream{std::move(socket)}, *state->tls}
                  : stream_type{beast::tcp_stream{std::move(socket)}};
  auto session = std::make_shared<http_session>(std::move(stream), state, id);
  state->sessions.add(id, session);
  session->start();
}

} // namespace

// -- http_server ------------------------------------------------------------------

struct http_server::impl {
  std::shared_ptr<shared_state> state;
  detail::server_lifecycle lifecycle{"http"};
};

http_server::http_server(http_server_options opts, metrics_registry& metrics,
                         api_handler on_api)
  : impl_(std::make_unique<impl>()) {
  impl_->state = std::make_shared<shared_state>(std::move(opts), metrics,
                                                std::move(on_api));
  if (impl_->state->opts.tls.enabled())
    impl_->state->tls = detail::make_server_tls_context(impl_->state->opts.tls);
}

void http_server::route(std::string path, bool prefix,
                        route_handler handler) {
  impl_->state->routes.push_back(
    route_entry{std::move(path), prefix, std::move(handler)});
}

void http_server::guard(guard_fn fn) {
  impl_->state->guard = std::move(fn);
}

void http_server::api_with_principal(principal_api_handler handler) {
  impl_->state->on_api_principal = std::move(handler);
}

void http_server::websocket(std::string path, websocket_handler handler) {
  impl_->state->websockets.emplace_back(std::move(path), std::move(handler));
}

size_t http_server::websockets_open() const noexcept {
  return impl_->state->ws_open.load();
}

uint64_t http_server::tls_failed() const noexcept {
  return impl_->state->tls_failed.load();
}

std::string_view http_request::header(std::string_view name) const noexcept {
  for (auto& [k, v] : headers)
    if (k == name)
      return v;
  return {};
}

http_server::~http_server() {
  stop();
}

void http_server::bind() {
  auto& st = *impl_->state;
  impl_->lifecycle.bind(st.ioc, st.opts.host, st.opts.port, st.opts.option,
                        [state = impl_->state](tcp::socket socket) {
                          on_accept(state, std::move(socket));
                        });
}

void http_server::start() {
  auto& st = *impl_->state;
  impl_->lifecycle.start(st.ioc, st.opts.host, st.opts.port, st.opts.option,
                         st.opts.io_threads,
                         [state = impl_->state](tcp::socket socket) {
                           on_accept(state, std::move(socket));
                         });
}

uint16_t http_server::port() const noexcept {
  return impl_->lifecycle.port();
}

void http_server::stop(std::chrono::milliseconds grace) {
  impl_->lifecycle.stop(impl_->state->sessions, grace);
}

} // namespace cairn::runtime
