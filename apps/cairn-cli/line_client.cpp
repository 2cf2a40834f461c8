#include "line_client.hpp"

#include "../common/tcp_connect.hpp"

#include <cerrno>
#include <cstring>

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

} // namespace

// -- construction -------------------------------------------------------------

line_client::line_client(const std::string& host, uint16_t port,
                         std::chrono::milliseconds connect_timeout,
                         const apps::tls_client_options& tls,
                         const std::string& token)
  : peer_(host + ":" + std::to_string(port)) {
  try {
    fd_ = apps::tcp_connect(host, port, connect_timeout);
    if (tls.enabled)
      tls_ = std::make_unique<apps::tls_session>(fd_, host, port, tls,
                                                 connect_timeout);
  } catch (const std::runtime_error& e) {
    if (fd_ >= 0)
      ::close(fd_);
    throw transport_error(e.what());
  }
  try {
    apps::tcp_authenticate(fd_, tls_.get(), token, connect_timeout);
  } catch (...) {
    tls_.reset();
    ::close(fd_);
    fd_ = -1;
    throw;
  }
}

line_client::~line_client() {
  if (tls_)
    tls_->close();
  tls_.reset();
  if (fd_ >= 0)
    ::close(fd_);
}

// -- I/O ------------------------------------------------------------------------

void line_client::send_all(std::string_view data,
                           std::chrono::milliseconds stall_timeout) {
  if (tls_) {
    try {
      while (!data.empty()) {
        auto n = tls_->write_some(data.data(), data.size(), stall_timeout);
        if (n == 0)
          throw transport_error("server at " + peer_ + " stopped reading for "
                                + std::to_string(stall_timeout.count() / 1000)
                                + " s");
        data.remove_prefix(n);
      }
    } catch (const transport_error&) {
      throw;
    } catch (const std::runtime_error& e) {
      throw transport_error(e.what());
    }
    return;
  }
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
    if (tls_) {
      char buf[65536];
      std::ptrdiff_t n;
      try {
        auto left = timeout.count() < 0
                      ? timeout
                      : std::chrono::milliseconds{remaining_ms(deadline)};
        n = tls_->read_some(buf, sizeof(buf), left);
      } catch (const std::runtime_error& e) {
        throw transport_error(e.what());
      }
      if (n < 0)
        return read_status::timeout;
      if (n > 0) {
        in_.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (!in_.empty()) { // a last line without '\n'
        out = std::move(in_);
        in_.clear();
        scan_pos_ = 0;
        return read_status::line;
      }
      return read_status::eof;
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
