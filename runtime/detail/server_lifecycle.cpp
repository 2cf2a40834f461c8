#include "runtime/detail/server_lifecycle.hpp"

#include <stdexcept>

namespace cairn::runtime::detail {

void server_lifecycle::start(boost::asio::io_context& ioc,
                             const std::string& host, uint16_t port,
                             size_t io_threads, listener::fail_handler fail,
                             listener::accept_handler on_accept) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto who = tag_ + "_server";
  if (started_)
    throw std::logic_error(who + ": start() called twice");
  auto ep = resolve_endpoint(ioc, host, port, who);
  acceptor_ = std::make_shared<listener>(ioc, ep, who, fail,
                                         std::move(on_accept));
  port_ = acceptor_->port();
  acceptor_->run();
  threads_.start(ioc, io_threads, tag_);
  started_ = true;
  spdlog::info("{}: listening on {}:{}", tag_, ep.address().to_string(),
               port_);
}

} // namespace cairn::runtime::detail
