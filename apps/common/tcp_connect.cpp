#include "tcp_connect.hpp"

#include "tls_client.hpp"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdlib>
#include <string_view>
#include <cstring>
#include <stdexcept>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace cairn::apps {

namespace {

/// Connects the non-blocking socket `fd` to `addr` within `timeout`; returns
/// 0 or an errno value.
int connect_with_timeout(int fd, const addrinfo& addr,
                         std::chrono::milliseconds timeout) {
  if (::connect(fd, addr.ai_addr, addr.ai_addrlen) == 0)
    return 0;
  if (errno != EINPROGRESS)
    return errno;
  pollfd pfd{fd, POLLOUT, 0};
  int n;
  do {
    n = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
  } while (n < 0 && errno == EINTR);
  if (n == 0)
    return ETIMEDOUT;
  if (n < 0)
    return errno;
  int err = 0;
  socklen_t len = sizeof(err);
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  return err;
}

} // namespace

int tcp_connect(const std::string& host, uint16_t port,
                std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  auto service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
      rc != 0)
    throw std::runtime_error("cannot resolve " + host + ": " + gai_strerror(rc));
  // Try every address until one accepts.
  int last_err = ECONNREFUSED;
  int fd = -1;
  for (auto* ai = res; ai != nullptr && fd < 0; ai = ai->ai_next) {
    int s = ::socket(ai->ai_family,
                     ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                     ai->ai_protocol);
    if (s < 0) {
      last_err = errno;
      continue;
    }
    last_err = connect_with_timeout(s, *ai, timeout);
    if (last_err == 0)
      fd = s;
    else
      ::close(s);
  }
  ::freeaddrinfo(res);
  if (fd < 0) {
    std::string msg = "cannot connect to " + host + ":" + std::to_string(port)
                      + ": " + std::strerror(last_err);
    if (last_err == ECONNREFUSED)
      msg += " (is cairn-node running and listening on that port?)";
    throw std::runtime_error(msg);
  }
  // Back to blocking: the callers use poll or SO_SNDTIMEO/SO_RCVTIMEO.
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) & ~O_NONBLOCK);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

void tcp_authenticate(int fd, tls_session* tls, const std::string& token,
                      std::chrono::milliseconds timeout) {
  if (token.empty())
    return;
  auto line = nlohmann::json{{"op", "auth"}, {"token", token}}.dump() + "\n";
  std::string_view rest = line;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto left_ms = [&deadline] {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    return left.count() < 0 ? 0 : static_cast<int>(left.count());
  };
  while (!rest.empty()) {
    if (tls != nullptr) {
      auto n = tls->write_some(rest.data(), rest.size(),
                               std::chrono::milliseconds{left_ms()});
      if (n == 0)
        throw std::runtime_error("cannot send the token: the node does not read");
      rest.remove_prefix(n);
      continue;
    }
    pollfd pfd{fd, POLLOUT, 0};
    if (::poll(&pfd, 1, left_ms()) <= 0)
      throw std::runtime_error("cannot send the token: the node does not read");
    auto n = ::send(fd, rest.data(), rest.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      throw std::runtime_error(std::string{"cannot send the token: "} + std::strerror(errno));
    rest.remove_prefix(static_cast<size_t>(n));
  }
  // Byte by byte up to the newline: nothing after the reply is consumed.
  std::string reply;
  auto no_reply = [&timeout] {
    return std::runtime_error("no reply to the auth request within "
                              + std::to_string(timeout.count()) + " ms");
  };
  while (reply.empty() || reply.back() != '\n') {
    char c;
    if (tls != nullptr) {
      auto n = tls->read_some(&c, 1, std::chrono::milliseconds{left_ms()});
      if (n < 0)
        throw no_reply();
      if (n == 0)
        throw std::runtime_error("the node closed the connection during auth");
      reply += c;
      continue;
    }
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, left_ms()) <= 0)
      throw no_reply();
    auto n = ::recv(fd, &c, 1, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      throw std::runtime_error("the node closed the connection during auth");
    reply += c;
  }
  auto doc = nlohmann::json::parse(reply, nullptr, false);
  if (doc.is_object() && doc.value("ok", false))
    return;
  std::string message = "unreadable reply";
  if (doc.is_object() && doc.contains("error") && doc["error"].is_object())
    message = doc["error"].value("code", std::string{"?"}) + ": "
              + doc["error"].value("message", std::string{});
  throw std::runtime_error("the node refused the token: " + message);
}

std::string client_token(const std::string& option) {
  if (!option.empty())
    return option;
  if (const char* env = std::getenv("CAIRN_TOKEN"))
    return env;
  return {};
}

} // namespace cairn::apps
