#include "alerts/webhook_pool.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/ssl.h>

#include <deque>
#include <map>
#include <stdexcept>
#include <thread>

namespace cairn::alerts {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

bool split_url(const std::string& url, std::string& host, std::string& port,
               std::string& target, bool& tls) {
  std::string_view rest = url;
  if (rest.rfind("http://", 0) == 0) {
    tls = false;
    rest.remove_prefix(7);
  } else if (rest.rfind("https://", 0) == 0) {
    tls = true;
    rest.remove_prefix(8);
  } else {
    return false;
  }
  auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  target = slash == std::string_view::npos ? "/" : std::string{rest.substr(slash)};
  auto colon = authority.rfind(':');
  if (colon == std::string_view::npos) {
    host = std::string{authority};
    port = tls ? "443" : "80";
  } else {
    host = std::string{authority.substr(0, colon)};
    port = std::string{authority.substr(colon + 1)};
  }
  return !host.empty() && !port.empty()
         && port.find_first_not_of("0123456789") == std::string::npos;
}

namespace {

struct job {
  std::string host;
  std::string port;
  bool tls = false;
  std::string target;
  webhook_pool::headers hdrs;
  std::string body;
  webhook_pool::callback done;
  std::chrono::steady_clock::time_point start;
  bool retried = false;
};

struct host_pool;

struct connection : std::enable_shared_from_this<connection> {
  connection(asio::io_context& io, asio::ssl::context& ctx, host_pool& owner,
             bool tls)
    : tls_stream(io, ctx), idle_timer(io), owner(owner), tls(tls) {}
  /// The TCP stream is the TLS stream's lower layer; a plain connection
  /// uses that layer alone.
  beast::ssl_stream<beast::tcp_stream> tls_stream;
  beast::tcp_stream& tcp() { return tls_stream.next_layer(); }
  /// Runs f on the stream requests go through.
  template <class F>
  void with_stream(F&& f) {
    if (tls)
      f(tls_stream);
    else
      f(tcp());
  }
  beast::flat_buffer buffer;
  http::request<http::string_body> req;
  http::response<http::string_body> res;
  asio::steady_timer idle_timer;
  host_pool& owner;
  bool tls = false;
  uint64_t idle_generation = 0;
};

using conn_ptr = std::shared_ptr<connection>;

struct host_pool {
  std::vector<conn_ptr> idle;
  size_t open = 0;
  std::deque<job> waiting;
};

} // namespace

struct webhook_pool::impl : std::enable_shared_from_this<webhook_pool::impl> {
  impl(pool_options o, pool_counters& c)
    : opts(o), counters(c), work(asio::make_work_guard(io)), resolver(io),
      tls_ctx(asio::ssl::context::tls_client) {
    tls_ctx.set_options(asio::ssl::context::default_workarounds
                        | asio::ssl::context::no_sslv2
                        | asio::ssl::context::no_sslv3);
    SSL_CTX_set_min_proto_version(tls_ctx.native_handle(), TLS1_2_VERSION);
    if (opts.tls_insecure) {
      tls_ctx.set_verify_mode(asio::ssl::verify_none);
    } else {
      tls_ctx.set_verify_mode(asio::ssl::verify_peer);
      tls_ctx.set_default_verify_paths();
      if (!opts.tls_ca_file.empty()) {
        error_code ec;
        tls_ctx.load_verify_file(opts.tls_ca_file, ec);
        if (ec)
          throw std::invalid_argument("cannot load the CA file '" + opts.tls_ca_file
                                      + "': " + ec.message());
      }
    }
  }

  pool_options opts;
  pool_counters& counters;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  tcp::resolver resolver;
  asio::ssl::context tls_ctx;
  std::map<std::string, host_pool> hosts;
  /// Every connection not yet closed (so that stopping can close them).
  std::vector<conn_ptr> all;
  bool stopping = false;
  std::thread thread;

