#include "runtime/detail/server_lifecycle.hpp"

#include <stdexcept>

namespace cairn::runtime::detail {

void server_lifecycle::bind_locked(boost::asio::io_context& ioc,
                                   const std::string& host, uint16_t port,
                                   const std::string& option,
                                   listener::accept_handler on_accept) {
  auto ep = resolve_endpoint(ioc, host, port, option);
  acceptor_ = std::make_shared<listener>(ioc, ep, option, tag_,
                                         std::move(on_accept));
  port_ = acceptor_->port();
  address_ = ep.address().to_string();
}

void server_lifecycle::bind(boost::asio::io_context& ioc,
                            const std::string& host, uint16_t port,
                            const std::string& option,
                            listener::accept_handler on_accept) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (acceptor_ || started_ || stopped_)
    throw std::logic_error(tag_ + "_server: bind() after bind/start/stop");
  bind_locked(ioc, host, port, option, std::move(on_accept));
}

void server_lifecycle::start(boost::asio::io_context& ioc,
                             const std::string& host, uint16_t port,
                             const std::string& option, size_t io_threads,
                              listener::accept_handler on_accept) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (started_ || stopped_)
    throw std::logic_error(tag_ + "_server: start() called twice");
  if (!acceptor_)
    bind_locked(ioc, host, port, option, std::move(on_accept));
  acceptor_->run();
  threads_.start(ioc, io_threads, tag_);
  started_ = true;
  spdlog::info("{}: listening on {}:{}", tag_, address_, port_);
}

} // namespace cairn::runtime::detail
