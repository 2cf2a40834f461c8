#include "line_client.hpp"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace cairn::cli {

namespace {

using clock_type = std::chrono::steady_clock;

int remaining_ms(clock_type::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
    deadline - clock_type::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

/// Connects `fd` (non-blocking) to `addr` within `timeout`; returns 0 or an
/// errno value.
int connect_with_timeout(int fd, const addrinfo& addr,
                         std::chrono::milliseconds timeout) {
  int flags = fcntl(fd, F_GETFL, 0);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  int err = 0;
  if (::connect(fd, addr.ai_addr, addr.ai_addrlen) != 0) {
    if (errno != EINPROGRESS)
      return errno;
    pollfd pfd{fd, POLLOUT, 0};
    int n;
    do {
      n = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
    } while (n < 0 && errno == EINTR);
    if (n == 0)
      return ETIMEDOUT;
    socklen_t len = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0)
      return err;
  }
  fcntl(fd, F_SETFL, flags);
  return 0;
}

} // namespace

// -- construction -------------------------------------------------------------

line_client::line_client(const std::string& host, uint16_t port,
                         std::chrono::milliseconds connect_timeout)
  : peer_(host + ":" + std::to_string(port)) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  auto service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
      rc != 0)
    throw transport_error("cannot resolve " + host + ": " + gai_strerror(rc));
  int last_err = ECONNREFUSED;
  for (auto* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                      ai->ai_protocol);
    if (fd < 0) {
      last_err = errno;
      continue;
    }
    last_err = connect_with_timeout(fd, *ai, connect_timeout);
    if (last_err == 0) {
      fd_ = fd;
      break;
    }
    ::close(fd);
  }
  ::freeaddrinfo(res);
  if (fd_ < 0) {
    std::string msg = "cannot connect to " + peer_ + ": "
                      + std::strerror(last_err);
    if (last_err == ECONNREFUSED)
      msg += " (is cairn-node running and listening on that port?)";
    throw transport_error(msg);
  }
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

line_client::~line_client() {
  if (fd_ >= 0)
    ::close(fd_);
}

// -- I/O ------------------------------------------------------------------------

void line_client::send_all(std::string_view data,
                           std::chrono::milliseconds stall_timeout) {
  while (!data.empty()) {
    auto n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // The server is applying backpressure: wait until it reads again.
      pollfd pfd{fd_, POLLOUT, 0};
      int rc = ::poll(&pfd, 1, static_cast<int>(stall_timeout.count()));
      if (rc == 0)
        throw transport_error("server at " + peer_ + " stopped reading for "
                              + std::to_string(stall_timeout.count() / 1000)
                              + " s");
      if (rc < 0 && errno != EINTR)
        throw transport_error(std::string{"poll: "} + std::strerror(errno));
      continue;
    }
    throw transport_error("connection to " + peer_
                          + " lost while sending: " + std::strerror(errno));
  }
}

read_status line_client::read_line(std::string& out,
                                   std::chrono::milliseconds timeout) {
  auto deadline = clock_type::now() + timeout;
  for (;;) {
    // Return a buffered line if there is one.
    if (auto nl = in_.find('\n', scan_pos_); nl != std::string::npos) {
      auto end = nl;
      if (end > in_pos_ && in_[end - 1] == '\r')
        --end;
      out.assign(in_, in_pos_, end - in_pos_);
      in_pos_ = scan_pos_ = nl + 1;
      return read_status::line;
    }
    scan_pos_ = in_.size();
    // Compact the buffer before reading more.
    if (in_pos_ > 0) {
      in_.erase(0, in_pos_);
      scan_pos_ -= in_pos_;
      in_pos_ = 0;
    }
    if (timeout.count() >= 0) {
      pollfd pfd{fd_, POLLIN, 0};
      int rc = ::poll(&pfd, 1, remaining_ms(deadline));
      if (rc < 0 && errno == EINTR)
        continue;
      if (rc == 0)
        return read_status::timeout;
    }
    char buf[65536];
    auto n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n > 0) {
      in_.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      if (!in_.empty()) { // a last line without '\n'
        out = std::move(in_);
        in_.clear();
        scan_pos_ = 0;
        return read_status::line;
      }
      return read_status::eof;
    }
    if (errno == EINTR)
      continue;
    if (errno == ECONNRESET)
      return read_status::eof;
    throw transport_error("connection to " + peer_
                          + " lost while reading: " + std::strerror(errno));
  }
}

std::string line_client::request(std::string_view line,
                                 std::chrono::milliseconds timeout) {
  std::string out{line};
  out += '\n';
  send_all(out, timeout);
  switch (read_line(out, timeout)) {
    case read_status::line:
      return out;
    case read_status::eof:
      throw transport_error("connection to " + peer_
                            + " closed before a reply arrived");
    case read_status::timeout:
      break;
  }
  throw transport_error("no reply from " + peer_ + " within "
                        + std::to_string(timeout.count()) + " ms");
}

} // namespace cairn::cli