  void stop() {
    stopping = true;
    resolver.cancel();
    for (auto& c : all) {
      error_code ignored;
      c->tcp().socket().close(ignored);
      c->idle_timer.cancel();
    }
    all.clear();
  }

  static void finish(job& j, http_result r) {
    r.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - j.start);
    if (j.done)
      j.done(std::move(r));
  }

  void run(job j) {
    if (stopping)
      return;
    auto& hp = hosts[(j.tls ? "https://" : "http://") + j.host + ":" + j.port];
    if (!hp.idle.empty()) {
      auto c = hp.idle.back();
      hp.idle.pop_back();
      ++c->idle_generation;
      c->idle_timer.cancel();
      ++counters.reused;
      send(c, std::move(j), true);
    } else if (hp.open < opts.max_connections) {
      ++hp.open;
      ++counters.open;
      connect(hp, std::move(j));
    } else {
      hp.waiting.push_back(std::move(j));
    }
  }

  void connect(host_pool& hp, job j) {
    auto c = std::make_shared<connection>(io, tls_ctx, hp, j.tls);
    all.push_back(c);
    auto self = shared_from_this();
    auto jp = std::make_shared<job>(std::move(j));
    resolver.async_resolve(
      jp->host, jp->port,
      [self, c, jp](error_code ec, tcp::resolver::results_type results) {
        if (self->stopping)
          return;
        if (ec)
          return self->failed(c, std::move(*jp), "resolve: " + ec.message(),
                              false);
        c->tcp().expires_after(self->opts.connect_timeout);
        c->tcp().async_connect(
          results, [self, c, jp](error_code ec, const tcp::endpoint&) {
            if (self->stopping)
              return;
            if (ec)
              return self->failed(c, std::move(*jp),
                                  "connect: " + ec.message(), false);
            ++self->counters.opened;
            error_code ignored;
            c->tcp().socket().set_option(tcp::no_delay(true), ignored);
            if (!c->tls)
              return self->send(c, std::move(*jp), false);
            self->handshake(c, std::move(jp));
          });
      });
  }

  /// TLS: SNI and the host name the certificate must carry, then the
  /// handshake within the connect timeout.
  void handshake(const conn_ptr& c, std::shared_ptr<job> jp) {
    auto* ssl = c->tls_stream.native_handle();
    if (!SSL_set_tlsext_host_name(ssl, jp->host.c_str())
        || (!opts.tls_insecure && !SSL_set1_host(ssl, jp->host.c_str())))
      return failed(c, std::move(*jp), "tls: cannot set the server name", false);
    auto self = shared_from_this();
    c->tcp().expires_after(opts.connect_timeout);
    c->tls_stream.async_handshake(
      asio::ssl::stream_base::client, [self, c, jp](error_code ec) {
        if (self->stopping)
          return;
        if (ec) {
          auto why = ec.message();
          auto verify = SSL_get_verify_result(c->tls_stream.native_handle());
          if (verify != X509_V_OK)
            why = X509_verify_cert_error_string(verify);
          return self->failed(c, std::move(*jp), "tls handshake: " + why, false);
        }
        self->send(c, std::move(*jp), false);
      });
  }

