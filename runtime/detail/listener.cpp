#include "runtime/detail/listener.hpp"

#include "runtime/log.hpp"

#include <boost/beast/core/bind_handler.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>

#include <stdexcept>

namespace cairn::runtime::detail {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

tcp::endpoint resolve_endpoint(asio::io_context& ioc, const std::string& host,
                               uint16_t port, std::string_view option) {
  error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (!ec)
    return tcp::endpoint{addr, port};
  tcp::resolver resolver{ioc};
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty())
    throw std::runtime_error("cannot resolve '" + host + "' for "
                             + std::string{option} + ": " + ec.message());
  return results.begin()->endpoint();
}

listener::listener(asio::io_context& ioc, const tcp::endpoint& ep,
                   std::string_view option, std::string_view tag,
                   accept_handler on_accept)
  : on_accept_(std::move(on_accept)), ioc_(ioc),
    acceptor_(asio::make_strand(ioc)), backoff_timer_(acceptor_.get_executor()),
    tag_(tag) {
  error_code ec;
  acceptor_.open(ep.protocol(), ec);
  if (!ec)
    acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec)
    acceptor_.bind(ep, ec);
  if (!ec)
    acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error("cannot listen on " + ep.address().to_string()
                             + ":" + std::to_string(ep.port()) + " ("
                             + std::string{option} + "): " + ec.message());
  port_ = acceptor_.local_endpoint().port();
}

void listener::post_close() {
  asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
    error_code ignored;
    self->acceptor_.close(ignored);
    self->backoff_timer_.cancel();
  });
}

void listener::do_accept() {
  acceptor_.async_accept(
    asio::make_strand(ioc_),
    boost::beast::bind_front_handler(&listener::on_accept,
                                     shared_from_this()));
}

void listener::on_accept(error_code ec, tcp::socket socket) {
  if (ec) {
    if (!acceptor_.is_open() || ec == asio::error::operation_aborted)
      return;
    // Out of descriptors or similar: the connection stays queued in the
    // kernel, so retrying at once would spin. Wait, doubling up to 1 s.
    using namespace std::chrono_literals;
    backoff_ = backoff_ == 0ms ? 10ms : std::min<std::chrono::milliseconds>(backoff_ * 2, 1s);
    log_limited(spdlog::level::warn, tag_ + ":accept", 10s,
                fmt::format("{}: accept: {} (retrying, backoff up to 1 s)",
                            tag_, ec.message()));
    backoff_timer_.expires_after(backoff_);
    backoff_timer_.async_wait(boost::beast::bind_front_handler(
      &listener::on_backoff, shared_from_this()));
    return;
  }
  backoff_ = std::chrono::milliseconds{0};
  on_accept_(std::move(socket));
  do_accept();
}

void listener::on_backoff(error_code ec) {
  if (ec || !acceptor_.is_open())
    return;
  do_accept();
}

} // namespace cairn::runtime::detail
