// A blocking loopback TCP client for runtime tests (POSIX sockets).
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace cairn::test {

class tcp_client {
public:
  explicit tcp_client(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
      throw std::runtime_error("connect failed");
  }
  ~tcp_client() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  tcp_client(const tcp_client&) = delete;
  tcp_client& operator=(const tcp_client&) = delete;

  int fd() const { return fd_; }

  void send(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      auto n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0)
        throw std::runtime_error("send failed");
      off += static_cast<size_t>(n);
    }
  }

  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }

  void set_nonblocking() {
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
  }

  /// Reads until `n` lines arrived, EOF, or the timeout; returns the lines
  /// (without '\n').
  std::vector<std::string>
  read_lines(size_t n, std::chrono::milliseconds timeout
                       = std::chrono::seconds{10}) {
    std::vector<std::string> out;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      size_t nl;
      while (out.size() < n && (nl = buf_.find('\n')) != std::string::npos) {
        out.push_back(buf_.substr(0, nl));
        buf_.erase(0, nl + 1);
      }
      if (out.size() >= n || eof_)
        return out;
      if (!fill(deadline))
        return out;
    }
  }

  /// Reads exactly `n` bytes (fewer on EOF or timeout).
  std::string read_bytes(size_t n, std::chrono::milliseconds timeout
                                   = std::chrono::seconds{10}) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (buf_.size() < n && !eof_)
      if (!fill(deadline))
        break;
    auto out = buf_.substr(0, std::min(n, buf_.size()));
    buf_.erase(0, out.size());
    return out;
  }

  /// True if the peer closed (after consuming everything) within timeout.
  bool wait_eof(std::chrono::milliseconds timeout = std::chrono::seconds{5}) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!eof_)
      if (!fill(deadline))
        return eof_;
    return true;
  }

  const std::string& rest() const { return buf_; }

private:
  bool fill(std::chrono::steady_clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
      return false;
    char tmp[65536];
    auto r = ::recv(fd_, tmp, sizeof(tmp), 0);
    if (r <= 0) {
      eof_ = true;
      return true;
    }
    buf_.append(tmp, static_cast<size_t>(r));
    return true;
  }

  int fd_ = -1;
  std::string buf_;
  bool eof_ = false;
};

} // namespace cairn::test