  void send(const conn_ptr& c, job j, bool reused) {
    c->req = {};
    c->req.method(http::verb::post);
    c->req.target(j.target);
    c->req.version(11);
    c->req.set(http::field::host, j.host + ":" + j.port);
    c->req.set(http::field::user_agent, "cairn-alerts");
    c->req.set(http::field::content_type, "application/json");
    for (auto& [k, v] : j.hdrs)
      c->req.set(k, v);
    c->req.keep_alive(true);
    c->req.body() = j.body;
    c->req.prepare_payload();
    c->res = {};
    c->buffer.clear();
    ++counters.requests;
    c->tcp().expires_after(opts.request_timeout);
    auto self = shared_from_this();
    auto jp = std::make_shared<job>(std::move(j));
    c->with_stream([&](auto& stream) {
      http::async_write(
        stream, c->req,
        [self, c, jp, reused, &stream](error_code ec, size_t) {
          if (ec)
            return self->failed(c, std::move(*jp), "write: " + ec.message(),
                                reused);
          http::async_read(
            stream, c->buffer, c->res,
            [self, c, jp, reused](error_code ec, size_t) {
              if (self->stopping)
                return;
              if (ec)
                return self->failed(c, std::move(*jp), "read: " + ec.message(),
                                    reused);
              http_result r;
              r.status = static_cast<int>(c->res.result_int());
              r.reused = reused;
              bool keep = c->res.keep_alive();
              finish(*jp, std::move(r));
              self->release(c, keep);
            });
        });
    });
  }

  /// A request without a response. A reused connection the server closed
  /// while idle gets one retry on a fresh connection.
  void failed(const conn_ptr& c, job j, std::string what, bool reused) {
    if (stopping)
      return;
    close(c);
    if (reused && !j.retried) {
      j.retried = true;
      run(std::move(j));
      return;
    }
    ++counters.failures;
    http_result r;
    r.error = std::move(what);
    r.reused = reused;
    finish(j, std::move(r));
    next_waiting(c->owner);
  }

  void close(const conn_ptr& c) {
    error_code ignored;
    c->tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    c->tcp().close();
    std::erase(all, c);
    ++c->idle_generation;
    c->idle_timer.cancel();
    --c->owner.open;
    --counters.open;
  }

  void next_waiting(host_pool& hp) {
    if (hp.waiting.empty() || hp.open >= opts.max_connections)
      return;
    auto j = std::move(hp.waiting.front());
    hp.waiting.pop_front();
    ++hp.open;
    ++counters.open;
    connect(hp, std::move(j));
  }

  void release(const conn_ptr& c, bool keep) {
    auto& hp = c->owner;
    if (!keep) {
      close(c);
      next_waiting(hp);
      return;
    }
    if (!hp.waiting.empty()) {
      auto j = std::move(hp.waiting.front());
      hp.waiting.pop_front();
      ++counters.reused;
      send(c, std::move(j), true);
      return;
    }
    c->tcp().expires_never();
    hp.idle.push_back(c);
    auto gen = ++c->idle_generation;
    c->idle_timer.expires_after(opts.idle_timeout);
    auto self = shared_from_this();
    c->idle_timer.async_wait([self, c, gen](error_code ec) {
      if (ec || self->stopping || c->idle_generation != gen)
        return;
      auto& idle = c->owner.idle;
      auto it = std::find(idle.begin(), idle.end(), c);
      if (it == idle.end())
        return;
      idle.erase(it);
      self->close(c);
    });
  }
};

webhook_pool::webhook_pool(pool_options opts)
  : opts_(opts), impl_(std::make_shared<impl>(opts, counters_)) {
  impl_->thread = std::thread{[i = impl_.get()] { i->io.run(); }};
}

webhook_pool::~webhook_pool() {
  // Closing every socket completes the pending operations (aborted, no
  // callback runs); then the thread runs out of work and returns.
  asio::post(impl_->io, [i = impl_.get()] { i->stop(); });
  impl_->work.reset();
  if (impl_->thread.joinable())
    impl_->thread.join();
}

void webhook_pool::post(std::string url, headers hdrs, std::string body,
                        callback done) {
  job j;
  j.start = std::chrono::steady_clock::now();
  j.hdrs = std::move(hdrs);
  j.body = std::move(body);
  j.done = std::move(done);
  if (!split_url(url, j.host, j.port, j.target, j.tls)) {
    http_result r;
    r.error = "not an http:// or https:// URL";
    j.done(std::move(r));
    return;
  }
  asio::post(impl_->io, [i = impl_, j = std::move(j)]() mutable {
    i->run(std::move(j));
  });
}

} // namespace cairn::alerts
