#include "runtime/detail/listener.hpp"

#include <boost/beast/core/bind_handler.hpp>

#include <stdexcept>

namespace cairn::runtime::detail {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

tcp::endpoint resolve_endpoint(asio::io_context& ioc, const std::string& host,
                               uint16_t port, std::string_view who) {
  error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (!ec)
    return tcp::endpoint{addr, port};
  tcp::resolver resolver{ioc};
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty())
    throw std::runtime_error(std::string{who} + ": cannot resolve '" + host
                             + "': " + ec.message());
  return results.begin()->endpoint();
}

listener::listener(asio::io_context& ioc, const tcp::endpoint& ep,
                   std::string_view who, fail_handler fail,
                   accept_handler on_accept)
  : on_accept_(std::move(on_accept)), fail_(fail), ioc_(ioc),
    acceptor_(asio::make_strand(ioc)) {
  error_code ec;
  acceptor_.open(ep.protocol(), ec);
  if (!ec)
    acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec)
    acceptor_.bind(ep, ec);
  if (!ec)
    acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error(std::string{who} + ": cannot listen on "
                             + ep.address().to_string() + ":"
                             + std::to_string(ep.port()) + ": "
                             + ec.message());
  port_ = acceptor_.local_endpoint().port();
}

void listener::post_close() {
  asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
    error_code ignored;
    self->acceptor_.close(ignored);
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
    fail_(ec, "accept");
    if (!acceptor_.is_open())
      return;
    // Out of descriptors or similar: keep accepting (the next attempt may
    // succeed once connections close).
    do_accept();
    return;
  }
  on_accept_(std::move(socket));
  do_accept();
}

} // namespace cairn::runtime::detail
